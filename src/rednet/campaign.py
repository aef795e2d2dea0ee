"""The GPU lease: one prepared command that turns a short lease of a GPU into retrained models.

Here, on the CPU, before the lease (once; the folder is git-ignored and travels as ``carry``)::

    rednet campaign data                         # the training and validation images, lossless, ~31 MiB

On the lent machine, from the repository root (the device tool's ``run``, ``carry [".campaign"]``)::

    PYTHONPATH=src python3 -m rednet campaign run --out "$OUT" --seconds 600

Back here, with the files that came back::

    rednet campaign unpack FILES_AT               # run folders into runs/ (rednet.lease), before -> after
    rednet export runs/NAME-gpu-... -o src/rednet/weights/NAME.safetensors --overwrite

``run`` works in three phases inside ``seconds`` (the command's limit), keeping ``margin`` seconds spare:

1. **smoke**: every job trains ``smoke_steps`` steps at once (stopped at ``smoke_seconds``), validating on
   one image every 100 steps, and is exported; a job that fails, or has not validated by then, is dropped
   with its log, and if every job fails the command stops. The steps/s each job reaches over the second
   half of its smoke, while they all share the device, is the rate its schedule is sized on.
2. **train**: every job at once, from its shipped weights, with a warm-up and a cosine schedule sized to
   end before the deadline (each run also stops itself at the deadline, writing ``last.pt``);
   checkpoints every <= 30 s, and every ``pack_every`` seconds each run is packed into ``OUT/NAME.tar``, so
   a command killed at its limit still brings back what was trained.
3. **bench**: ``rednet bench train`` and ``bench infer`` on the device, into ``OUT/bench.json``.

``OUT`` then holds at most 8 files: ``NAME.tar`` per job (its config, log, output and slim ``best.pt`` /
``last.pt``: model weights in fp32 with step, time and config, no optimizer state), ``campaign.json`` (per
job: steps/s in both phases, steps, patches, validation before -> after, the exact train command) and
``bench.json``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rednet.train import load_checkpoint
from rednet.train_config import TrainConfig

__all__ = [
    "CampaignConfig",
    "JOBS",
    "config_flags",
    "gpu_recipe",
    "loader_workers",
    "pack_data",
    "pack_run",
    "run_campaign",
]

VAL_FOLDER = "train/BSDS500/test"
"""The validation images, relative to the data root: the BSDS500 ``test`` split (no benchmark image)."""

VAL_LIMIT = 8
"""Validation uses the first 8 of them, as every shipped card did."""

_DENOISE_COLOR = TrainConfig(
    task="denoise",
    sigma="0-75",
    channel="rgb",
    data="train/BSDS500/train",
    val_level="25",
    color_jitter=True,
    patches_on_device=True,
)
_JPEG = TrainConfig(task="jpeg", quality="5-95", channel="y", data="train/BSDS500/train", val_level="10")
_SR = TrainConfig(task="sr", scale="2,3,4", channel="y", data="train/T91,train/BSDS500/train", val_level="3")

JOBS: dict[str, TrainConfig] = {
    # What each shipped model restores and learns from, as in its card's command; gpu_recipe sets the rest.
    # The denoisers' batches are made on the GPU (rednet.device_patches), the others' by loader processes.
    "denoise-gray": replace(_DENOISE_COLOR, channel="gray", color_jitter=False),
    # The colour models also see new colours (channel order, saturation): BSDS's alone do not carry over.
    "denoise-color": _DENOISE_COLOR,
    "sr": _SR,
    "jpeg": _JPEG,
    "jpeg-color": replace(_JPEG, channel="rgb", color_jitter=True),
    # The fast (strided) variants, after the main models (issue 30), from their own shipped weights.
    "denoise-color-fast": replace(_DENOISE_COLOR, stride=2),
    "sr-fast": replace(_SR, stride=2),
}
"""The models a lease can retrain, by shipped name, in the campaign's order of priority."""

DEFAULT_JOBS = ("denoise-gray", "denoise-color", "sr")
"""The top of the priority list: the models a lease trains when ``--jobs`` is not given."""


