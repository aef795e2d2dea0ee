"""The GPU lease (rednet.campaign), rehearsed on the CPU with tiny models: what the device will run."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from rednet import campaign
from rednet.cli import build_parser, main
from rednet.train import load_checkpoint, train
from rednet.train_config import TrainConfig

TINY = ["--depth", "10", "--width", "16", "--batch-size", "8", "--patch-size", "24", "--no-init"]
TINY += ["--threads", "1", "--device", "cpu", "--smoke-seconds", "60"]  # ends with the jobs, not the limit
TINY += ["--smoke-steps", "40", "--pack-seconds", "2", "--max-steps", "40"]


@pytest.fixture(scope="module")
def carried(tmp_path_factory) -> Path:
    """A data root laid out as ``rednet campaign data`` writes it: crops of scikit-image's photos."""
    root = tmp_path_factory.mktemp("carried")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for folder in ("train/BSDS500/train", "train/T91", campaign.VAL_FOLDER):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, photo in enumerate(photos):
            Image.fromarray(photo[:200, :200]).save(root / folder / f"{i}.png")
    return root


def test_a_cpu_rehearsal_of_the_lease_trains_every_job_and_brings_back_at_most_8_files(
    carried, tmp_path, capsys
):
    out = tmp_path / "out"
    argv = ["campaign", "run", "--jobs", "denoise-gray,sr", "--out", str(out), "--work", str(tmp_path / "w")]
    argv += ["--data-root", str(carried), "--seconds", "120", "--margin", "2", "--bench-seconds", "4", *TINY]
    assert main(argv) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bench.json", "campaign.json", "campaign.log", "denoise-gray.tar", "sr.tar"]
    summary = json.loads((out / "campaign.json").read_text())
    for name in ("denoise-gray", "sr"):
        job = summary["jobs"][name]
        assert job["exit_code"] == 0 and job["steps"] > 0 and job["validation"]
        assert job["command"].startswith("rednet train ") and "--deadline" in job["command"]
        with tarfile.open(out / f"{name}.tar") as tar:
            members = {Path(m.name).name for m in tar.getmembers()}
        assert {"config.json", "log.jsonl", "last.pt", "best.pt"} <= members
    bench = json.loads((out / "bench.json").read_text())
    assert "error" not in bench and bench["train"]["patches_per_s"] > 0 and bench["infer"]["variants"]
    capsys.readouterr()
    assert main(["campaign", "report", str(out)]) == 0
    tables = capsys.readouterr().out
    assert "| denoise-gray |" in tables and "| sr |" in tables and "| strided-bf16 |" in tables

    # Back on the CPU: unpack, then export as for a shipped model; the card names the lease.
    capsys.readouterr()
    assert main(["campaign", "unpack", str(out), "--runs", str(tmp_path / "runs")]) == 0
    unpacked = json.loads(capsys.readouterr().out)
    run_dir = next(Path(k) for k in unpacked if "sr-cpu-" in k)
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert "optimizer" not in checkpoint and checkpoint["step"] == summary["jobs"]["sr"]["steps"]
    assert main(["export", str(run_dir), "-o", str(tmp_path / "sr.safetensors")]) == 0
    card = json.loads((tmp_path / "sr.json").read_text())
    assert (
        card["lease"]["command"].startswith("rednet campaign run") and card["lease"]["concurrent_jobs"] == 2
    )


