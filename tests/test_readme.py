from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    return [b.strip() for b in blocks if b.strip().startswith("python3 -m venv")]


def test_readme_has_the_two_setup_commands_each_one_line():
    main_job, tests = readme_commands()
    assert "\n" not in main_job and "\n" not in tests
    for command in (main_job, tests):
        # torch is pinned and installed before the package that depends on it
        assert re.search(r"pip install (-q )?torch==2\.13\.0 && .*pip install (-q )?-e ", command)
    assert main_job.endswith("rednet demo")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = readme_commands()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_pyproject_declares_torch_at_least_2_4_and_the_console_script():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch>=2.4"' in text
    assert 'rednet = "rednet.cli:main"' in text


def test_the_readme_model_list_is_what_rednet_models_prints(capsys):
    from rednet.cli import main

    block = re.search(
        r"`rednet models` lists them:\n\n```text\n(.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    assert block, "README: the `rednet models` block is missing"
    assert main(["models"]) == 0
    assert block.group(1) == capsys.readouterr().out


def readme_command_lines() -> list[str]:
    """The lines of the README's "Command line" block, comments and blank lines dropped."""
    section = (ROOT / "README.md").read_text().split("## Command line", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_degrade_and_restore_lines_run_in_order_as_written(tmp_path, monkeypatch, capsys):
    """Every `rednet degrade` and `rednet restore` line of the block, in order, in one folder, as a user
    would type them, on a 32x32 crop as photo.png. The README's givens are made first: photo.png, a folder
    photos/ and denoise.safetensors (a user's export; a tiny random model here). Not run: eval and report
    (minutes on the benchmark sets), train, export and plot (a training run), bench and serve (long
    benchmarks, a server), torchrun (two processes; tests/test_infer.py runs it), demo and models (tested in
    tests/test_cli.py and above)."""
    import shlex

    import torch
    from PIL import Image
    from skimage import data

    from rednet.cli import main
    from rednet.model import REDNet, REDNetConfig
    from rednet.zoo import save_weights

    monkeypatch.chdir(tmp_path)
    Image.fromarray(data.astronaut()[100:132, 200:232]).save("photo.png")
    Path("photos").mkdir()
    Image.fromarray(data.astronaut()[300:332, 200:232]).save("photos/photo.png")
    torch.manual_seed(0)
    save_weights(
        "denoise.safetensors", REDNet(REDNetConfig(depth=4, width=8, channels=3)), {"task": "denoise"}
    )
    run = [
        line
        for line in readme_command_lines()
        if line.split()[:2] in (["rednet", "degrade"], ["rednet", "restore"])
    ]
    assert len(run) >= 20  # the block still has its examples
    for line in run:
        argv = shlex.split(line, comments=True)[1:]
        assert main(argv) == 0, f"README line failed: {line}\n{capsys.readouterr().err}"
    assert Image.open("big.png").size == tuple(3 * side for side in Image.open("small.png").size)
    assert Image.open("restored/photo.png").size == (32, 32)