@dataclass(frozen=True)
class CampaignConfig:
    """One lease.

    Attributes:
        jobs: names from :data:`JOBS`, trained at once.
        out: the folder whose files come back (the device's ``$OUT``).
        work: where the run folders live during the lease (the machine's own disk).
        data_root: the carried images (``rednet campaign data``).
        seconds: the command's time limit; everything ends ``margin`` seconds before it.
        margin: seconds kept spare at the end.
        smoke_steps: steps of each job in the smoke phase.
        smoke_seconds: the smoke phase's time limit (a job that has not validated by then fails).
        bench_seconds: time kept for the benchmarks at the end (0 = none).
        pack_seconds: time kept for the last packing and the summary, after the runs.
        max_steps: at most this many training steps per job (0 = as many as the time allows): a rehearsal.
        pack_every: seconds between two packings of every run into ``out``.
        device: "cuda", or "cpu" (the suite's rehearsal).
        batch_size, lr, warmup: the recipe (see :func:`gpu_recipe`).
        depth, width, patch_size: the model and patches (the shipped models: 30, 64, 50).
        init: start each job from its shipped weights (False: from scratch, e.g. a smaller model).
        workers: loader processes per job whose patches are not made on the device; 0 = the machine's
            cores less two per job, shared among those jobs (:func:`loader_workers`).
        threads: PyTorch CPU threads per job.
    """

    jobs: tuple[str, ...] = DEFAULT_JOBS
    out: str = "out"
    work: str = "/tmp/rednet-campaign"
    data_root: str = ".campaign/data"
    seconds: float = 600.0
    margin: float = 60.0
    smoke_steps: int = 300
    smoke_seconds: float = 60.0
    bench_seconds: float = 45.0
    pack_seconds: float = 15.0
    max_steps: int = 0
    pack_every: float = 30.0
    device: str = "cuda"
    batch_size: int = 128
    lr: float = 5e-4
    warmup: int = 300
    depth: int = 30
    width: int = 64
    patch_size: int = 50
    init: bool = True
    workers: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        unknown = [j for j in self.jobs if j not in JOBS]
        if unknown or not self.jobs:
            raise ValueError(f"jobs must be among {', '.join(JOBS)}, got {', '.join(unknown) or 'none'}")
        if len(set(self.jobs)) != len(self.jobs):
            raise ValueError("a job is named twice")
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"device must be cuda or cpu, got {self.device!r}")
        spare = self.seconds - self.margin - self.bench_seconds - self.pack_seconds - self.smoke_seconds
        if spare <= 0:
            raise ValueError(f"{self.seconds} s leave no time to train after the smoke, bench and margin")


