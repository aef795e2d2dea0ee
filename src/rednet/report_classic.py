"""The deblurring and inpainting sections of ``docs/results.md`` (``rednet report deblur|inpaint``): rednet
beside classical methods run in the same command on the same inputs, their parameters tuned on training
images."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from rednet.report import model_lines, run_cells, seconds_lines
from rednet.tasks import task_named

log = logging.getLogger(__name__)

__all__ = [
    "ClassicReport",
    "render_classic_report",
    "run_classic_report",
    "setting_levels",
    "tune_deconvolution",
]


CLASSIC_METHODS = {
    "deblur": ("input", "wiener", "richardson-lucy", "rednet", "rednet-blind"),
    "inpaint": ("input", "telea", "biharmonic", "rednet", "rednet-detect", "rednet-mask"),
}
"""Each report's methods: ``rednet`` is the per-kernel (deblur) or blind (inpaint) model, ``rednet-blind``
the blind Gaussian deblurrer, ``rednet-mask`` the mask-aware inpainting model given the true mask,
``rednet-detect`` blind inpainting in two steps: the damage model finds the mask, the mask-aware model
fills it."""

WIENER_BALANCES = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
RL_ITERATIONS = (5, 10, 20, 30, 50, 100)


@dataclass(frozen=True)
class ClassicReport:
    """What ``rednet report deblur`` and ``rednet report inpaint`` measure (RGB, as protocol.md says).

    Attributes:
        task: "deblur" or "inpaint".
        datasets: test sets (Set14, CBSD68 in protocol.md).
        settings: the table's columns: deblur "KERNEL:SIGMA" (``gaussian:2.55``: the demo's Gaussian, then
            noise sigma 2.55 on the 0-255 scale; ``gaussian-2.4:2.55``: a Gaussian of sigma 2.4);
            inpaint "text" or a pixel-loss rate ("0.5").
        methods: a subset of :data:`CLASSIC_METHODS` for the task; a model that is not shipped is skipped.
        tune_images: deblur: Wiener's balance and Richardson-Lucy's iterations are chosen, for each
            column, as the best of a grid on the first this many BSDS500 training images (never a test
            image); the grid is part of the section.
        limit: only the first ``limit`` images of each set (None = all).
        bf16: run the models with bfloat16 autocast.
        data_root: where the sets live (see ``rednet.data.data_root``).
    """

    task: str
    datasets: tuple[str, ...]
    settings: tuple[str, ...]
    methods: tuple[str, ...] = ()
    tune_images: int = 4
    limit: int | None = None
    bf16: bool = False
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.task not in CLASSIC_METHODS:
            raise ValueError(f"task must be deblur or inpaint, got {self.task!r}")
        unknown = [m for m in self.methods if m not in CLASSIC_METHODS[self.task]]
        if unknown:
            choices = ", ".join(CLASSIC_METHODS[self.task])
            raise ValueError(f"unknown method {unknown[0]!r}; choose from {choices}")
        for setting in self.settings:
            self.levels(setting)

    def levels(self, setting: str) -> dict[str, Any]:
        """The EvalConfig fields of one column (validated)."""
        return setting_levels(self.task, setting)


def setting_levels(task: str, setting: str) -> dict[str, Any]:
    """The EvalConfig fields of one deblurring or inpainting column ("gaussian:2.55", "text", "0.5"),
    validated: {"kernel", "sigma"} or {"damage"}."""
    from rednet.evaluate import kernel_by_name, parse_damage

    if task_named(task).masks:
        parse_damage(setting)
        return {"damage": setting}
    kernel, _, sigma = setting.partition(":")
    try:
        value = float(sigma or 0)
        kernel_by_name(kernel)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValueError(
            f"deblur settings look like 'gaussian:2.55', 'disk:0' or 'gaussian-2.4:2.55', got {setting!r}"
        )
    return {"kernel": kernel, "sigma": value}


def _classic_model(task: str, method: str, setting: dict[str, Any]) -> str | None:
    """The shipped model a rednet method of a deblur/inpaint report uses for one column (None: none)."""
    from rednet.zoo import WEIGHTS, detect_and_fill

    if method == "rednet-detect":
        pair = detect_and_fill()
        return pair[1] if pair else None
    variant = {"rednet": setting.get("kernel", ""), "rednet-blind": "", "rednet-mask": "mask"}[method]
    found = (n for n, e in WEIGHTS.items() if e.task == task and e.variant == variant and not e.fast)
    return next(found, None)


def tune_deconvolution(
    report: ClassicReport, *, jobs: int = 1, progress: bool = False
) -> list[dict[str, Any]]:
    """Score Wiener's balances and Richardson-Lucy's iterations on training images, for each column.

    Returns:
        One record per (column, method, parameter): the cell's means plus ``setting``, ``parameter`` and
        ``tuning: True``.
    """
    from rednet.data import data_root
    from rednet.evaluate import EvalConfig

    folder = str(data_root(report.data_root) / "train" / "BSDS500" / "train")
    cells, params = [], []
    for setting in report.settings:
        for method, grid, field in (
            ("wiener", WIENER_BALANCES, "balance"),
            ("richardson-lucy", RL_ITERATIONS, "iterations"),
        ):
            if method not in report.methods:
                continue
            for value in grid:
                config = EvalConfig(
                    task="deblur",
                    dataset=folder,
                    method=method,
                    limit=report.tune_images,
                    **report.levels(setting),
                    **{field: value},
                )
                cells.append((config, method))
                params.append((setting, value))
    records = run_cells(cells, jobs, progress)
    for record, (setting, value) in zip(records, params, strict=True):
        record.update(dataset="BSDS500/train", setting=setting, parameter=value, tuning=True)
    return records


def run_classic_report(
    report: ClassicReport, *, jobs: int = 1, progress: bool = False
) -> list[dict[str, Any]]:
    """Evaluate every (dataset, column, method) of a deblurring or inpainting report.

    For deblurring the classical methods are first tuned (:func:`tune_deconvolution`), and run with the
    best parameter of each column. Returns the tuning records, then one record per cell (with ``setting``).
    """
    from rednet.evaluate import EvalConfig
    from rednet.zoo import detect_and_fill

    deblur = task_named(report.task).uses_kernel
    tuning = tune_deconvolution(report, jobs=jobs, progress=progress) if deblur else []
    best = _best_parameters(tuning)
    cells, settings, skipped = [], [], set()
    for dataset in report.datasets:
        for method in report.methods:
            for setting in report.settings:
                levels = report.levels(setting)
                model = _classic_model(report.task, method, levels) if method.startswith("rednet") else None
                if method.startswith("rednet") and model is None:
                    if (method, levels.get("kernel")) not in skipped:
                        log.warning(
                            "no shipped model for %s %s %s; skipping it", report.task, method, setting
                        )
                    skipped.add((method, levels.get("kernel")))
                    continue
                extra: dict[str, Any] = {}
                if method == "rednet-detect":
                    extra["detector"] = detect_and_fill()[0]  # type: ignore[index]
                if method == "wiener":
                    extra["balance"] = best.get((setting, method))
                if method == "richardson-lucy":
                    extra["iterations"] = best.get((setting, method))
                config = EvalConfig(
                    task=report.task,  # type: ignore[arg-type]
                    dataset=dataset,
                    method="rednet" if model else ("identity" if method == "input" else method),
                    data_root=report.data_root,
                    limit=report.limit,
                    model=model,
                    bf16=report.bf16 and model is not None,
                    **levels,
                    **extra,
                )
                cells.append((config, method))
                settings.append(setting)
    records = run_cells(cells, jobs, progress)
    for record, setting in zip(records, settings, strict=True):
        record["setting"] = setting
    return tuning + records


def _best_parameters(tuning: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(column, method) -> the parameter with the highest mean PSNR on the training images."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in tuning:
        key = (r["setting"], r["method"])
        if key not in best or r["psnr"] > best[key]["psnr"]:
            best[key] = r
    return {k: r["parameter"] for k, r in best.items()}


def _setting_label(task: str, setting: str) -> str:
    if task_named(task).masks:
        return "text" if setting == "text" else f"{float(setting):.0%} pixels lost"
    kernel, _, sigma = setting.partition(":")
    name = {"gaussian": "Gaussian σ 1.6", "disk": "disk r 7"}.get(
        kernel, kernel.replace("gaussian-", "Gaussian σ ")
    )
    return f"{name}, noise {float(sigma or 0):g}"


def render_classic_report(records: list[dict[str, Any]], report: ClassicReport, header: str) -> str:
    """The markdown tables of a deblurring or inpainting report (a section of ``docs/results.md``)."""
    deblur = task_named(report.task).uses_kernel
    tuning = [r for r in records if r.get("tuning")]
    cell = {(r["dataset"], r["setting"], r["method"]): r for r in records if not r.get("tuning")}
    best = _best_parameters(tuning)
    cols = report.settings
    if not deblur:
        title = "## Inpainting: text (blind) and lost pixels (mask given)"
    elif any(c.startswith("gaussian-") for c in cols):
        title = "## Deblurring across Gaussian blurs: what the blind model can and cannot undo"
    else:
        title = "## Deblurring: the official demo's kernels, known to the classical methods"
    shown = [n for r in cell.values() for n in (r["model"], r.get("detector"))]
    lines = [header, "", title, "", *model_lines(shown)]
    if deblur:
        note = (
            "Cells are mean PSNR (dB) / SSIM on RGB, 8-bit outputs, the same seeded inputs for every "
            "method (protocol.md): blur by true convolution with replicate borders, then Gaussian noise. "
            "Wiener (`skimage.restoration.wiener`) and Richardson–Lucy "
            "(`skimage.restoration.richardson_lucy`) are given the true kernel, with the parameter that "
            "scored best on the training images (tuning below). `rednet` is the model trained for the "
            "column's kernel; `rednet-blind` the one blind model for Gaussian blurs of σ 0.5–3 (the disk "
            "columns are outside its family)."
        )
    else:
        note = (
            "Cells are mean PSNR (dB) / SSIM on RGB over the whole image, 8-bit outputs, the same seeded "
            "inputs for every method (protocol.md): white/black text 12–40 px, or each pixel lost "
            "(set to 0) with the given probability. Telea (`cv2.inpaint`) and biharmonic "
            "(`skimage.restoration.inpaint_biharmonic`) are given the true mask; `rednet` (the blind "
            "`inpaint`) sees only the damaged image; `rednet-detect` sees only the damaged image too: "
            "the damage model `inpaint-detect` finds the mask, `inpaint-mask` fills it (what `rednet "
            "restore --task inpaint` does without `--mask`); `rednet-mask` (`inpaint-mask`) is given the "
            "true mask as a 4th channel."
        )
    if report.bf16:
        note += " The models ran in bfloat16 (`--bf16`), as `rednet restore` does on a CPU that has it."
    lines += ["", note]
    for dataset in report.datasets:
        present = [m for m in report.methods if any((dataset, c, m) in cell for c in cols)]
        if not present:
            continue
        n = next(cell[(dataset, c, present[0])]["images"] for c in cols if (dataset, c, present[0]) in cell)
        lines += ["", f"### {dataset} ({n} images, RGB)", ""]
        lines.append("| method | " + " | ".join(_setting_label(report.task, c) for c in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for method in present:
            row = []
            for c in cols:
                r = cell.get((dataset, c, method))
                row.append(f"{r['psnr']:.2f} / {r['ssim']:.4f}" if r else "")
            models = sorted(
                {
                    " + ".join(f"`{m}`" for m in (cell[k].get("detector"), cell[k]["model"]) if m)
                    for c in cols
                    if (k := (dataset, c, method)) in cell and cell[k]["model"]
                }
            )
            label = {"input": "blurred input" if deblur else "damaged input"}.get(method, method)
            if method in ("wiener", "richardson-lucy"):
                label += " (true kernel, tuned)"
            if method in ("telea", "biharmonic"):
                label += " (true mask)"
            if models:
                label += " (" + ", ".join(models) + ")"
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines += _classic_gains(report, cell, dataset, present)
    if deblur and tuning:
        lines += _tuning_table(report, tuning, best)
    names = list(report.datasets)

    def seconds(method: str, i: int) -> list[float]:
        return [cell[k]["seconds"] for c in cols if (k := (names[i], c, method)) in cell]

    lines += seconds_lines(names, [m for m in report.methods if m != "input"], seconds, "the columns")
    return "\n".join(lines)


def _classic_gains(
    report: ClassicReport, cell: dict[tuple, dict[str, Any]], dataset: str, present: list[str]
) -> list[str]:
    """The gain rows of one table: each model over the classical method it must beat."""
    cols = report.settings

    def psnr(method: str, c: str) -> float | None:
        r = cell.get((dataset, c, method))
        return r["psnr"] if r else None

    lines = []
    if task_named(report.task).uses_kernel:
        rivals = tuple(r for r in ("wiener", "richardson-lucy") if r in present)
        name = {2: "the better of Wiener and R–L", 1: "Wiener" if "wiener" in rivals else "R–L"}
        pairs = [(m, rivals, name.get(len(rivals), "")) for m in ("rednet", "rednet-blind")]
    else:
        pairs = [
            ("rednet", ("telea",), "Telea"),
            ("rednet-detect", ("telea",), "Telea"),
            ("rednet-mask", ("biharmonic",), "biharmonic"),
        ]
    for method, rivals, name in pairs:
        if method not in present or not any(r in present for r in rivals):
            continue
        row = []
        for c in cols:
            mine, theirs = psnr(method, c), [v for r in rivals if (v := psnr(r, c)) is not None]
            row.append(f"{mine - max(theirs):+.2f}" if mine is not None and theirs else "")
        lines.append(f"| {method} − {name} (dB) | " + " | ".join(row) + " |")
    return lines


def _tuning_table(report: ClassicReport, tuning: list[dict[str, Any]], best: dict) -> list[str]:
    """The grid the classical deconvolutions were tuned on, and the choice per column."""
    cols = report.settings
    n = tuning[0]["images"]
    lines = [
        "",
        f"### Tuning of the classical methods ({n} BSDS500 training images, RGB PSNR in dB)",
        "",
        "| parameter | " + " | ".join(_setting_label(report.task, c) for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    table = {(r["setting"], r["method"], r["parameter"]): r["psnr"] for r in tuning}
    for method, grid, name in (
        ("wiener", WIENER_BALANCES, "Wiener balance"),
        ("richardson-lucy", RL_ITERATIONS, "R–L iterations"),
    ):
        for value in grid:
            row = []
            for c in cols:
                v = table.get((c, method, value))
                mark = "**" if best.get((c, method)) == value else ""
                row.append(f"{mark}{v:.2f}{mark}" if v is not None else "")
            if any(row):
                lines.append(f"| {name} {value:g} | " + " | ".join(row) + " |")
    lines += ["", "Bold: the value used in the tables above (the best on the training images)."]
    return lines
