"""``rednet report fast``: what each shipped fast (strided) model costs and gains against its full model.

A fast model (``ModelEntry.fast``) strides its first convolution and its last deconvolution, so its hidden
layers see a quarter of the pixels. Its full model is the shipped model of the same task, channels and
variant without the stride. One run of this report measures both, on the same inputs:

* the PSNR/SSIM of each on every given test set of its task whose protocol channel fits it (a 3-channel
  model on colour sets, a 1-channel one on Y or gray), at the task's table levels (fp32, or both models in
  bf16 with ``bf16``);
* the seconds of each on one ``size`` x ``size`` photo (scikit-image's astronaut), the two models taking
  turns, in fp32 and, where the CPU has native bfloat16, in bf16 (what ``rednet restore`` runs there).

cost = full PSNR - fast PSNR (dB); speed-up = full seconds / fast seconds (medians).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from rednet.tasks import task_named

__all__ = ["FastReport", "fast_pairs", "render_fast_report", "run_fast_report", "time_pair"]


@dataclass(frozen=True)
class FastReport:
    """What ``rednet report fast`` measures.

    Attributes:
        datasets: test sets; each fast model is scored on those that are its task's (``BENCHMARKS``) and
            whose protocol channel fits its channels.
        limit: only the first ``limit`` images of each set (None = all).
        levels: the levels of every table (None = each task's ``table_levels``).
        size: side of the timing photo in pixels.
        rounds: timed rounds per model and precision (each round times the full model, then the fast one).
        bf16: score both models with bfloat16 autocast (what ``rednet restore`` runs on a CPU with native
            bf16); False = fp32.
        data_root: where the sets live (see ``rednet.data.data_root``).
    """

    datasets: tuple[str, ...]
    limit: int | None = None
    levels: tuple[int, ...] | None = None
    size: int = 512
    rounds: int = 5
    bf16: bool = False
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.size < 8 or self.rounds < 1:
            raise ValueError(f"size must be >= 8 and rounds >= 1, got {self.size} and {self.rounds}")


def fast_pairs() -> list[tuple[str, str]]:
    """(full model, fast model) of every shipped fast model, in ``WEIGHTS`` order."""
    from rednet.zoo import WEIGHTS, default_model

    pairs = []
    for name, entry in WEIGHTS.items():
        if entry.fast:
            full = default_model(entry.task, entry.channels, variant=entry.variant)
            if WEIGHTS[full].channels != entry.channels:
                raise ValueError(f"{name}: no full {entry.channels}-channel model to compare it with")
            pairs.append((full, name))
    return pairs


def _tables(report: FastReport, fast: str) -> list[tuple[str, Any]]:
    """(dataset, level) of the cells of fast model ``fast``."""
    from rednet.data import BENCHMARKS
    from rednet.zoo import WEIGHTS

    entry = WEIGHTS[fast]
    task = task_named(entry.task)
    levels = report.levels or task.table_levels
    out = []
    for dataset in report.datasets:
        bench = BENCHMARKS.get(dataset)
        if bench is None:
            raise ValueError(f"{dataset!r} is not a named test set; choose from {', '.join(BENCHMARKS)}")
        fits = (task.channel(bench.color) == "rgb") == (entry.channels == 3)
        if bench.task == entry.task and fits:
            out += [(dataset, level) for level in levels]
    return out


def run_fast_report(report: FastReport, *, jobs: int = 1, progress: bool = False) -> dict[str, Any]:
    """Score and time every shipped fast model against its full model.

    Args:
        report: what to measure.
        jobs: cells scored at once (see :func:`rednet.report.run_cells`); the timing runs afterwards in this
            process, with all its threads.
        progress: a progress bar over the cells.

    Returns:
        ``{"pairs": [[full, fast], ...], "cells": [record, ...], "timings": [record, ...]}``: a cell record
        as :func:`rednet.report.measure_cell` gives (dataset, level, model, psnr, ssim, ...); a timing record
        has full, fast, dtype, size and ``full_s`` / ``fast_s`` (every round's seconds).
    """
    from rednet.evaluate import EvalConfig
    from rednet.report import run_cells
    from rednet.zoo import WEIGHTS

    pairs = fast_pairs()
    if not pairs:
        raise ValueError("no fast (strided) model is shipped; nothing to compare")
    cells = []
    for full, fast in pairs:
        task = task_named(WEIGHTS[fast].task)
        tables = _tables(report, fast)
        if not tables:
            raise ValueError(
                f"{fast}: none of {', '.join(report.datasets)} is a {task.name} test set that it fits"
            )
        for dataset, level in tables:
            for model in (full, fast):
                config = EvalConfig(
                    task=task.name,
                    dataset=dataset,
                    method="rednet",
                    model=model,
                    data_root=report.data_root,
                    limit=report.limit,
                    bf16=report.bf16,
                    **{task.level: level},
                )
                cells.append((config, model))
    records = run_cells(cells, jobs, progress)
    timings = [
        t for full, fast in pairs for t in time_pair(full, fast, size=report.size, rounds=report.rounds)
    ]
    return {"pairs": [list(p) for p in pairs], "cells": records, "timings": timings}


def time_pair(full: str, fast: str, *, size: int, rounds: int) -> list[dict[str, Any]]:
    """Seconds of shipped models ``full`` and ``fast`` restoring one ``size`` x ``size`` photo on the CPU
    (tile "auto"), taking turns, after one warm-up pass each; in fp32, and in bf16 where it is native."""
    from skimage import data

    from rednet.degrade import imresize, quantize
    from rednet.devices import native_bf16
    from rednet.infer import restore
    from rednet.io import array_to_tensor
    from rednet.zoo import load

    models = {name: load(name) for name in (full, fast)}
    channels = models[full].config.channels
    photo = array_to_tensor(data.astronaut())
    photo = photo if channels == 3 else photo.mean(dim=1, keepdim=True)
    x = quantize(imresize(photo, size=(size, size)))  # the speed does not depend on what the pixels are
    out = []
    for bf16 in (False, True) if native_bf16(torch.device("cpu")) else (False,):
        seconds: dict[str, list[float]] = {full: [], fast: []}
        for name in (full, fast):
            restore(models[name], x, bf16=bf16)  # warm-up
        for _ in range(rounds):
            for name in (full, fast):
                start = time.perf_counter()
                restore(models[name], x, bf16=bf16)
                seconds[name].append(time.perf_counter() - start)
        out.append(
            {
                "full": full,
                "fast": fast,
                "dtype": "bf16" if bf16 else "fp32",
                "size": size,
                "threads": torch.get_num_threads(),
                "full_s": seconds[full],
                "fast_s": seconds[fast],
            }
        )
    return out


def _level_label(task_name: str, level: Any) -> str:
    task = task_named(task_name)
    return f"×{level}" if task.enlarges else f"{task.level} {level}"


def render_fast_report(result: dict[str, Any], report: FastReport, header: str) -> str:
    """The markdown of ``rednet report fast`` (a section of ``docs/results.md``)."""
    from rednet.report import model_lines
    from rednet.zoo import WEIGHTS

    cell = {(r["dataset"], r["level"], r["model"]): r for r in result["cells"]}
    pairs = [tuple(p) for p in result["pairs"]]
    lines = [header, "", "## Fast (strided) models against their full models", ""]
    lines += model_lines([n for p in pairs for n in p])
    lines += [
        "",
        "A fast model strides its first convolution and its last deconvolution by 2, so the layers "
        "between them see a quarter of the pixels. Cells are mean PSNR (dB) / SSIM over the set, "
        f"{'bf16' if report.bf16 else 'fp32'}, the same seeded inputs for both models (protocol.md); "
        "cost = full − fast PSNR. Compare the patches in the lines above: a fast model that trained on "
        "more patches than its full model can score above it (a negative cost), which is its extra "
        "training, not the stride.",
    ]
    for full, fast in pairs:
        task = WEIGHTS[fast].task
        lines += [
            "",
            f"### `{fast}` against `{full}`",
            "",
            f"| set | level | `{full}` | `{fast}` | cost (dB) |",
            "|---|---|---|---|---|",
        ]
        for dataset, level in _tables(report, fast):
            a, b = cell[(dataset, level, full)], cell[(dataset, level, fast)]
            lines.append(
                f"| {dataset} ({a['images']}) | {_level_label(task, level)} | {a['psnr']:.2f} / "
                f"{a['ssim']:.4f} | {b['psnr']:.2f} / {b['ssim']:.4f} | {a['psnr'] - b['psnr']:+.2f} |"
            )
    lines += [
        "",
        f"### Speed: one {report.size} × {report.size} photo, the two models taking turns",
        "",
        "Median seconds over the rounds on the machine named above (`rednet restore`'s path: tile auto, "
        "channels-last); bf16 is what `rednet restore` runs on a CPU with native bfloat16.",
        "",
        "| fast model | dtype | full s | fast s | speed-up | rounds |",
        "|---|---|---|---|---|---|",
    ]
    for t in result["timings"]:
        full_s, fast_s = statistics.median(t["full_s"]), statistics.median(t["fast_s"])
        lines.append(
            f"| `{t['fast']}` | {t['dtype']} | {full_s:.3f} | {fast_s:.3f} | {full_s / fast_s:.2f}× | "
            f"{len(t['full_s'])} |"
        )
    lines += [
        "",
        "Seconds change from run to run; every PSNR and SSIM above is reproduced exactly by the command.",
        "",
    ]
    return "\n".join(lines)