def gpu_recipe(
    job: TrainConfig, campaign: CampaignConfig, *, steps: int, seconds_per_step: float
) -> TrainConfig:
    """A job's training config on the lent device.

    Batch 128 (8 times the CPU runs' 16) at learning rate 5e-4 (the CPU cycles' 4e-4 scaled by well under
    the square root of 8, since a warm start is near a minimum), ``warmup`` linear steps, then a cosine
    decay to 1e-6 over ``steps``; gradient clipping 0.1 and l2 loss as every shipped model; bf16 autocast and
    channels-last. Validation five times a run (and at its end), a checkpoint at least every 30 s.
    """
    return replace(
        job,
        data_root=campaign.data_root,
        val_set=str(Path(campaign.data_root) / VAL_FOLDER),
        val_limit=VAL_LIMIT,
        val_every=max(1, -(-steps // 5)),
        depth=campaign.depth,
        width=campaign.width,
        steps=steps,
        batch_size=campaign.batch_size,
        patch_size=campaign.patch_size,
        lr=campaign.lr,
        schedule="cosine",
        min_lr=1e-6,
        warmup=min(campaign.warmup, steps // 4),
        clip_grad=0.1,
        loss="l2",
        dtype="bf16" if campaign.device == "cuda" else "auto",
        channels_last=True,
        log_every=max(1, min(50, steps // 20)),
        ckpt_every=max(1, int(30 / max(seconds_per_step, 1e-6))),
        workers=0 if job.patches_on_device else loader_workers(campaign),
        threads=campaign.threads,
        device=campaign.device,
    )


def loader_workers(campaign: CampaignConfig, cores: int | None = None) -> int:
    """Loader processes for each job of a lease that uses them (``campaign.workers``, or if 0: the cores
    left after two per job, shared evenly, at least 1)."""
    if campaign.workers:
        return campaign.workers
    loading = sum(not JOBS[j].patches_on_device for j in campaign.jobs)
    if not cores:  # the cores this process may use (a VM's share), not the host's
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(1, (cores - 2 * len(campaign.jobs)) // max(1, loading))


def config_flags(config: TrainConfig) -> list[str]:
    """The ``rednet train`` flags that give ``config``: one per field that differs from the default."""
    default = TrainConfig()
    flags = []
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if value == getattr(default, field.name):
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags


# ---------------------------------------------------------------------------------------------------------
# Before the lease: the images that travel


def pack_data(source: str | Path, target: str | Path, *, limit_mib: float = 40.0) -> dict[str, Any]:
    """Copy the training folders of :data:`JOBS` and the validation images into ``target``, lossless.

    JPEG and PNG files are copied byte for byte; BMP files are re-saved as PNG (the same pixels, half the
    bytes), since the carried tree is limited (64 MiB with the repository).

    Args:
        source: the data root (``rednet.data.data_root()``).
        target: the folder to write (created; must not exist yet).
        limit_mib: refuse to write more than this.

    Returns:
        JSON-ready: files and MiB per folder, and in all.
    """
    from PIL import Image

    from rednet.io import is_image_file

    source, target = Path(source), Path(target)
    if target.exists():
        raise FileExistsError(f"{target}: already exists; remove it to pack the data again")
    folders = sorted({f.strip() for job in JOBS.values() for f in job.data.split(",")})
    plan: list[tuple[Path, Path]] = []
    for folder in [*folders, VAL_FOLDER]:
        files = sorted(p for p in (source / folder).iterdir() if p.is_file() and is_image_file(p))
        if not files:
            raise FileNotFoundError(f"{source / folder}: no training images")
        for path in files[:VAL_LIMIT] if folder == VAL_FOLDER else files:
            plan.append((path, target / folder / path.name))
    written: dict[str, list[float]] = {}
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix.lower() == ".bmp":
            dst = dst.with_suffix(".png")
            with Image.open(src) as im:
                im.save(dst, optimize=True)
        else:
            shutil.copyfile(src, dst)
        entry = written.setdefault(str(dst.parent.relative_to(target)), [0, 0.0])
        entry[0] += 1
        entry[1] += dst.stat().st_size / 2**20
        if sum(v[1] for v in written.values()) > limit_mib:
            shutil.rmtree(target)
            raise ValueError(
                f"the images are over {limit_mib} MiB: they would not travel with the repository"
            )
    for sources in {src.parent / "SOURCE.txt" for src, _ in plan}:
        if sources.is_file():
            shutil.copyfile(sources, target / sources.parent.relative_to(source) / "SOURCE.txt")
    folders_out = {k: {"files": v[0], "mib": round(v[1], 2)} for k, v in sorted(written.items())}
    return {"folders": folders_out, "mib": round(sum(v[1] for v in written.values()), 2)}


# ---------------------------------------------------------------------------------------------------------
# During the lease


@dataclass
class _Process:
    """A running ``rednet train`` of one job."""

    name: str
    run_dir: Path
    command: list[str]
    popen: subprocess.Popen
    started: float


def _start(name: str, config: TrainConfig, run_dir: Path, *, init: Path | None, deadline: float) -> _Process:
    """Start ``rednet train`` for one job in a child process, its output in ``run_dir/train.out``."""
    command = [sys.executable, "-m", "rednet", "train", *config_flags(config), "--run-dir", str(run_dir)]
    command += ["--init", str(init)] if init is not None else []
    command += ["--deadline", f"{deadline:.1f}", "--no-progress"]
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.out", "wb") as out:
        popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return _Process(name, run_dir, command, popen, time.time())


def run_log(run_dir: Path) -> list[dict[str, Any]]:
    """The records of a run's ``log.jsonl``, oldest first; none if it has no log yet."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]


def steps_per_second(records: Sequence[dict[str, Any]]) -> float | None:
    """Training steps per second over the second half of a run's loss records (past the start-up, the
    convolution algorithms being chosen, and the other jobs' start); None if there are too few."""
    timed = [r for r in records if "elapsed" in r and "loss" in r]
    if len(timed) < 3:
        return None
    first, last = timed[len(timed) // 2 - 1], timed[-1]
    return (last["step"] - first["step"]) / max(last["elapsed"] - first["elapsed"], 1e-9)


def _slim(checkpoint: Path) -> bytes:
    """A checkpoint without its optimizer state: what ``rednet export`` needs, in fp32."""
    import torch

    state = load_checkpoint(checkpoint)
    keep = {k: state[k] for k in ("model", "step", "best_psnr", "elapsed", "config")}
    buffer = io.BytesIO()
    torch.save(keep, buffer)
    return buffer.getvalue()


def pack_run(run_dir: str | Path, archive: str | Path) -> Path:
    """Pack a run folder into a tar (config.json, log.jsonl, train.out, slim best.pt / last.pt), atomically:
    the archive is complete or absent, whenever the command is killed."""
    run_dir, archive = Path(run_dir), Path(archive)
    tmp = archive.with_name(f".{archive.name}.part")
    with tarfile.open(tmp, "w") as tar:
        for name in ("config.json", "log.jsonl", "train.out"):
            if (run_dir / name).is_file():
                tar.add(run_dir / name, arcname=f"{run_dir.name}/{name}")
        for name in ("best.pt", "last.pt"):
            if (run_dir / name).is_file():
                data = _slim(run_dir / name)
                info = tarfile.TarInfo(f"{run_dir.name}/{name}")
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, archive)
    return archive


def _say(out: Path, text: str) -> None:
    """One progress line on stdout (the device tool returns the tail) and in ``out/campaign.log``."""
    line = f"[{time.strftime('%H:%M:%S')}] {text}"
    print(line, flush=True)  # noqa: T201 - this command's progress is its output
    with open(out / "campaign.log", "a") as f:
        f.write(line + "\n")


def _wait(processes: Sequence[_Process], until: float, *, every: float, pack: Path | None) -> None:
    """Wait for the processes (killing any alive at ``until`` + 15 s), packing them every ``every`` s."""
    next_pack = time.time() + every
    while any(p.popen.poll() is None for p in processes):
        now = time.time()
        if now > until + 15:
            for p in processes:
                if p.popen.poll() is None:
                    p.popen.kill()
            break
        if pack is not None and now >= next_pack:
            for p in processes:
                if (p.run_dir / "last.pt").is_file():
                    pack_run(p.run_dir, pack / f"{p.name}.tar")
            next_pack = now + every
        time.sleep(0.5)
    for p in processes:
        p.popen.wait()


def _tail(path: Path, lines: int = 5) -> str:
    return (
        " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:]) if path.is_file() else ""
    )


def shipped_weights(name: str) -> tuple[Path, float | None]:
    """A shipped model's weights file and its card's validation PSNR (the 'before')."""
    from rednet.zoo import WEIGHTS, WEIGHTS_DIR

    path = WEIGHTS_DIR / WEIGHTS[name].file
    card = json.loads(path.with_suffix(".json").read_text())
    return path, (card.get("validation") or {}).get("psnr_at_export")


def _smoke(campaign: CampaignConfig, work: Path, out: Path) -> dict[str, dict[str, Any]]:
    """Phase 1: ``smoke_steps`` of each job at once; returns the jobs that trained, with their rates."""
    from rednet.export import export_run

    deadline = time.time() + campaign.smoke_seconds
    processes = []
    for name in campaign.jobs:
        config = replace(
            gpu_recipe(JOBS[name], campaign, steps=campaign.smoke_steps, seconds_per_step=1.0),
            val_every=100,
            val_limit=1,
            log_every=10,
        )
        init = shipped_weights(name)[0] if campaign.init else None
        processes.append(_start(name, config, work / "smoke" / name, init=init, deadline=deadline))
    _wait(processes, deadline, every=math.inf, pack=None)
    alive: dict[str, dict[str, Any]] = {}
    for p in processes:
        records = run_log(p.run_dir)
        rate = steps_per_second(records)
        problem = ""
        if p.popen.returncode != 0:
            problem = f"exit code {p.popen.returncode}: {_tail(p.run_dir / 'train.out')}"
        elif rate is None or not (p.run_dir / "last.pt").is_file():
            problem = f"too few steps in {campaign.smoke_seconds} s"
            problem += f": {_tail(p.run_dir / 'train.out')}"
        elif not any("val_psnr" in r for r in records):
            problem = "no validation record"
        else:
            try:
                export_run(p.run_dir, p.run_dir / f"{p.name}.safetensors", checkpoint="last")
            except (OSError, ValueError) as e:
                problem = f"export failed: {e}"
        if problem:
            _say(out, f"smoke: {p.name} dropped ({problem})")
            continue
        # Start-up: the time not spent in training steps (imports, images, workers, validations).
        timed = [r for r in records if "elapsed" in r]
        startup = (p.run_dir / "last.pt").stat().st_mtime - p.started - timed[-1]["elapsed"]
        alive[p.name] = {"steps_per_s": rate, "startup_s": max(0.0, startup)}
        _say(out, f"smoke: {p.name} {rate * campaign.batch_size:.0f} patches/s, start-up {startup:.1f} s")
    return alive


def _bench(campaign: CampaignConfig, out: Path) -> None:
    """Phase 3: training and inference speed on the device against its own matmul peak, into bench.json."""
    from rednet.bench import bench_train
    from rednet.bench_infer import bench_infer

    results: dict[str, Any] = {}
    model = {"model": f"red{campaign.depth}", "width": campaign.width}
    peak = {"peak_size": 8192 if campaign.device == "cuda" else 256, "peak_seconds": 0.2}
    seconds = max(1.0, campaign.bench_seconds / 4)
    try:
        results["train"] = bench_train(
            **model,
            device=campaign.device,
            batch_size=campaign.batch_size,
            patch_size=campaign.patch_size,
            seconds=seconds,
            **peak,
        )
        results["infer"] = bench_infer(
            **model,
            device=campaign.device,
            size=1024 if campaign.device == "cuda" else 64,
            seconds=seconds / 3,
            variants=["fp32", "bf16", "strided-bf16", "ensemble-bf16"],
            bm3d=False,
            **peak,
        )
    except Exception as e:  # noqa: BLE001 - a failed benchmark must not lose the trained models
        results["error"] = f"{type(e).__name__}: {e}"
    (out / "bench.json").write_text(json.dumps(results, indent=2))


def run_campaign(campaign: CampaignConfig, *, command: str = "") -> dict[str, Any]:
    """Run a lease (see the module's docstring): smoke, train, pack, bench.

    Returns:
        The summary also written to ``out/campaign.json``.

    Raises:
        RuntimeError: when every job failed its smoke test.
    """
    t0 = time.time()
    limit = t0 + campaign.seconds - campaign.margin
    out, work = Path(campaign.out), Path(campaign.work)
    out.mkdir(parents=True, exist_ok=True)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _say(out, f"campaign: {', '.join(campaign.jobs)} on {campaign.device}, {campaign.seconds:.0f} s")
    rates = _smoke(campaign, work, out)
    if not rates:
        raise RuntimeError("every job failed its smoke test; see campaign.log")
    train_end = limit - campaign.bench_seconds - campaign.pack_seconds
    started = time.time()
    processes = []
    for name, rate in rates.items():
        seconds = train_end - started - rate["startup_s"] - 5
        if seconds < 5:
            _say(out, f"train: {name} skipped, {seconds:.0f} s left after the smoke")
            continue
        steps = max(1, int(rate["steps_per_s"] * seconds * 0.9))
        steps = min(steps, campaign.max_steps or steps)
        config = gpu_recipe(JOBS[name], campaign, steps=steps, seconds_per_step=1 / rate["steps_per_s"])
        init = shipped_weights(name)[0] if campaign.init else None
        run_dir = work / f"{name}-{campaign.device}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(t0))}"
        processes.append(_start(name, config, run_dir, init=init, deadline=train_end))
        _say(out, f"train: {name} {steps} steps of {campaign.batch_size} in {seconds:.0f} s")
    _wait(processes, train_end, every=campaign.pack_every, pack=out)
    summary: dict[str, Any] = {"command": command, "device": campaign.device, "jobs": {}}
    for p in processes:
        _record_lease(p.run_dir, command, len(processes))
        if (p.run_dir / "last.pt").is_file():
            pack_run(p.run_dir, out / f"{p.name}.tar")
        records = run_log(p.run_dir)
        vals = [[r["step"], r["val_psnr"]] for r in records if "val_psnr" in r]
        last = max((r["step"] for r in records), default=0)
        summary["jobs"][p.name] = {
            "exit_code": p.popen.returncode,
            "command": shlex.join(["rednet", *p.command[3:]]),
            "smoke_patches_per_s": rates[p.name]["steps_per_s"] * campaign.batch_size,
            "patches_per_s": (steps_per_second(records) or 0.0) * campaign.batch_size,
            "steps": last,
            "patches": last * campaign.batch_size,
            "device_seconds": max((r.get("elapsed", 0.0) for r in records), default=0.0),
            "validation_before": shipped_weights(p.name)[1] if campaign.init else None,
            "validation": vals,
        }
        _say(out, f"done: {p.name} exit {p.popen.returncode}, {last} steps, validation {vals[-1:] or 'none'}")
    if campaign.bench_seconds and time.time() < limit - campaign.bench_seconds / 2:
        _bench(campaign, out)
    summary["seconds"] = time.time() - t0
    (out / "campaign.json").write_text(json.dumps(summary, indent=2))
    _say(out, f"campaign: finished in {summary['seconds']:.0f} s")
    return summary


def _record_lease(run_dir: Path, command: str, jobs: int) -> None:
    """Add the lease's own command to the run's meta (the model card shows it beside the train command)."""
    path = run_dir / "config.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        stored.setdefault("meta", {})["lease"] = {"command": command, "concurrent_jobs": jobs}
        path.write_text(json.dumps(stored, indent=2))
