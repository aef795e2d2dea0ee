"""Training curves: ``rednet plot`` draws a run's loss and validation PSNR against step."""

from __future__ import annotations

import json
from pathlib import Path

from rednet.extras import require
from rednet.io import replace_atomically

__all__ = ["plot_run"]


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Draw the loss and validation-PSNR curves of a training run to a PNG (written atomically).

    Args:
        run_dir: a training run folder with ``log.jsonl``.
        output: PNG path; default ``RUN_DIR/curves.png``.

    Returns:
        The PNG path.

    Raises:
        FileNotFoundError: If there is no ``log.jsonl``.
        ValueError: If the loss (or validation) steps of the log do not increase, as in a log that a resumed
            run appended to without truncating it.
    """
    matplotlib = require("matplotlib", "plot", "rednet plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    log_path = run_dir / "log.jsonl"
    if not log_path.is_file():
        raise FileNotFoundError(
            f"{run_dir}: no log.jsonl (not a training run folder, or it has not logged yet)"
        )
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    losses = [(r["step"], r["loss"]) for r in records if "loss" in r]
    vals = [(r["step"], r["val_psnr"]) for r in records if "val_psnr" in r]
    for kind, points in (("loss", losses), ("validation", vals)):
        back = next((i for i in range(1, len(points)) if points[i][0] <= points[i - 1][0]), None)
        if back is not None:
            raise ValueError(
                f"{log_path}: {kind} steps do not increase (step {points[back][0]} after step "
                f"{points[back - 1][0]}): a log with repeated steps cannot be plotted"
            )
    output = Path(output) if output is not None else run_dir / "curves.png"
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    if losses:
        ax_loss.plot(*zip(*losses, strict=True))
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", ylabel="training loss", title="loss")
    if vals:
        ax_val.plot(*zip(*vals, strict=True), marker="o")
    ax_val.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR")
    for ax in (ax_loss, ax_val):
        ax.grid(True, alpha=0.3)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    try:
        return replace_atomically(output, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
