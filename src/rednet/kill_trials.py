"""``rednet kill-trials``: kill -9 ``rednet train`` and a folder ``rednet restore`` at random points; check.

Each trial runs the real command in a child process and sends it SIGKILL at a random point: once the log (or
the output folder) holds a random number of lines (files), after a further random delay, so that kills land
in a step, in a checkpoint or log write, in a model pass or an output write.

* ``train`` (:func:`train_trials`): a tiny RED10 (width 8, 16 x 16 patches, batch 2) trains for a few dozen
  steps, logging each step and writing ``last.pt`` every few. After the kill, ``rednet train --resume``
  continues (or, killed before its first checkpoint, the same command starts again); the trial survives
  when the final weights are bitwise those of an uninterrupted run and ``log.jsonl`` is its log, record by
  record (but for the fields that time the run, ``patches_per_s`` and ``elapsed``).
* ``restore`` (:func:`restore_trials`): a folder of real images is restored by a tiny random RED10. After
  the kill, every visible output must be complete (it decodes and is byte for byte the uninterrupted run's
  output), and ``rednet restore --skip-existing`` must finish the set: every output, equal to the
  uninterrupted run's, and no temporary file left.

Both print JSON: trials, how many survived, where the kills landed, and each trial's record.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["restore_trials", "train_trials"]

_TIMING_FIELDS = ("patches_per_s", "elapsed")


def _env() -> dict[str, str]:
    """The children's environment: one thread each (the same arithmetic in every run), this rednet first."""
    src = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _rednet(*args: str) -> list[str]:
    return [sys.executable, "-m", "rednet", *args]


def _sample_images(folder: Path, count: int, side: int) -> list[Path]:
    """``count`` PNG crops (``side`` pixels) of scikit-image's astronaut and coffee, written to ``folder``."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    sources = [data.astronaut(), data.coffee()]
    paths = []
    for i in range(count):
        a = sources[i % 2]
        y, x = (37 * i) % (a.shape[0] - side), (53 * i) % (a.shape[1] - side)
        path = folder / f"img{i:02d}.png"
        Image.fromarray(a[y : y + side, x : x + side]).save(path)
        paths.append(path)
    return paths


def _kill_when(proc: subprocess.Popen, ready: Any, delay: float, timeout: float = 300.0) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` is true; False when it ended before that."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError("the child never reached its kill point")
        time.sleep(0.002)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _log(run_dir: Path) -> list[dict[str, Any]]:
    """``log.jsonl``'s records without the fields that time the run."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in _TIMING_FIELDS} for r in records]


def _weights(run_dir: Path) -> dict[str, Any]:
    from rednet.train import load_checkpoint

    return load_checkpoint(run_dir / "last.pt")["model"]


def _run(command: list[str]) -> None:
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(nothing on standard error)"])[-1]
        raise RuntimeError(f"{' '.join(command[2:5])} ... failed: {tail}")


def train_trials(trials: int = 20, seed: int = 0, steps: int = 48, ckpt_every: int = 5) -> dict[str, Any]:
    """kill -9 ``rednet train`` ``trials`` times at random points; resume each, compare with a straight run.

    Args:
        trials: how many kills.
        seed: the seed of the kill points.
        steps: training steps of each run.
        ckpt_every: steps between checkpoints (``last.pt``).

    Returns:
        A JSON-able dict: ``trials``, ``survived`` (weights and log as the uninterrupted run's), ``killed``
        (trials whose kill landed before the run ended), ``past_checkpoint`` (kills after steps that
        ``last.pt`` did not hold yet, whose log the resume truncated), ``before_first_checkpoint`` (started
        again), ``cut_lines`` (kills that left a log line cut short), ``seconds`` and ``records``.
    """
    from rednet.train import load_checkpoint

    rng = random.Random(seed)
    start = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="rednet-kill-train-") as tmp:
        images = Path(tmp) / "images"
        _sample_images(images, 3, 64)
        flags = [
            "--no-progress",
            "--data",
            str(images),
            "--depth",
            "10",
            "--width",
            "8",
            "--steps",
            str(steps),
        ]
        flags += ["--patch-size", "16", "--batch-size", "2", "--val-set", "", "--ckpt-every", str(ckpt_every)]
        flags += ["--log-every", "1", "--dtype", "fp32", "--threads", "1", "--workers", "0", "--lr", "1e-3"]
        straight = Path(tmp) / "straight"
        _run(_rednet("train", "--run-dir", str(straight), *flags))
        want_log, want = _log(straight), _weights(straight)
        for trial in range(trials):
            run = Path(tmp) / f"trial{trial:02d}"
            at_line, delay = rng.randint(1, steps - 2), rng.uniform(0.0, 0.02)
            proc = subprocess.Popen(
                _rednet("train", "--run-dir", str(run), *flags),
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            killed = _kill_when(proc, lambda r=run, n=at_line: _lines(r / "log.jsonl") >= n, delay)
            text = (run / "log.jsonl").read_text() if (run / "log.jsonl").is_file() else ""
            logged = text.count("\n")
            checkpoint = load_checkpoint(run / "last.pt")["step"] if (run / "last.pt").is_file() else 0
            if (run / "last.pt").is_file():
                _run(_rednet("train", "--resume", str(run), "--no-progress"))
            else:
                _run(_rednet("train", "--run-dir", str(run), *flags))
            got = _weights(run)
            same_weights = all(bool((got[k] == want[k]).all()) for k in want) and got.keys() == want.keys()
            same_log = _log(run) == want_log
            records.append(
                {
                    "trial": trial,
                    "kill_after_lines": at_line,
                    "delay_s": round(delay, 4),
                    "killed": killed,
                    "logged_steps_at_kill": logged,
                    "checkpoint_step_at_kill": checkpoint,
                    "cut_line": bool(text) and not text.endswith("\n"),
                    "same_weights": same_weights,
                    "same_log": same_log,
                }
            )
    return {
        "command": "train",
        "trials": trials,
        "seed": seed,
        "steps": steps,
        "ckpt_every": ckpt_every,
        "survived": sum(r["same_weights"] and r["same_log"] for r in records),
        "killed": sum(r["killed"] for r in records),
        "past_checkpoint": sum(r["logged_steps_at_kill"] > r["checkpoint_step_at_kill"] for r in records),
        "before_first_checkpoint": sum(r["checkpoint_step_at_kill"] == 0 for r in records),
        "cut_lines": sum(r["cut_line"] for r in records),
        "seconds": round(time.perf_counter() - start, 1),
        "records": records,
    }


def _outputs(folder: Path) -> dict[str, bytes]:
    """The visible image files of an output folder (what a user sees), name -> bytes."""
    from rednet.io import is_image_file

    if not folder.is_dir():
        return {}
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and is_image_file(p)
    }


