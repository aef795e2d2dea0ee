"""``docs/ablations.md`` from the run folders of ``rednet ablate`` (:mod:`rednet.ablations`), with its plots.

Everything here reads stored files only (the run folders, ``measurements.json``, ``docs/results.md``), so the
same runs give the same page and the same PNGs, byte for byte. The paper's figures are constants, labelled as
the paper's (``shared/docs/paper.md`` §4.6, §4.7, §6).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from rednet import ablation_plots as plots
from rednet.ablations import (
    FAST_ARMS,
    LEVEL_ARMS,
    SIGMAS,
    Budget,
    RunSummary,
    arms,
    ensemble_gains,
    summarise,
)

__all__ = ["render"]

PAPER_NECK = (22.5, 19.0)
"""Fig. 3a, read off the plot (paper.md §4.7): final PSNR with and without skips, σ = 70."""
PAPER_HE = {2: (25.08, 24.59), 4: (25.30, 25.21)}
"""Fig. 3c (paper.md §4.7): PSNR at 5e4 iterations, (RED-style, He-style) per block span."""
PAPER_SINGLE_COST = 0.32
"""Tables 6 vs 1-2 (paper.md §4.6): the most that one model for all σ loses against per-level models, dB."""
FAST_TARGET = (3.0, 0.2)
"""Issue 30's goal for "much faster at almost negligible cost": >= 3x at <= 0.2 dB (not the paper's)."""
SLIGHT = 0.5
"""Our reading of the paper's "slightly" for the self-ensemble gain: above 0 and at most this, dB."""


def _db(value: float | None) -> str:
    return "not run" if value is None else f"{value:.2f}"


def _verdict(checks: list[bool]) -> str:
    return "yes" if all(checks) else "no" if not any(checks) else "partly"


def _run(runs: dict[str, RunSummary], name: str) -> RunSummary:
    return runs[name]


def _claim_a(runs: dict[str, RunSummary], img: Path, rel: str) -> tuple[list[str], list[str]]:
    rows = [
        "RED10/20/30 with a mirrored skip every 2 layers and with none; all keep the input-to-output "
        "residual (as the released model does; the paper does not say for its Fig. 3b nets).",
        "",
        "| run | train loss (last fifth, ×10³) | val PSNR, last step (dB) | best val PSNR (dB) |",
        "|---|---|---|---|",
    ]
    series = []
    for skip in (False, True):
        for depth in (10, 20, 30):
            r = runs[f"red{depth}" + ("" if skip else "-noskip")]
            loss = "not run" if r.final_loss is None else f"{1000 * r.final_loss:.3f}"
            best = max((v for _, v in r.val), default=None) if r.done else None
            rows.append(f"| {r.label} | {loss} | {_db(r.final_psnr)} | {_db(best)} |")
            series.append((r.label, f"C{depth // 10 - 1}" + ("-" if skip else "--"), r.curve, r.val))
    plots.curves(img / "ablation-a-depth.png", series)
    rows += ["", f"![loss and validation PSNR against step]({rel}/ablation-a-depth.png)"]
    loss = {
        (d, s): runs[f"red{d}" + ("" if s else "-noskip")].final_loss for d in (10, 20, 30) for s in (0, 1)
    }
    if None in loss.values():
        return rows, [
            "(a) depth with and without skips",
            "without skips deeper is worse; with skips deeper is better (Fig. 3b)",
            "not all runs finished",
            "–",
        ]
    worse = loss[10, 0] < loss[20, 0] < loss[30, 0]
    better = loss[30, 1] < loss[20, 1] < loss[10, 1]
    measured = (
        "final loss ×10³ without skips 10/20/30 layers: "
        + " / ".join(f"{1000 * loss[d, 0]:.2f}" for d in (10, 20, 30))
        + "; with skips: "
        + " / ".join(f"{1000 * loss[d, 1]:.2f}" for d in (10, 20, 30))
    )
    paper = (
        "loss rises with depth without skips (10 < 20 < 30 layers); with skips deeper reaches a lower loss "
        "(Fig. 3b); our checks: the final loss orders so, both ways"
    )
    return rows, ["(a) depth with and without skips", paper, measured, _verdict([worse, better])]


