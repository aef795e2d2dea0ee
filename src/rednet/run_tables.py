"""Markdown tables of things measured outside ``docs/results.md``: training runs side by side (``rednet report
runs``) and a saved ``rednet bench infer --json`` result (``rednet report infer``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["render_infer_table", "render_runs_table"]


def render_runs_table(run_dirs: list[str | Path]) -> str:
    """A markdown table comparing training runs: recipe, start, steps, patches, time, validation PSNR.

    Args:
        run_dirs: training run folders (``config.json`` and ``log.jsonl`` of ``rednet train``).

    Returns:
        The table, one row per run, with the best validation PSNR and the step it was reached at.
    """
    lines = [
        "| run | channel | init | lr, schedule, warm-up, clip | batch × patch | steps | patches | hours | "
        "best val PSNR (step) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run_dir in map(Path, run_dirs):
        stored = json.loads((run_dir / "config.json").read_text())
        config, meta = stored["config"], stored.get("meta", {})
        records = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x.strip()]
        steps = [r for r in records if "loss" in r]
        vals = [r for r in records if "val_psnr" in r]
        best = max(vals, key=lambda r: r["val_psnr"], default=None)
        last = steps[-1] if steps else {"step": 0, "elapsed": 0.0}
        init = Path(meta["init"]).stem if meta.get("init") else "scratch"
        recipe = f"{config['lr']:g} {config['schedule']}, {config['warmup']}, {config['clip_grad']:g}"
        lines.append(
            f"| {run_dir.name} | {config['channel']} | {init} | {recipe} | "
            f"{config['batch_size']} × {config['patch_size']}² | {last['step']} / {config['steps']} | "
            f"{last['step'] * config['batch_size']:,} | {last['elapsed'] / 3600:.2f} | "
            + (f"{best['val_psnr']:.2f} ({best['step']}) |" if best else "– |")
        )
    return "\n".join(lines)


def render_infer_table(result: dict[str, Any]) -> str:
    """A markdown table of a ``rednet bench infer --json`` result (:func:`rednet.bench_infer.bench_infer`).

    One row per variant: seconds per image, MP/s (and the speed-up over the ``fp32`` variant of the same
    run), GFLOP/s, ``peak_fraction`` with its per-round range, ``peak_fraction_of_max`` and PSNR (marked
    when the variant ran on random weights); skipped variants give their reason. Below it, one line with
    the run's peaks, the noisy input's PSNR, the bf16 PSNR change and BM3D, when they were measured.
    """
    rows = {v["name"]: v for v in result["variants"]}
    base = rows.get("fp32", {}).get("megapixels_per_s")
    random_strided = "strided variants use random weights" in result.get("note", "")
    lines = [
        "| variant | s / image | MP/s | GFLOP/s | peak fraction (rounds) | of the run's largest peak "
        "| PSNR (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in result["variants"]:
        if "skipped" in v:
            lines.append(f"| {v['name']} | skipped: {v['skipped']} | | | | | |")
            continue
        speed = f"{v['megapixels_per_s']:.4f}"
        if base and v["name"] != "fp32":
            speed += f" ({v['megapixels_per_s'] / base:.2f}× fp32)"
        low, high = v["peak_fraction_range"]
        random_weights = result.get("weights") is None or (random_strided and v["stride"] != 1)
        quality = "(random weights)" if random_weights else f"{v['psnr_db']:.3f}"
        lines.append(
            f"| {v['name']} | {v['seconds_per_image']:.2f} | {speed} | {v['gflops']:.1f} | "
            f"{v['peak_fraction']:.3f} ({low:.3f}–{high:.3f}) | {v['peak_fraction_of_max']:.3f} | {quality} |"
        )
    peaks = ", ".join(
        f"{k} {result['peak_gflops'][k]:.1f} (largest {result['peak_gflops_max'][k]:.1f})"
        for k in result["peak_gflops"]
    )
    notes = [f"Matmul peaks of the run, GFLOP/s, median of rounds: {peaks}."]
    notes.append(f"Noisy input: {result['noisy_psnr_db']:.3f} dB.")
    if result.get("bf16_psnr_change_db") is not None:
        notes.append(f"bf16 − fp32 PSNR: {result['bf16_psnr_change_db']:+.3f} dB.")
    if "bm3d" in result:
        b = result["bm3d"]
        notes.append(
            f"{b['method']} on the same image: {b['seconds_per_image']:.1f} s, "
            f"{b['megapixels_per_s']:.4f} MP/s, {b['psnr_db']:.3f} dB."
        )
    return "\n".join(lines) + "\n\n" + " ".join(notes)