def _decodes(path: Path) -> bool:
    from rednet.io import ImageError, read_image

    try:
        read_image(path)
    except ImageError:
        return False
    return True


def restore_trials(trials: int = 10, seed: int = 0, images: int = 8, side: int = 160) -> dict[str, Any]:
    """kill -9 a folder ``rednet restore`` ``trials`` times at random points; check and finish each set.

    Args:
        trials: how many kills.
        seed: the seed of the kill points.
        images: images in the folder.
        side: their side in pixels.

    Returns:
        A JSON-able dict: ``trials``, ``survived`` (every visible output complete at the kill, and the set
        finished by ``--skip-existing`` equal to the uninterrupted run's, no temporary file left), ``killed``,
        ``outputs_at_kill`` (visible outputs, summed), ``temps_at_kill`` (temporary files a kill left),
        ``seconds`` and ``records``.
    """
    import torch

    from rednet.model import REDNet, REDNetConfig
    from rednet.zoo import save_weights

    rng = random.Random(seed)
    start = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="rednet-kill-restore-") as tmp:
        inputs = Path(tmp) / "photos"
        _sample_images(inputs, images, side)
        torch.manual_seed(0)
        weights = save_weights(
            Path(tmp) / "tiny.safetensors",
            REDNet(REDNetConfig(depth=10, width=16, channels=3)),
            {"name": "tiny"},
        )
        flags = ["--task", "denoise", "--weights", str(weights), "--device", "cpu", "--no-bf16"]
        reference = Path(tmp) / "reference"
        _run(_rednet("restore", str(inputs), "-o", str(reference), *flags))
        want = _outputs(reference)
        for trial in range(trials):
            out = Path(tmp) / f"trial{trial:02d}"
            at_count, delay = rng.randint(0, images - 1), rng.uniform(0.0, 0.1)
            proc = subprocess.Popen(
                _rednet("restore", str(inputs), "-o", str(out), *flags),
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            killed = _kill_when(proc, lambda o=out, n=at_count: len(_outputs(o)) >= n, delay)
            seen = _outputs(out)
            temps = [p.name for p in out.iterdir() if p.name.endswith(".rednet-tmp")] if out.is_dir() else []
            complete = all(want.get(name) == blob and _decodes(out / name) for name, blob in seen.items())
            _run(_rednet("restore", str(inputs), "-o", str(out), *flags, "--skip-existing"))
            finished = _outputs(out) == want
            left = [p.name for p in out.iterdir() if p.name.startswith(".")]
            records.append(
                {
                    "trial": trial,
                    "kill_after_outputs": at_count,
                    "delay_s": round(delay, 4),
                    "killed": killed,
                    "outputs_at_kill": len(seen),
                    "temps_at_kill": len(temps),
                    "complete_at_kill": complete,
                    "finished": finished,
                    "temps_after": len(left),
                }
            )
    return {
        "command": "restore",
        "trials": trials,
        "seed": seed,
        "images": images,
        "side": side,
        "survived": sum(r["complete_at_kill"] and r["finished"] and not r["temps_after"] for r in records),
        "killed": sum(r["killed"] for r in records),
        "outputs_at_kill": sum(r["outputs_at_kill"] for r in records),
        "temps_at_kill": sum(r["temps_at_kill"] for r in records),
        "seconds": round(time.perf_counter() - start, 1),
        "records": records,
    }
