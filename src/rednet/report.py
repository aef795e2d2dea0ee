"""The result tables of ``docs/results.md`` (``rednet report``), which are generated, never typed: the
machinery that measures cells and writes sections, and the denoising, SR and JPEG sections. Deblurring and
inpainting are in :mod:`rednet.report_classic`; training curves in :mod:`rednet.plots`; tables of runs and of
a bench result in :mod:`rednet.run_tables`."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rednet.io import replace_atomically
from rednet.tasks import task_named

log = logging.getLogger(__name__)

__all__ = [
    "DenoiseReport",
    "TaskReport",
    "render_denoise_report",
    "render_task_report",
    "run_denoise_report",
    "run_task_report",
    "section_commands",
    "write_section",
]


# Published PSNR (dB) at sigma = 15 / 25 / 50, from protocol.md section 3 (the sources' own tables).
PUBLISHED_DENOISE: dict[str, dict[str, tuple[float, float, float]]] = {
    "Set12": {
        "BM3D": (32.37, 29.97, 26.72),
        "DnCNN-S": (32.86, 30.44, 27.18),
        "FFDNet": (32.75, 30.43, 27.32),
        "DRUNet": (33.25, 30.94, 27.90),
    },
    "BSD68": {
        "BM3D": (31.07, 28.57, 25.62),
        "DnCNN-S": (31.73, 29.23, 26.23),
        "FFDNet": (31.63, 29.19, 26.29),
        "DRUNet": (31.91, 29.48, 26.59),
    },
    "CBSD68": {
        "CBM3D": (33.52, 30.71, 27.38),
        "CDnCNN": (33.89, 31.23, 27.92),
        "FFDNet": (33.87, 31.21, 27.96),
        "DRUNet": (34.30, 31.69, 28.51),
    },
}
PUBLISHED_SIGMAS = (15, 25, 50)

# RED30 minus BM3D in the paper (paper.md section 4.2, derived from its Tables 1 and 2), by sigma.
PAPER_RED30_GAIN: dict[str, dict[int, float]] = {
    "14 images": {10: 0.63, 30: 0.68, 50: 0.73, 70: 0.66},
    "BSD200": {10: 0.62, 30: 0.64, 50: 0.69, 70: 0.55},
}

DENOISE_METHODS = ("noisy", "bm3d", "rednet", "rednet+ensemble")


@dataclass(frozen=True)
class DenoiseReport:
    """What ``rednet report denoise`` measures.

    Attributes:
        datasets: benchmark names; gray sets use ``denoise-gray``, colour sets ``denoise-color`` (BM3D runs
            in its colour mode, CBM3D, on colour sets).
        sigmas: noise levels on the 0-255 scale.
        methods: a subset of ``noisy``, ``bm3d``, ``rednet``, ``rednet+ensemble``.
        limit: only the first ``limit`` images of each set (None = all).
        ensemble_datasets: the sets that get the 8x slower ``rednet+ensemble`` (None = all of them).
        bf16: run the models with bfloat16 autocast (default fp32).
        data_root: where the sets live (see ``rednet.data.data_root``).
    """

    datasets: tuple[str, ...] = ("Set12", "BSD68", "CBSD68")
    sigmas: tuple[int, ...] = (10, 15, 25, 30, 50, 70)
    methods: tuple[str, ...] = DENOISE_METHODS
    limit: int | None = None
    ensemble_datasets: tuple[str, ...] | None = None
    bf16: bool = False
    data_root: str | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in DENOISE_METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(DENOISE_METHODS)}")


def measure_cell(config: Any, method: str, threads: int | None = None) -> dict[str, Any]:
    """One cell of a report: ``evaluate(config)`` reduced to its means (runs in a worker process too)."""
    from rednet.evaluate import evaluate

    if threads:
        import torch

        torch.set_num_threads(threads)
    result = evaluate(config)
    task = task_named(config.task)
    level = getattr(config, task.level) if task.integer_levels else config.sigma  # SR scale, JPEG quality
    return {
        "dataset": config.dataset,
        "channel": config.channel,
        "sigma": config.sigma,
        "level": level,
        "method": method,
        "model": config.model,
        **({"detector": config.detector} if getattr(config, "detector", None) else {}),
        **{k: v for k, v in result["mean"].items() if k in ("psnr", "ssim", "seconds", "psnr_shave0")},
        "images": result["protocol"]["images"],
    }


def run_cells(cells: list[tuple[Any, str]], jobs: int, progress: bool) -> list[dict[str, Any]]:
    """Measure ``(EvalConfig, method label)`` cells in order, in this process or in ``jobs`` processes."""
    from tqdm import tqdm

    bar = tqdm(total=len(cells), desc="report", unit="cell", disable=not progress)
    if jobs <= 1:
        records = []
        for config, method in cells:
            records.append(measure_cell(config, method))
            bar.update()
        bar.close()
        return records
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # no fork after torch's thread pools have started
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(measure_cell, config, method, threads) for config, method in cells]
        for future in futures:
            future.add_done_callback(lambda _: bar.update())
        records = [f.result() for f in futures]
    bar.close()
    return records


def run_denoise_report(
    report: DenoiseReport, *, jobs: int = 1, progress: bool = False
) -> list[dict[str, Any]]:
    """Evaluate every (dataset, sigma, method) of ``report`` on the same seeded noisy inputs.

    Args:
        report: what to measure.
        jobs: cells measured at once, each in its own process with ``cpu_count // jobs`` threads (BM3D uses
            one core, so 2 jobs keep a 2-core machine busy); 1 = in this process.
        progress: a progress bar over the cells.

    Returns:
        One record per cell, in the order of ``report``: dataset, sigma, method, model (or None), psnr, ssim,
        seconds (per image, the method alone), images.
    """
    from rednet.data import resolve_dataset
    from rednet.evaluate import EvalConfig
    from rednet.zoo import WEIGHTS

    cells = []
    for dataset in report.datasets:
        color = resolve_dataset(dataset, report.data_root)[1]
        channels = 3 if color else 1
        # The model for the set's channels only: a gray model on a colour set would leave the chroma noise.
        # (A task-name test: this report is the denoising one, and picks among the shipped denoisers.)
        model_name = next(
            (n for n, e in WEIGHTS.items() if e.task == "denoise" and e.channels == channels and not e.fast),
            None,
        )
        for method in report.methods:
            if method.startswith("rednet") and model_name is None:
                log.warning("%s: no shipped %d-channel denoiser; skipping %s", dataset, channels, method)
                continue
            if method == "rednet+ensemble" and dataset not in (report.ensemble_datasets or (dataset,)):
                continue
            name = {"noisy": "identity", "rednet+ensemble": "rednet"}.get(method, method)
            for sigma in report.sigmas:
                config = EvalConfig(
                    task="denoise",
                    dataset=dataset,
                    method=name,
                    sigma=sigma,
                    data_root=report.data_root,
                    limit=report.limit,
                    model=model_name if name == "rednet" else None,
                    ensemble=method == "rednet+ensemble",
                    bf16=report.bf16 and name == "rednet",
                )
                cells.append((config, method))
    return run_cells(cells, jobs, progress)


def render_denoise_report(records: list[dict[str, Any]], report: DenoiseReport, header: str) -> str:
    """The markdown tables of a denoising report (``docs/results.md``)."""
    from rednet.zoo import WEIGHTS, card_summary, read_card

    cell = {(r["dataset"], r["sigma"], r["method"]): r for r in records}
    skipped_ensemble: list[str] = []
    sig = report.sigmas
    lines = [header, "", "## Denoising: additive white Gaussian noise, blind models", ""]
    for name in sorted({r["model"] for r in records if r["model"] in WEIGHTS}):
        lines.append(f"- `{name}` (`src/rednet/weights/{name}.json`): {card_summary(read_card(name))}.")
    lines += [
        "",
        "Cells are mean PSNR (dB) / SSIM over the set, 8-bit outputs, same seeded noisy inputs for every "
        "method (protocol.md). BM3D is the `bm3d` package run by this command (CBM3D on colour sets). "
        "Published rows are PSNR from protocol.md §3 (other papers' own runs, other noise draws).",
    ]
    for dataset in report.datasets:
        present = [m for m in report.methods if (dataset, sig[0], m) in cell]
        if "rednet+ensemble" in report.methods and "rednet+ensemble" not in present and "rednet" in present:
            skipped_ensemble.append(dataset)
        if not present:
            continue
        n = cell[(dataset, sig[0], present[0])]["images"]
        lines += ["", f"### {dataset} ({n} images)", ""]
        lines.append("| method | " + " | ".join(f"σ = {s}" for s in sig) + " |")
        lines.append("|---|" + "---|" * len(sig))
        for method in present:
            label = {"noisy": "noisy input", "bm3d": "BM3D (this run)"}.get(method, method)
            if method.startswith("rednet"):
                label = f"{method} (`{cell[(dataset, sig[0], method)]['model']}`)"
            row = [
                f"{cell[(dataset, s, method)]['psnr']:.2f} / {cell[(dataset, s, method)]['ssim']:.4f}"
                for s in sig
            ]
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        if "bm3d" in present:
            for method in [m for m in present if m.startswith("rednet")]:
                gains = [cell[(dataset, s, method)]["psnr"] - cell[(dataset, s, "bm3d")]["psnr"] for s in sig]
                lines.append(f"| {method} − BM3D (dB) | " + " | ".join(f"{g:+.2f}" for g in gains) + " |")
        if {"rednet", "rednet+ensemble"} <= set(present):
            gains = [
                cell[(dataset, s, "rednet+ensemble")]["psnr"] - cell[(dataset, s, "rednet")]["psnr"]
                for s in sig
            ]
            lines.append("| self-ensemble gain (dB) | " + " | ".join(f"{g:+.2f}" for g in gains) + " |")
        for label, gains in PAPER_RED30_GAIN.items():
            cells = [f"{gains[s]:+.2f}" if s in gains else "" for s in sig]
            if any(cells):
                lines.append(f"| paper (gray): RED30 − BM3D, {label} (dB) | " + " | ".join(cells) + " |")
        for method, values in PUBLISHED_DENOISE.get(dataset, {}).items():
            by_sigma = dict(zip(PUBLISHED_SIGMAS, values, strict=True))
            cells = [f"{by_sigma[s]:.2f}" if s in by_sigma else "" for s in sig]
            if any(cells):
                lines.append(f"| published: {method} | " + " | ".join(cells) + " |")
    if skipped_ensemble:
        lines += ["", f"Self-ensemble (8x the time) was not run on {', '.join(skipped_ensemble)}."]
    lines += [
        "",
        "### Seconds per image on the machine named above (the method alone, mean over all σ)",
        "",
        "| method | " + " | ".join(d for d in report.datasets) + " |",
        "|---|" + "---|" * len(report.datasets),
    ]
    for method in [m for m in report.methods if m != "noisy"]:
        row = []
        for dataset in report.datasets:
            times = [cell[(dataset, s, method)]["seconds"] for s in sig if (dataset, s, method) in cell]
            row.append(f"{sum(times) / len(times):.2f}" if times else "")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Seconds change from run to run; every PSNR and SSIM above is reproduced exactly by the command.",
        "",
    ]
    return "\n".join(lines)


# Published PSNR (dB, Y) at x2 / x3 / x4, from protocol.md section 3.
PUBLISHED_SR: dict[str, dict[str, tuple[float, float, float]]] = {
    "Set5": {
        "SRCNN": (36.66, 32.75, 30.48),
        "VDSR": (37.53, 33.66, 31.35),
        "RED30 (paper, shave unstated)": (37.66, 33.82, 31.51),
    },
    "Set14": {
        "SRCNN": (32.42, 29.28, 27.49),
        "VDSR": (33.03, 29.77, 28.01),
        "RED30 (paper, shave unstated)": (32.94, 29.61, 27.86),
    },
    "B100": {
        "SRCNN": (31.36, 28.41, 26.90),
        "VDSR": (31.90, 28.82, 27.29),
        "RED30 (paper, shave unstated)": (31.99, 28.93, 27.40),
    },
}
PUBLISHED_SCALES = (2, 3, 4)

# Published PSNR (dB) on LIVE1 Y at q = 10 / 20 / 30 / 40, from protocol.md section 3 (None: not published).
PUBLISHED_JPEG: dict[str, dict[str, tuple[float | None, ...]]] = {
    "LIVE1": {
        "ARCNN": (28.96, 31.29, 32.67, 33.63),
        "DnCNN-3": (29.19, 31.59, 32.98, 33.96),
        "RED30 (paper, long version)": (29.35, 31.73, None, None),
    },
}
PUBLISHED_QUALITIES = (10, 20, 30, 40)

# The published method each task's model is measured against (the acceptance bar).
BASELINE = {"sr": "SRCNN", "jpeg": "ARCNN"}

TASK_METHODS = ("input", "rednet", "rednet+ensemble")


@dataclass(frozen=True)
class TaskReport:
    """What ``rednet report sr`` and ``rednet report jpeg`` measure.

    Attributes:
        task: "sr" (levels = scales) or "jpeg" (levels = qualities).
        datasets: sets scored as the protocol says (Y of colour sets, gray sets as they are), with the
            task's 1-channel model (``sr``, ``jpeg``).
        color_datasets: sets scored on RGB with the task's 3-channel model (``jpeg-color``; the colour JPEG
            is Pillow's default 4:2:0).
        levels: SR scales or JPEG qualities.
        methods: a subset of ``input`` (the bicubic up-sampling / the decoded JPEG), ``rednet``,
            ``rednet+ensemble``.
        limit: only the first ``limit`` images of each set (None = all).
        ensemble_datasets: the sets that get the 8x slower ``rednet+ensemble`` (None = all of them).
        bf16: run the models with bfloat16 autocast (default fp32).
        data_root: where the sets live (see ``rednet.data.data_root``).
    """

    task: str
    datasets: tuple[str, ...]
    levels: tuple[int, ...]
    color_datasets: tuple[str, ...] = ()
    methods: tuple[str, ...] = TASK_METHODS
    limit: int | None = None
    ensemble_datasets: tuple[str, ...] | None = None
    bf16: bool = False
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.task not in BASELINE:
            raise ValueError(f"task must be sr or jpeg, got {self.task!r}")
        unknown = [m for m in self.methods if m not in TASK_METHODS]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {', '.join(TASK_METHODS)}")

    @property
    def tables(self) -> list[tuple[str, str]]:
        """(dataset, channel) of each table: "auto" (the protocol's Y/gray) or "rgb"."""
        return [(d, "auto") for d in self.datasets] + [(d, "rgb") for d in self.color_datasets]


def run_task_report(report: TaskReport, *, jobs: int = 1, progress: bool = False) -> list[dict[str, Any]]:
    """Evaluate every (table, method, level) of an SR or JPEG report; see :func:`run_denoise_report`.

    Returns:
        One record per cell: dataset, channel, level, method, model (or None), psnr, ssim, seconds (per
        image), images, and for SR ``psnr_shave0`` (no border shaved, as the paper's code scores).
    """
    from rednet.evaluate import EvalConfig
    from rednet.zoo import WEIGHTS

    cells = []
    for dataset, channel in report.tables:
        channels = 3 if channel == "rgb" else 1
        fits = [n for n, e in WEIGHTS.items() if e.task == report.task and e.channels == channels]
        model_name = next((n for n in fits if not WEIGHTS[n].fast), None)
        for method in report.methods:
            if method.startswith("rednet") and model_name is None:
                log.warning("%s: no %d-channel %s model; skipping %s", dataset, channels, report.task, method)
                continue
            if method == "rednet+ensemble" and dataset not in (report.ensemble_datasets or (dataset,)):
                continue
            name = "rednet" if method.startswith("rednet") else "identity"
            for level in report.levels:
                config = EvalConfig(
                    task=report.task,
                    dataset=dataset,
                    method=name,
                    channel=channel,
                    data_root=report.data_root,
                    limit=report.limit,
                    model=model_name if name == "rednet" else None,
                    ensemble=method == "rednet+ensemble",
                    bf16=report.bf16 and name == "rednet",
                    **{task_named(report.task).level: level},
                )
                cells.append((config, method))
    return run_cells(cells, jobs, progress)


def _task_table(
    report: TaskReport, cell: dict[tuple, dict[str, Any]], dataset: str, channel: str, present: list[str]
) -> list[str]:
    """The lines of one table of :func:`render_task_report`: one dataset, Y/gray or RGB."""
    sr = task_named(report.task).enlarges
    levels = report.levels
    input_label = "bicubic" if sr else "JPEG input"
    published = PUBLISHED_SR if sr else PUBLISHED_JPEG
    published_levels = PUBLISHED_SCALES if sr else PUBLISHED_QUALITIES
    baseline = BASELINE[report.task]
    lines = []
    n = cell[(dataset, channel, levels[0], present[0])]["images"]
    kind = "RGB, colour JPEG 4:2:0" if channel == "rgb" else ("Y" if sr else "Y / gray")
    lines += ["", f"### {dataset} ({n} images, {kind})", ""]
    lines.append("| method | " + " | ".join(f"×{v}" if sr else f"q = {v}" for v in levels) + " |")
    lines.append("|---|" + "---|" * len(levels))

    def value(method: str, level: int, key: str = "psnr") -> float:
        return cell[(dataset, channel, level, method)][key]

    def label(method: str) -> str:
        if method == "input":
            return input_label
        return f"{method} (`{cell[(dataset, channel, levels[0], method)]['model']}`)"

    for method in present:
        row = [f"{value(method, v):.2f} / {value(method, v, 'ssim'):.4f}" for v in levels]
        lines.append(f"| {label(method)} | " + " | ".join(row) + " |")
    for method in present:
        if "psnr_shave0" in cell[(dataset, channel, levels[0], method)]:
            row = [f"{value(method, v, 'psnr_shave0'):.2f}" for v in levels]
            lines.append(f"| {label(method)}, shave 0 (PSNR) | " + " | ".join(row) + " |")
    rows_published = published.get(dataset, {}) if channel == "auto" else {}
    for method in [m for m in present if m != "input"]:
        if "input" in present:
            gains = [value(method, v) - value("input", v) for v in levels]
            lines.append(
                f"| {method} − {input_label} (dB) | " + " | ".join(f"{g:+.2f}" for g in gains) + " |"
            )
        if baseline in rows_published:
            by_level = dict(zip(published_levels, rows_published[baseline], strict=True))
            gains = [
                f"{value(method, v) - by_level[v]:+.2f}" if by_level.get(v) is not None else ""
                for v in levels
            ]
            lines.append(f"| {method} − {baseline} (published) (dB) | " + " | ".join(gains) + " |")
    if {"rednet", "rednet+ensemble"} <= set(present):
        gains = [value("rednet+ensemble", v) - value("rednet", v) for v in levels]
        lines.append("| self-ensemble gain (dB) | " + " | ".join(f"{g:+.2f}" for g in gains) + " |")
    for method, values in rows_published.items():
        by_level = dict(zip(published_levels, values, strict=True))
        cells = [f"{by_level[v]:.2f}" if by_level.get(v) is not None else "" for v in levels]
        if any(cells):
            lines.append(f"| published: {method} | " + " | ".join(cells) + " |")
    return lines


def _table_name(dataset: str, channel: str, sr: bool) -> str:
    return f"{dataset} ({'RGB' if channel == 'rgb' else 'Y' if sr else 'Y/gray'})"


def render_task_report(records: list[dict[str, Any]], report: TaskReport, header: str) -> str:
    """The markdown tables of an SR or JPEG report (a section of ``docs/results.md``)."""
    sr = task_named(report.task).enlarges
    cell = {(r["dataset"], r["channel"], r["level"], r["method"]): r for r in records}
    levels = report.levels
    title = (
        "## Super-resolution: one model for ×2, ×3 and ×4 (Y channel)"
        if sr
        else "## JPEG deblocking: one blind model for all qualities"
    )
    lines = [header, "", title, "", *model_lines(r["model"] for r in records)]
    if sr:
        note = (
            "Cells are mean PSNR (dB) / SSIM on Y (BT.601; a gray image is its own Y), `shave` = scale "
            "pixels off each border; the HR image is cropped to a multiple of the scale, the LR image is the "
            "MATLAB-compatible bicubic down-sampling rounded to 8 bits, and the network's input is its "
            "bicubic up-sampling (the `bicubic` row). The `shave 0` rows score the whole image, as the "
            "paper's code does. Published rows are from protocol.md §3."
        )
    else:
        note = (
            "Cells are mean PSNR (dB) / SSIM, 8-bit outputs. Y / gray tables: the Y (colour sets) or gray "
            "image is JPEG-coded by Pillow at quality q; RGB tables: the colour image is JPEG-coded with "
            "Pillow's default 4:2:0 chroma subsampling, as most JPEGs are, and scored on RGB. Published rows "
            "(LIVE1 Y) are from protocol.md §3."
        )
    if report.bf16:
        note += " The models ran in bfloat16 (`--bf16`), as `rednet restore` does on a CPU that has it."
    lines += ["", note]
    ensemble_skipped = []
    for dataset, channel in report.tables:
        present = [m for m in report.methods if (dataset, channel, levels[0], m) in cell]
        if not present:
            continue
        if "rednet+ensemble" in report.methods and "rednet+ensemble" not in present and "rednet" in present:
            ensemble_skipped.append(_table_name(dataset, channel, sr))
        lines += _task_table(report, cell, dataset, channel, present)
    if ensemble_skipped:
        lines += ["", f"Self-ensemble (8x the time) was not run on {', '.join(ensemble_skipped)}."]
    tables = [(d, c) for d, c in report.tables if any((d, c, levels[0], m) in cell for m in report.methods)]
    names = [_table_name(d, c, sr) for d, c in tables]

    def seconds(method: str, i: int) -> list[float]:
        dataset, channel = tables[i]
        return [cell[k]["seconds"] for v in levels if (k := (dataset, channel, v, method)) in cell]

    lines += seconds_lines(names, [m for m in report.methods if m != "input"], seconds, "all levels")
    return "\n".join(lines)


def model_lines(names) -> list[str]:
    """One bullet per shipped model among ``names`` (sorted, once each): its card's summary."""
    from rednet.zoo import WEIGHTS, card_summary, read_card

    shipped = sorted({n for n in names if n in WEIGHTS})
    return [f"- `{n}` (`src/rednet/weights/{n}.json`): {card_summary(read_card(n))}." for n in shipped]


def seconds_lines(names: list[str], methods: list[str], seconds, over: str) -> list[str]:
    """The seconds-per-image table closing a report: ``seconds(method, i)`` lists the seconds per image of
    the cells of table ``names[i]``; a method with no cell at all gets no row."""
    lines = [
        "",
        f"Seconds per image on the machine named above (the method alone, mean over {over}):",
        "",
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for method in methods:
        times = [seconds(method, i) for i in range(len(names))]
        if any(times):
            lines.append(
                f"| {method} | " + " | ".join(f"{sum(t) / len(t):.2f}" if t else "" for t in times) + " |"
            )
    lines += [
        "",
        "Seconds change from run to run; every PSNR and SSIM above is reproduced exactly by the command.",
        "",
    ]
    return lines


RESULTS_TITLE = (
    "# Results\n\nEach section below is written by the command named in its first line; "
    "`rednet report regenerate` reruns them all, each in place.\n"
)


def write_section(path: str | Path, name: str, text: str) -> Path:
    """Put ``text`` into ``path`` as the section of report ``name``, leaving the other reports' sections.

    Each section sits between ``<!-- begin: rednet report NAME -->`` and ``<!-- end: ... -->`` lines; an
    existing section of that name is replaced in place, a new one is appended. The file is written
    atomically; a missing file starts with the title ``# Results``.
    """
    begin, end = f"<!-- begin: rednet report {name} -->", f"<!-- end: rednet report {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}\n"
    path = Path(path)
    old = path.read_text() if path.is_file() else RESULTS_TITLE
    if begin in old and end in old.split(begin, 1)[1]:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        new = head + block + (f"\n{tail}" if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    return write_text_atomic(path, new)


def section_commands(text: str) -> list[tuple[str, str]]:
    """(report name, the command that made it) of each section of a results file, in file order."""
    pattern = r"<!-- begin: rednet report ([\w-]+) -->\n(.*?)<!-- end: rednet report \1 -->"
    sections = re.findall(pattern, text, re.S)
    found = [(name, re.search(r"Generated by `(rednet report [^`]+)`", body)) for name, body in sections]
    return [(name, match.group(1)) for name, match in found if match]


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (folders made as needed) through a temporary file and a rename."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return replace_atomically(path, lambda tmp: tmp.write_text(text))
