"""``rednet report any``: what the all-corruption model costs against each task's own model.

The all-corruption model (``ModelEntry.task == zoo.ANY_TASK``, shipped as ``restore-any``) is one RED30
trained on the damage of every task, alone and mixed (noise then JPEG, blur then JPEG, blur then noise). Each
table of this report scores it and the model that ``rednet restore --task T`` picks for that task (for blind
inpainting the damage model and the mask-aware model that fills what it finds) on the same seeded inputs of
one of T's test sets (protocol.md), so that

    cost = the task's own model's PSNR - the all-corruption model's PSNR (dB), per column.

Each table also scores the input as it is (method "identity": the damaged image, for SR its bicubic
enlargement), so that the all-corruption model's gain over doing nothing shows where it helps and where
it makes the image worse.

The all-corruption model gets each task's pre-restore step (SR's bicubic enlargement), as
``rednet restore --task sr --scale 2 --model restore-any`` does; a gray or Y image is given to it as three
equal channels and its output averaged back (``rednet.infer.restore``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rednet.tasks import task_named

__all__ = ["ANY_TABLES", "COST_LIMIT_DB", "AnyReport", "AnyTable", "render_any_report", "run_any_report"]

COST_LIMIT_DB = 0.5
"""The cost on every column (dB) under which the all-corruption model may be ``rednet restore``'s default
when no ``--task`` is given (the paper's-claims issue); above it, it ships under its own name."""


@dataclass(frozen=True)
class AnyTable:
    """One table of the report: a task on one test set.

    Attributes:
        task: the task.
        dataset: its test set (``rednet.data.BENCHMARKS``).
        settings: the columns: the task's level ("25": sigma on the 0-255 scale, "3": scale, "10": JPEG
            quality), deblur "KERNEL:SIGMA" ("gaussian:2.55"), inpaint "text" or a pixel-loss rate.
        channel: the channel restored and scored ("auto" = the protocol's for the task and set).
    """

    task: str
    dataset: str
    settings: tuple[str, ...]
    channel: str = "auto"

    def levels(self, setting: str) -> dict[str, Any]:
        """The EvalConfig fields of one column."""
        from rednet.report_classic import setting_levels

        task = task_named(self.task)
        if task.uses_kernel or task.masks:
            return setting_levels(self.task, setting)
        return {task.level: int(setting) if task.integer_levels else float(setting)}


ANY_TABLES: tuple[AnyTable, ...] = (
    AnyTable("denoise", "CBSD68", ("15", "25", "50")),
    AnyTable("denoise", "BSD68", ("15", "25", "50")),
    AnyTable("sr", "Set5", ("2", "3", "4")),
    AnyTable("sr", "Set14", ("2", "3", "4")),
    AnyTable("jpeg", "LIVE1", ("10", "20"), channel="rgb"),
    AnyTable("jpeg", "LIVE1", ("10", "20")),
    AnyTable("deblur", "Set14", ("gaussian:0", "gaussian:2.55", "gaussian-0.8:2.55", "gaussian-2.4:2.55")),
    AnyTable("inpaint", "Set14", ("text",)),
)
"""Each task's tables: its colour test set where it has one (the all-corruption model is RGB), and the gray
or Y table of the literature beside it (denoising's BSD68, JPEG's LIVE1 on Y; SR has only Y tables)."""


@dataclass(frozen=True)
class AnyReport:
    """What ``rednet report any`` measures.

    Attributes:
        model: the all-corruption model's shipped name; None = the shipped ``zoo.ANY_TASK`` model.
        tasks: the tasks whose tables run (() = all of ``ANY_TABLES``).
        limit: only the first ``limit`` images of each set (None = all).
        bf16: score every model with bfloat16 autocast (what ``rednet restore`` runs on a CPU with native
            bf16); False = fp32.
        data_root: where the sets live (see ``rednet.data.data_root``).
    """

    model: str | None = None
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    bf16: bool = False
    data_root: str | None = None

    def __post_init__(self) -> None:
        for task in self.tasks:
            task_named(task)

    @property
    def tables(self) -> list[AnyTable]:
        return [t for t in ANY_TABLES if not self.tasks or t.task in self.tasks]

    def any_model(self) -> str:
        from rednet.zoo import any_damage_models

        found = any_damage_models()
        if self.model is not None:
            if self.model not in found:
                raise ValueError(f"{self.model!r} is not a shipped all-corruption model (rednet models)")
            return self.model
        if not found:
            raise ValueError("no all-corruption model is shipped; nothing to compare")
        return found[0]


def scored_channel(table: AnyTable) -> str:
    """The channel a table restores and scores: "rgb", "y" or "gray"."""
    from rednet.data import BENCHMARKS

    if table.channel != "auto":
        return table.channel
    return task_named(table.task).channel(BENCHMARKS[table.dataset].color)


def own_choice(table: AnyTable):
    """What ``rednet restore --task T`` picks for this table's images (``rednet.pipeline.Choice``)."""
    from rednet.pipeline import choose_models

    return choose_models(task_named(table.task), 3 if scored_channel(table) == "rgb" else 1)


ROLES = ("input", "own", "any")
"""The rows of each table: the input as it is, the task's own model, the all-corruption model."""


def _cells(report: AnyReport, every: str) -> list[tuple[Any, str]]:
    """(EvalConfig, role) of every cell, table by table, column by column, in the order of ``ROLES``;
    ``every`` is the all-corruption model."""
    from rednet.evaluate import EvalConfig

    cells = []
    for table in report.tables:
        own = own_choice(table)
        for setting in table.settings:
            rows = (("input", None, None), ("own", own.model, own.detector), ("any", every, None))
            for role, model, detector in rows:
                config = EvalConfig(
                    task=table.task,
                    dataset=table.dataset,
                    method="identity" if model is None else "rednet",
                    model=model,
                    detector=detector,
                    channel=table.channel,
                    data_root=report.data_root,
                    limit=report.limit,
                    bf16=report.bf16,
                    **table.levels(setting),
                )
                cells.append((config, role))
    return cells


def run_any_report(report: AnyReport, *, jobs: int = 1, progress: bool = False) -> dict[str, Any]:
    """Score the all-corruption model and each task's own model on every table of ``report``.

    Returns:
        ``{"model": the all-corruption model, "cells": [record, ...]}``: a record per cell, as
        :func:`rednet.report.measure_cell` gives it (dataset, model, detector, psnr, ssim, images, ...)
        with the cell's ``task``, ``setting`` and ``role`` (one of ``ROLES``) added, in table order.
    """
    from rednet.report import run_cells

    every = report.any_model()
    cells = _cells(report, every)
    records = run_cells(cells, jobs, progress)
    columns = [(t.task, s) for t in report.tables for s in t.settings for _ in ROLES]
    for record, (task, setting), (_, role) in zip(records, columns, cells, strict=True):
        record.update(task=task, setting=setting, role=role)
    return {"model": every, "cells": records}


def _label(task_name: str, setting: str) -> str:
    from rednet.report_classic import _setting_label

    task = task_named(task_name)
    if task.uses_kernel or task.masks:
        return _setting_label(task_name, setting)
    if task.enlarges:
        return f"×{setting}"
    return {"sigma": "σ", "quality": "q"}.get(task.level, task.level) + f" = {setting}"


def _who(record: dict[str, Any]) -> str:
    if record["role"] == "input":
        return "input (bicubic)" if task_named(record["task"]).enlarges else "input"
    detector = record.get("detector")
    return f"`{detector}` + `{record['model']}`" if detector else f"`{record['model']}`"


def _harm_line(every: str, least: dict[str, tuple[float, str]]) -> str:
    """The sentence that says on which tasks the all-corruption model leaves an image worse than it was."""
    harmed = [f"{task} ({where}: {gain:+.2f} dB)" for task, (gain, where) in least.items() if gain < 0]
    if not harmed:
        return f"`{every}` improves on the input in every column."
    return f"`{every}` leaves the image worse than the input on: " + "; ".join(harmed) + "."


def render_any_report(result: dict[str, Any], report: AnyReport, header: str) -> str:
    """The markdown of ``rednet report any`` (a section of ``docs/results.md``)."""
    from rednet.report import model_lines

    every, records = result["model"], result["cells"]
    by_cell = {(r["task"], r["dataset"], r["channel"], r["setting"], r["role"]): r for r in records}
    lines = [header, "", "## One model for every corruption against each task's own model", ""]
    lines += model_lines(
        sorted(
            {r["model"] for r in records if r["model"]}
            | {r["detector"] for r in records if r.get("detector")}
        )
    )
    lines += [
        "",
        f"`{every}` is one RED30 trained on every task's damage, alone and mixed (its card). Cells are mean "
        f"PSNR (dB) / SSIM over the set, {'bf16' if report.bf16 else 'fp32'}, 8-bit outputs, the same "
        "seeded inputs for both models (protocol.md). The task's own model is what `rednet restore --task T` "
        f"picks; `{every}` is given the same pre-restore step (SR's bicubic enlargement) and, on a Y or "
        "gray table, the image as three equal channels. The input row scores the damaged image as it is (SR: "
        "its bicubic enlargement). cost = own − all-corruption PSNR (dB); gain = all-corruption − input PSNR "
        "(dB), negative where the model makes the image worse.",
    ]
    worst: dict[str, tuple[float, str]] = {}  # task -> (its largest cost, where)
    least: dict[str, tuple[float, str]] = {}  # task -> (the all-corruption model's least gain, where)
    for table in report.tables:

        def cell(setting: str, role: str, table: AnyTable = table) -> dict[str, Any]:
            return by_cell[(table.task, table.dataset, table.channel, setting, role)]

        labels = [_label(table.task, s) for s in table.settings]
        channel = {"rgb": "RGB", "y": "Y", "gray": "gray"}[scored_channel(table)]
        images = cell(table.settings[0], "own")["images"]
        lines += [
            "",
            f"### {table.task}: {table.dataset} ({images} images, {channel})",
            "",
            "| model | " + " | ".join(labels) + " |",
            "|---" * (len(labels) + 1) + "|",
        ]
        for role in ROLES:
            row = [cell(s, role) for s in table.settings]
            cells = " | ".join(f"{r['psnr']:.2f} / {r['ssim']:.4f}" for r in row)
            lines.append(f"| {'own: ' if role == 'own' else ''}{_who(row[0])} | {cells} |")
        costs = [cell(s, "own")["psnr"] - cell(s, "any")["psnr"] for s in table.settings]
        gains = [cell(s, "any")["psnr"] - cell(s, "input")["psnr"] for s in table.settings]
        lines.append("| cost (dB) | " + " | ".join(f"{c:+.2f}" for c in costs) + " |")
        lines.append("| gain over the input (dB) | " + " | ".join(f"{g:+.2f}" for g in gains) + " |")
        for cost, gain, label in zip(costs, gains, labels, strict=True):
            where = f"{table.dataset} ({channel}), {label}"
            if table.task not in worst or cost > worst[table.task][0]:
                worst[table.task] = (cost, where)
            if table.task not in least or gain < least[table.task][0]:
                least[table.task] = (gain, where)
    lines += [
        "",
        "### The cost per task (the largest over its columns), and the least gain over the input",
        "",
        "| task | cost (dB) | where | least gain (dB) | where |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {task} | {cost:+.2f} | {where} | {least[task][0]:+.2f} | {least[task][1]} |"
        for task, (cost, where) in worst.items()
    ]
    within = all(cost <= COST_LIMIT_DB for cost, _ in worst.values())
    lines += [
        "",
        f"Every task within {COST_LIMIT_DB} dB: **{'yes' if within else 'no'}**"
        + (
            f" — `{every}` may be `rednet restore`'s default when no `--task` is given."
            if within
            else f" — `{every}` ships under its own name (`rednet restore --model {every}`, with or without "
            "`--task`); each task keeps its own model as the default."
        ),
        "",
        _harm_line(every, least),
        "",
        "Every PSNR and SSIM above is reproduced exactly by the command.",
        "",
    ]
    return "\n".join(lines)
