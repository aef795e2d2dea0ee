"""The plots of ``docs/ablations.md``: small PNGs, byte-stable (no timestamps or versions in the file).

Each function draws one figure from plain numbers and writes it; the same numbers give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["bars", "curves", "lines"]

Curve = Sequence[tuple[float, float]]


def _figure(panels: int):  # noqa: ANN202 - matplotlib types
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "svg.hashsalt": "rednet", "path.simplify": False})
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 2.6), squeeze=False)
    return plt, fig, list(axes[0])


def _save(plt, fig, path: Path) -> Path:  # noqa: ANN001 - matplotlib types
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path


def curves(
    path: str | Path,
    runs: Sequence[tuple[str, str, Curve, Curve]],
    *,
    loss_label: str = "training loss (MSE)",
) -> Path:
    """Two panels: training loss against step (log scale) and validation PSNR against step.

    Args:
        path: the PNG.
        runs: (label, matplotlib line style such as "-" or "--", loss curve, validation curve) per run.
        loss_label: the left panel's y label.
    """
    plt, fig, (left, right) = _figure(2)
    for label, style, loss, val in runs:
        if loss:
            left.plot(*zip(*loss, strict=True), style, label=label, linewidth=1)
        if val:
            right.plot(*zip(*val, strict=True), style, marker=".", label=label, linewidth=1)
    left.set_yscale("log")
    left.set(xlabel="step", ylabel=loss_label)
    right.set(xlabel="step", ylabel="validation PSNR (dB)")
    right.legend(fontsize=6)
    return _save(plt, fig, Path(path))


def bars(path: str | Path, panels: Sequence[tuple[str, Sequence[str], Sequence[float]]]) -> Path:
    """One bar chart per panel: (y label, bar labels, values), each bar labelled with its value."""
    plt, fig, axes = _figure(len(panels))
    for ax, (ylabel, labels, values) in zip(axes, panels, strict=True):
        ax.bar(range(len(values)), values, color="tab:blue")
        ax.set_xticks(range(len(values)), labels, rotation=30, ha="right", fontsize=6)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=6)
        ax.set(ylabel=ylabel)
    return _save(plt, fig, Path(path))


def lines(
    path: str | Path,
    xlabel: str,
    ylabel: str,
    x: Sequence[float],
    series: Sequence[tuple[str, Sequence[float]]],
) -> Path:
    """One panel: a line per series over the same x (e.g. PSNR against noise level, one line per model)."""
    plt, fig, (ax,) = _figure(1)
    for label, ys in series:
        ax.plot(x, ys, marker="o", label=label, linewidth=1, markersize=3)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_xticks(list(x))
    ax.legend(fontsize=6)
    return _save(plt, fig, Path(path))