def test_a_job_that_fails_its_smoke_test_is_dropped_and_a_lease_where_all_fail_stops(
    carried, tmp_path, capsys
):
    broken = tmp_path / "no-t91"  # sr reads train/T91, which this data root lacks
    for folder in ("train/BSDS500/train", campaign.VAL_FOLDER):
        (broken / folder).mkdir(parents=True)
        for f in (carried / folder).iterdir():
            (broken / folder / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out"
    argv = ["campaign", "run", "--out", str(out), "--work", str(tmp_path / "w"), "--data-root", str(broken)]
    argv += ["--seconds", "120", "--margin", "2", "--bench-seconds", "0", *TINY]
    assert main([*argv, "--jobs", "denoise-gray,sr"]) == 0
    log = (out / "campaign.log").read_text()
    assert "smoke: sr dropped" in log and "T91" in log
    assert list(json.loads((out / "campaign.json").read_text())["jobs"]) == ["denoise-gray"]
    assert main([*argv, "--jobs", "sr"]) == 1
    assert "every job failed its smoke test" in capsys.readouterr().err


def test_the_train_flags_of_a_job_give_back_its_config():
    config = campaign.gpu_recipe(
        campaign.JOBS["sr"], campaign.CampaignConfig(), steps=5000, seconds_per_step=0.01
    )
    args = build_parser().parse_args(["train", *campaign.config_flags(config)])
    values = {k: getattr(args, k) for k in TrainConfig.__dataclass_fields__ if getattr(args, k) is not None}
    assert TrainConfig(**values) == config
    assert config.batch_size == 128 and config.dtype == "bf16" and config.steps == 5000
    assert config.ckpt_every * 0.01 <= 30  # a checkpoint at least every 30 s at the measured rate


def test_the_loader_processes_go_to_the_jobs_that_use_them():
    lease = campaign.CampaignConfig()  # two denoisers whose batches are made on the GPU, and sr
    assert campaign.loader_workers(lease, cores=16) == 10
    both = campaign.CampaignConfig(jobs=("jpeg", "jpeg-color"))
    assert campaign.loader_workers(both, cores=16) == 6
    recipe = campaign.gpu_recipe(campaign.JOBS["denoise-gray"], lease, steps=10, seconds_per_step=1)
    assert recipe.patches_on_device and recipe.workers == 0


def test_a_deadline_stops_training_with_a_checkpoint_that_resumes(carried, tmp_path):
    config = TrainConfig(
        data=str(carried / "train/T91"), depth=10, width=16, steps=4, batch_size=2, patch_size=24,
        val_set="", dtype="fp32", log_every=1, ckpt_every=100,
    )  # fmt: skip
    train(config, tmp_path / "run", stop_at_time=time.time() - 1, progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 0
    train(TrainConfig(), tmp_path / "run", resume=True, progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 4


def test_packed_data_is_lossless_and_validation_keeps_its_first_images(tmp_path):
    source = tmp_path / "src"
    photo = data.astronaut()[:64, :64]
    for folder in ("train/BSDS500/train", campaign.VAL_FOLDER):
        (source / folder).mkdir(parents=True)
    (source / "train/T91").mkdir(parents=True)
    Image.fromarray(photo).save(source / "train/T91/t1.bmp")
    Image.fromarray(photo).save(source / "train/BSDS500/train/a.jpg", quality=90)
    for i in range(10):
        Image.fromarray(photo).save(source / campaign.VAL_FOLDER / f"{i:02d}.jpg")
    result = campaign.pack_data(source, tmp_path / "carry")
    assert np.array_equal(np.array(Image.open(tmp_path / "carry/train/T91/t1.png")), photo)
    jpg = "train/BSDS500/train/a.jpg"
    assert (tmp_path / "carry" / jpg).read_bytes() == (source / jpg).read_bytes()
    assert result["folders"][campaign.VAL_FOLDER]["files"] == campaign.VAL_LIMIT
    with pytest.raises(FileExistsError):
        campaign.pack_data(source, tmp_path / "carry")
    with pytest.raises(ValueError, match="would not travel"):
        campaign.pack_data(source, tmp_path / "small", limit_mib=0.001)


def test_the_device_import_path_needs_neither_the_web_stack_nor_bm3d():
    """The lent GPU has no FastAPI, uvicorn, bm3d, matplotlib or onnx: the campaign must not need them."""
    script = """
import sys
MISSING = {"fastapi", "uvicorn", "starlette", "multipart", "python_multipart", "bm3d", "bm4d",
           "matplotlib", "onnx", "onnxscript", "httpx", "playwright"}
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Missing())
import rednet.campaign, rednet.train, rednet.evaluate, rednet.zoo, rednet.bench, rednet.bench_infer
from rednet.cli import main
sys.exit(main(["campaign", "run", "--help"]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--smoke-steps" in done.stdout