def _claim_b(runs: dict[str, RunSummary], img: Path, rel: str) -> tuple[list[str], list[str]]:
    names = ("neck-noskip", "neck-skip", "neck-skip-res")
    paper = {"neck-noskip": f"≈ {PAPER_NECK[1]}", "neck-skip": f"≈ {PAPER_NECK[0]}", "neck-skip-res": "–"}
    rows = [
        "Five 3×3 convolutions of stride 3 (243 → 81 → 27 → 9 → 3 → 1 px) and five mirrored deconvolutions, "
        "on 243×243 patches, as in Fig. 3a; a skip from every convolution to its mirror, or none; no "
        "input-to-output residual in the first two rows. The third row adds it (the released RED-Net's, "
        "not in Fig. 3a): the finest skip is at 1/3 of the resolution, so a residual that must hold "
        "per-pixel noise is painted in 3×3 blocks (our reading of why it trails).",
        "",
        "| run | paper's PSNR (dB, read off Fig. 3a) | our val PSNR, last step (dB) |",
        "|---|---|---|",
    ]
    for name in names:
        rows.append(f"| {runs[name].label} | {paper[name]} | {_db(runs[name].final_psnr)} |")
    plots.curves(
        img / "ablation-b-bottleneck.png", [(runs[n].label, "-", runs[n].curve, runs[n].val) for n in names]
    )
    rows += ["", f"![loss and validation PSNR against step]({rel}/ablation-b-bottleneck.png)"]
    skip, none = runs["neck-skip"].final_psnr, runs["neck-noskip"].final_psnr
    claim = "(b) detail through a strided bottleneck"
    gap = PAPER_NECK[0] - PAPER_NECK[1]
    said = f"with skips ≈ {PAPER_NECK[0]} dB, without ≈ {PAPER_NECK[1]} dB (gap ≈ {gap:.1f} dB)"
    said += "; our check: with > without"
    if skip is None or none is None:
        return rows, [claim, said, "not all runs finished", "–"]
    measured = f"with skips {skip:.2f} dB, without {none:.2f} dB (gap {skip - none:+.2f} dB)"
    return rows, [claim, said, measured, _verdict([skip > none])]


def _claim_c(runs: dict[str, RunSummary], img: Path, rel: str) -> tuple[list[str], list[str]]:
    pairs = {2: ("red20", "red20-he2"), 4: ("red20-span4", "red20-he4")}
    rows = [
        "RED20 (the paper does not say which net or task Fig. 3c used): mirrored skips every 2 or 4 layers "
        "against He et al.'s blocks, a shortcut around every 2 or 4 layers of the 20-layer chain (from "
        "layer 1 on); both keep the input-to-output residual.",
        "",
        "| span | paper RED / He (dB) | our RED / He (dB) | our RED − He (dB) |",
        "|---|---|---|---|",
    ]
    checks, parts = [], []
    for span, (red, he) in pairs.items():
        a, b = runs[red].final_psnr, runs[he].final_psnr
        gap = "–" if a is None or b is None else f"{a - b:+.2f}"
        rows.append(
            f"| {span} | {PAPER_HE[span][0]:.2f} / {PAPER_HE[span][1]:.2f} | {_db(a)} / {_db(b)} | {gap} |"
        )
        if a is not None and b is not None:
            checks.append(a > b)
            parts.append(f"span {span}: {a:.2f} vs {b:.2f}")
    names = [n for pair in pairs.values() for n in pair]
    series = [
        (
            runs[n].label,
            ("C1" if "4" in n else "C0") + ("--" if "he" in n else "-"),
            runs[n].curve,
            runs[n].val,
        )
        for n in names
    ]
    plots.curves(img / "ablation-c-he.png", series)
    rows += ["", f"![loss and validation PSNR against step]({rel}/ablation-c-he.png)"]
    said = "; ".join(f"span {s}: {r:.2f} vs {h:.2f} dB" for s, (r, h) in PAPER_HE.items()) + " (RED vs He)"
    done = len(checks) == len(pairs)
    return rows, [
        "(c) mirrored skips vs He-style blocks",
        said,
        "; ".join(parts) if done else "not all runs finished",
        _verdict(checks) if done else "–",
    ]


def _claim_d(runs: dict[str, RunSummary], img: Path, rel: str) -> tuple[list[str], list[str]]:
    names = ("red10-noskip", "red20", "red30")  # the paper's RED10 has no skips
    values = [runs[n].final_psnr for n in names]
    rows = [
        "The paper's variants, from the runs of (a): RED10 without skips, RED20 and RED30 with a skip every "
        "2.",
        "",
        "| model | our val PSNR, last step (dB) |",
        "|---|---|",
    ]
    rows += [f"| {runs[n].label} | {_db(v)} |" for n, v in zip(names, values, strict=True)]
    rows.append(f"| (RED10 with skips) | {_db(runs['red10'].final_psnr)} |")
    claim, said = (
        "(d) RED10 < RED20 < RED30",
        "RED10 < RED20 < RED30 in every table row but one (e.g. BSD200 σ = 50: 25.54 < 25.67 < 25.75)",
    )
    if None in values:
        return rows, [claim, said, "not all runs finished", "–"]
    plots.bars(
        img / "ablation-d-ordering.png", [("validation PSNR (dB)", ["RED10", "RED20", "RED30"], values)]
    )
    rows += ["", f"![validation PSNR per depth]({rel}/ablation-d-ordering.png)"]
    measured = " / ".join(f"{v:.2f}" for v in values) + " dB"
    return rows, [claim, said, measured, _verdict([values[0] < values[1] < values[2]])]


