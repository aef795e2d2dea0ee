"""After a GPU lease, back on this machine: its files unpacked into run folders, and its tables.

The lease itself is :mod:`rednet.campaign`; ``rednet campaign unpack FILES_AT`` and ``rednet campaign report
FILES_AT`` call :func:`unpack` and :func:`render_lease`.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

from rednet.campaign import JOBS, run_log, shipped_weights

__all__ = ["render_lease", "unpack"]


def unpack(folder: str | Path, runs: str | Path = "runs") -> dict[str, Any]:
    """Extract every ``NAME.tar`` of a lease's files into ``runs/`` (never over an existing run) and copy
    ``campaign.json`` and ``bench.json`` beside them.

    Returns:
        JSON-ready, per run folder: its steps, best validation PSNR, and the shipped model's (before).
    """
    folder, runs = Path(folder), Path(runs)
    archives = sorted(folder.glob("*.tar"))
    if not archives:
        raise FileNotFoundError(f"{folder}: no NAME.tar from a lease")
    runs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    for archive in archives:
        with tarfile.open(archive) as tar:
            names = {m.name.split("/")[0] for m in tar.getmembers()}
            if len(names) != 1 or any((runs / n).exists() for n in names):
                raise FileExistsError(f"{archive}: holds {sorted(names)}, one of which is already in {runs}")
            tar.extractall(runs, filter="data")
        run_dir = runs / names.pop()
        records = run_log(run_dir)
        vals = [r["val_psnr"] for r in records if "val_psnr" in r]
        result[str(run_dir)] = {
            "steps": max((r["step"] for r in records), default=0),
            "best_val_psnr": max(vals, default=None),
            "before": shipped_weights(archive.stem)[1] if archive.stem in JOBS else None,
        }
    for name in ("campaign.json", "bench.json"):
        if (folder / name).is_file():
            target = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
            shutil.copyfile(folder / name, target)
    return result


def render_lease(summary: dict[str, Any], bench: dict[str, Any] | None) -> str:
    """Markdown tables of a lease from its ``campaign.json`` and ``bench.json``: per job, the training rates,
    steps, patches, device seconds and validation before -> after; then training and inference speed
    against the device's own bf16 matmul peak (``rednet report infer``'s table for inference)."""
    lines = [
        f"Lease command: `{summary.get('command', '')}`, {summary.get('seconds', 0):.0f} s in all.",
        "",
        "| job | patches/s (smoke) | patches/s (training) | steps | patches | device s | validation before "
        "→ best (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, job in summary["jobs"].items():
        best = max((v for _, v in job["validation"]), default=None)
        before = job.get("validation_before")
        change = " → ".join(f"{v:.2f}" for v in (before, best) if v is not None) or "none"
        lines.append(
            f"| {name} | {job['smoke_patches_per_s']:.0f} | {job['patches_per_s']:.0f} | {job['steps']} | "
            f"{job['patches']:,} | {job['device_seconds']:.0f} | {change} |"
        )
    if bench and "train" in bench:
        t = bench["train"]
        lines += [
            "",
            f"Training speed, one process ({t['hardware']}, {t['model']} width {t['width']}, batch "
            f"{t['batch_size']} of {t['patch_size']}², {t['dtype']}): {t['patches_per_s']:.0f} patches/s, "
            f"{t['tflops']:.3g} TFLOP/s, {t['peak_fraction']:.3f} of the {t['peak_tflops']:.3g} TFLOP/s "
            f"matmul peak of its rounds; batches made on the device: {t.get('device_patches_per_s', 0):.0f} "
            f"patches/s; one loader process ({t['data_task']}): {t['data_patches_per_s']:.0f} patches/s.",
        ]
    if bench and "infer" in bench:
        from rednet.run_tables import render_infer_table

        lines += [
            "",
            "Inference speed (`rednet bench infer` on the device):",
            "",
            render_infer_table(bench["infer"]),
        ]
    if bench and "error" in bench:
        lines += ["", f"The benchmark failed: {bench['error']}"]
    return "\n".join(lines) + "\n"
