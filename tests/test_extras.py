"""The optional extras: the core install restores; a command needing a missing extra says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from rednet import baselines, cli, io
from rednet.extras import MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
EXTRA_MODULES = (
    "fastapi",
    "uvicorn",
    "multipart",
    "fastapi_offline",
    "onnx",
    "onnxruntime",
    "bm3d",
    "matplotlib",
)


def test_the_core_dependencies_leave_out_every_extra_and_all_brings_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("fastapi", "uvicorn", "onnx", "bm3d", "matplotlib", "schemathesis", "pytest"):
        assert name not in core, name
    extras = project["optional-dependencies"]
    assert extras["all"] == ["rednet[web,onnx,classical,plot]"]
    assert "rednet[all]" in extras["dev"]
    assert any(d.startswith("fastapi") for d in extras["web"])
    assert any(d.startswith("bm3d") for d in extras["classical"])


def test_require_names_the_extra_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now raises ImportError
    with pytest.raises(MissingExtraError) as e:
        require("bm3d", "classical", "the BM3D baseline")
    assert "\n" not in str(e.value)
    assert "'classical' extra" in str(e.value) and "pip install 'rednet[classical]'" in str(e.value)


def test_the_bm3d_baseline_without_the_classical_extra_fails_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm3d", None)
    with pytest.raises(MissingExtraError, match="classical"):
        baselines.bm3d(torch.rand(1, 1, 8, 8), 25.0)


def test_rednet_serve_without_the_web_extra_prints_one_line_naming_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "rednet.web", raising=False)
    assert cli.main(["serve", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rednet: error: rednet serve needs the 'web' extra")


def test_restore_runs_with_every_extra_module_missing(tmp_path):
    """A child process where no extra's module imports restores an image, as a core install does."""
    image = tmp_path / "in.png"
    io.write_image(image, torch.rand(1, 3, 24, 24))
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in EXTRA_MODULES)
    argv = ["restore", "--task", "denoise", str(image), "-o", str(tmp_path / "out.png")]
    code = f"import sys; {block}; from rednet.cli import main; sys.exit(main({argv!r}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert io.read_image(tmp_path / "out.png")[0].shape == (1, 3, 24, 24)