def _claim_e(levels: dict[str, dict[str, float]], img: Path, rel: str) -> tuple[list[str], list[str]]:
    claim = "(e) one model for all σ vs one per σ"
    said = (
        f"one model costs ≤ {PAPER_SINGLE_COST} dB at every σ (Tables 6 vs 1–2); a per-level model breaks "
        "off-level (an MLP for one σ: 18.62 / 14.84 dB at σ = 50 / 70 on the 14 images; our check: a "
        "per-level model loses > 1 dB at some other σ)"
    )
    head = "| model | " + " | ".join(f"σ = {s}" for s in SIGMAS) + " |"
    rows = [
        "RED10 with skips (the paper's Tables 6–7 use RED30), one per σ and one trained on σ ∈ {10, 30, 50, "
        "70} drawn per patch, all at the same steps (so the all-σ model sees each level a quarter as often); "
        "each scored at every σ on the validation images (PSNR, dB).",
        "",
        head,
        "|---" * (len(SIGMAS) + 1) + "|",
    ]
    for key in LEVEL_ARMS:
        if str(key) in levels:
            label = "all σ" if key == "all" else f"σ = {key} only"
            rows.append(
                f"| {label} | " + " | ".join(f"{levels[str(key)][str(s)]:.2f}" for s in SIGMAS) + " |"
            )
    if len(levels) < len(LEVEL_ARMS):
        return rows + ["", "Not all runs finished."], [claim, said, "not all runs finished", "–"]
    own = {s: levels[str(s)][str(s)] for s in SIGMAS}
    cost = {s: own[s] - levels["all"][str(s)] for s in SIGMAS}
    rows.append(
        "| cost of one model (own-level − all-σ) | " + " | ".join(f"{cost[s]:+.2f}" for s in SIGMAS) + " |"
    )
    off = {s: min(levels[str(s)][str(t)] - own[t] for t in SIGMAS) for s in SIGMAS}
    rows.append(
        "| worst off-level loss of the σ = row model | " + " | ".join(f"{off[s]:+.2f}" for s in SIGMAS) + " |"
    )
    series = [
        ("all σ" if k == "all" else f"σ = {k} only", [levels[str(k)][str(s)] for s in SIGMAS])
        for k in LEVEL_ARMS
    ]
    plots.lines(img / "ablation-e-levels.png", "σ tested at", "validation PSNR (dB)", list(SIGMAS), series)
    rows += [
        "",
        "The last row: for the model trained at the column's σ, its PSNR at its worst other level minus the "
        "own-level model's there.",
        "",
        f"![validation PSNR against σ, one line per model]({rel}/ablation-e-levels.png)",
    ]
    measured = (
        "cost " + " / ".join(f"{cost[s]:+.2f}" for s in SIGMAS) + f" dB at σ = {'/'.join(map(str, SIGMAS))}"
    )
    measured += "; worst off-level loss of a per-level model " + f"{min(off.values()):+.2f} dB"
    return rows, [
        claim,
        said,
        measured,
        _verdict([max(cost.values()) <= PAPER_SINGLE_COST, min(off.values()) < -1.0]),
    ]


def _claim_f(
    runs: dict[str, RunSummary], seconds: dict[str, list[float]], img: Path, rel: str
) -> tuple[list[str], list[str]]:
    claim, said = (
        "(f) strided variant: speed-up and cost",
        '"much faster" at "almost negligible" PSNR cost (no numbers in [NIPS])',
    )
    rows = [
        "RED20; stride s in the first convolution (kernel max(3, s)) and the last deconvolution, trained at "
        "the same steps as stride 1; inference timed in one process, the strides taking turns, on one "
        "validation image (see the foot of the page); cost = stride-1 PSNR − this PSNR.",
        "",
        "| stride | inference s (median) | speed-up | val PSNR (dB) | cost (dB) | training s |",
        "|---|---|---|---|---|---|",
    ]
    base_s = statistics.median(seconds["1"]) if seconds.get("1") else None
    base_p = runs[FAST_ARMS[1]].final_psnr
    checks, parts, speed, cost = [], [], [], []
    for stride, name in FAST_ARMS.items():
        r, t = runs[name], seconds.get(str(stride))
        if not t or r.final_psnr is None or base_s is None or base_p is None:
            rows.append(f"| {stride} | not run | | | | |")
            continue
        up, loss = base_s / statistics.median(t), base_p - r.final_psnr
        cells = [f"{statistics.median(t):.3f}", f"{up:.2f}×", f"{r.final_psnr:.2f}", f"{loss:+.2f}"]
        rows.append(f"| {stride} | {' | '.join(cells)} | {r.seconds:.0f} |")
        speed.append(up)
        cost.append(loss)
        if stride > 1:
            checks.append(up >= FAST_TARGET[0] and loss <= FAST_TARGET[1])
            parts.append(f"stride {stride}: {up:.1f}× faster, {loss:+.2f} dB")
    if len(speed) < len(FAST_ARMS):
        return rows, [claim, said, "not all runs finished", "–"]
    labels = [f"stride {s}" for s in FAST_ARMS]
    plots.bars(
        img / "ablation-f-stride.png",
        [("speed-up over stride 1", labels, speed), ("PSNR cost (dB)", labels, cost)],
    )
    rows += ["", f"![speed-up and PSNR cost per stride]({rel}/ablation-f-stride.png)"]
    said += f"; our test: ≥ {FAST_TARGET[0]:g}× at ≤ {FAST_TARGET[1]:g} dB (issue 30's goal)"
    return rows, [claim, said, "; ".join(parts), "yes" if any(checks) else "no"]


def _claim_g(results: Path, img: Path, rel: str) -> tuple[list[str], list[str]]:
    claim, said = (
        "(g) self-ensemble gain",
        f'helps "slightly" (not quantified; our reading: > 0 and ≤ {SLIGHT} dB)',
    )
    gains = ensemble_gains(results.read_text()) if results.is_file() else []
    if not gains:
        return [f"No self-ensemble rows in `{results.name}`."], [
            claim,
            said,
            "no self-ensemble rows found",
            "–",
        ]
    rows = ["| task | table | gain per level (dB) |", "|---|---|---|"]
    for section, table, header, values in gains:
        task = section.split(":")[0]
        rows.append(
            f"| {task} | {table} | "
            + ", ".join(f"{h} {v:+.2f}" for h, v in zip(header, values, strict=False))
            + " |"
        )
    every = [v for *_, values in gains for v in values]
    labels = [f"{s.split(':')[0].split()[0]} {t.split(' (')[0]}" for s, t, _, _ in gains]
    plots.bars(
        img / "ablation-g-ensemble.png",
        [("mean self-ensemble gain (dB)", labels, [statistics.fmean(v) for *_, v in gains])],
    )
    rows += ["", f"![mean self-ensemble gain per table]({rel}/ablation-g-ensemble.png)"]
    measured = f"{min(every):+.2f} to {max(every):+.2f} dB over {len(every)} cells of {len(gains)} tables"
    return rows, [claim, said, measured, _verdict([0 < v <= SLIGHT for v in every])]


def _runs_table(runs: dict[str, RunSummary]) -> list[str]:
    rows = [
        "| run | what | steps | batch × patch | patches | seed | dtype | training s (no validation) | "
        "val PSNR, last step |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs.values():
        rows.append(
            f"| {r.name} | {r.label} | {r.steps} / {r.planned} | {r.batch_size} × {r.patch_size}² | "
            f"{r.steps * r.batch_size:,} | {r.seed} | {r.dtype or '–'} | {r.seconds:.0f} | "
            f"{_db(r.final_psnr)} |"
        )
    return rows


def command_line(budget: Budget, runs: str | Path) -> str:
    """The ``rednet ablate`` command that trains ``runs`` at ``budget``."""
    return " ".join(x for x in ("rednet ablate", f"--runs {Path(runs).as_posix()}", budget.flags()) if x)


def render(
    budget: Budget,
    runs: str | Path,
    out: str | Path,
    *,
    img_dir: str | Path | None = None,
    results: str | Path = "docs/results.md",
) -> list[Path]:
    """Write the doc and its plots from the run folders in ``runs``; runs not there read as "not run".

    Args:
        budget: the budget the runs were trained at (``runs/budget.json``).
        runs: the ``--runs`` folder.
        out: the markdown file.
        img_dir: the plots' folder (default ``img/`` beside ``out``).
        results: ``docs/results.md``, for claim (g).

    Returns:
        The files written: the doc, then the plots.
    """
    runs, out = Path(runs), Path(out)
    img = Path(img_dir) if img_dir is not None else out.parent / "img"
    rel = Path(_relative(img, out.parent)).as_posix()
    every = arms(budget)
    summary = {name: summarise(arm, runs / name) for name, arm in every.items()}
    stored = runs / "measurements.json"
    measured: dict[str, Any] = json.loads(stored.read_text()) if stored.is_file() else {}
    sections = [
        ("(a) Depth with and without skips (Fig. 3b)", _claim_a(summary, img, rel)),
        ("(b) Detail through a strided bottleneck (Fig. 3a)", _claim_b(summary, img, rel)),
        ("(c) Mirrored skips against He et al.'s residual blocks (Fig. 3c)", _claim_c(summary, img, rel)),
        ("(d) RED10 < RED20 < RED30", _claim_d(summary, img, rel)),
        (
            "(e) One model for all noise levels (Tables 6–7)",
            _claim_e(measured.get("level_psnr", {}), img, rel),
        ),
        (
            "(f) The strided (fast) variant (§2.1.1)",
            _claim_f(summary, measured.get("inference_seconds", {}), img, rel),
        ),
        ("(g) Self-ensemble gain (from docs/results.md)", _claim_g(Path(results), img, rel)),
    ]
    lines = [
        f"Generated by `{command_line(budget, runs)}`; "
        f"`rednet ablate --runs {runs.as_posix()} --from-runs` rebuilds this page and its plots from the "
        "stored runs.",
        "",
        "# Ablations: the paper's claims, re-checked at a small budget",
        "",
        *_intro(budget, summary),
        "",
        "## Verdicts",
        "",
        "| claim | paper says | we measured | agrees? |",
        "|---|---|---|---|",
        *[f"| {' | '.join(verdict)} |" for _, (_, verdict) in sections],
        "",
        _disagreements([verdict for _, (_, verdict) in sections]),
    ]
    for title, (rows, _) in sections:
        lines += ["", f"## {title}", "", *rows]
    lines += ["", "## Runs", "", *_runs_table(summary), ""]
    hardware = sorted({r.hardware for r in summary.values() if r.hardware})
    lines += [f"Trained on: {'; '.join(hardware) or '–'}."]
    if measured.get("timing_hardware"):
        lines += ["", f"Inference timed on: {measured['timing_hardware']}; {measured['timing_image']}."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return [out, *sorted(img.glob("ablation-*.png"))]


def _disagreements(verdicts: list[list[str]]) -> str:
    """One sentence naming the claims our runs do not (fully) confirm."""
    named = {v[-1]: [] for v in verdicts}
    for verdict in verdicts:
        named[verdict[-1]].append(verdict[0].split(")")[0] + ")")
    parts = [f"{', '.join(named[k])} {k}" for k in ("no", "partly", "–") if named.get(k)]
    if not parts:
        return "At this budget our runs agree with every claim."
    return f"At this budget our runs do not agree with every claim: {'; '.join(parts)} (see each section)."


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


def _intro(budget: Budget, summary: dict[str, RunSummary]) -> list[str]:
    patches = budget.steps * budget.batch_size
    total = sum(r.seconds for r in summary.values())
    return [
        f"Every run: {budget.steps} Adam steps (lr 1e-4, constant: the paper's) of {budget.batch_size} "
        f"patches (50×50; the bottleneck runs 243×243 as in Fig. 3a), {patches:,} patches in all, width "
        f"{budget.width}, seed {budget.seed} (the same initialisation and patches for every arm), gray "
        "denoising at σ = 70 unless the claim needs other levels, trained on "
        f"`{budget.data}` and validated on the first {budget.val_images} images of `{budget.val_set}` (the "
        f"validation split; no test set is used) every {budget.val_every} steps. {len(summary)} runs, "
        f"{total / 60:.0f} min of training in all.",
        "",
        "The paper's ablations ran to 5×10⁴ iterations (Fig. 3a, 3c) or 100 epochs (Fig. 3b) at width 64; "
        f"these runs are {budget.steps} steps at width {budget.width} on a shared CPU, so they test the "
        'direction of each claim early in training, not the paper\'s final numbers. A verdict is "yes" when '
        'every check of the claim holds, "partly" when some do, "no" when none does; the checks are '
        "stated in each row. The paper's values are constants from `shared/docs/paper.md` (§4.6, §4.7, §6); "
        "those of Fig. 3 are read off its plots.",
    ]
