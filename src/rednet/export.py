"""Export a training run as shipped weights: the ``.safetensors`` file and its model card.

Kept apart from ``rednet.zoo`` (which loads weights) because it reads training checkpoints: ``rednet.train``
loads shipped models, so a zoo that also imported train would make an import cycle.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rednet.model import REDNet, parameter_count
from rednet.tasks import task_named
from rednet.train import load_checkpoint
from rednet.train_config import TrainConfig
from rednet.version import __version__
from rednet.zoo import read_weights, save_weights

__all__ = ["export_run"]


def _lineage(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The earlier runs this one was warm-started from (``--init``), oldest first, from the stored cards."""
    init = meta.get("init_card")
    if init is None and meta.get("init") and str(meta["init"]).endswith(".safetensors"):
        path = Path(
            meta["init"]
        )  # runs from before init_card was recorded: read the file if it is still there
        init = read_weights(path)[2] if path.is_file() else None
    if not init:
        return []
    keys = ("name", "command", "steps", "patches_seen", "wall_time_s", "hardware")
    return [*(init.get("lineage") or []), {k: init.get(k) for k in keys}]


def _card_levels(config: Any) -> list[str]:
    """The ``TrainConfig`` fields a model card records as its levels: those of every task the run trains
    (a mixed or chained run, such as the all-corruption model, records them all), in the run's order."""
    out: list[str] = []
    for name in dict.fromkeys(t for chain in config.chains for t in chain):
        task = task_named(name)
        if task.uses_kernel:
            noise = "deblur_sigma" if config.deblur_sigma else "sigma"
            fields = ["kernel", noise] + (["blur_sigma"] if config.kernel == "gaussian-family" else [])
        elif task.masks:
            fields = ["damage", "mask_input"] + (["output"] if config.output != "image" else [])
        else:
            fields = [task.train_level]
        out += [f for f in fields if f not in out]
    return out


def _read_log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def export_run(
    run_dir: str | Path, output: str | Path, *, checkpoint: str = "best", overwrite: bool = False
) -> Path:
    """Export a training run's weights (fp16 safetensors) and its model card, all from the run itself.

    Args:
        run_dir: the training run folder (``config.json``, ``log.jsonl``, ``best.pt``/``last.pt``).
        output: ``NAME.safetensors``; the card goes to ``NAME.json``.
        checkpoint: "best" (highest validation PSNR; falls back to "last" when there is none) or "last".
        overwrite: replace existing files.

    Returns:
        The weights path.
    """
    run_dir, output = Path(run_dir), Path(output)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a training run folder (no config.json)")
    for target in (output, output.with_suffix(".json")):
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target}: already exists; pass --overwrite to replace it")
    ckpt_path = run_dir / f"{checkpoint}.pt"
    if checkpoint == "best" and not ckpt_path.is_file():
        ckpt_path = run_dir / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    config = TrainConfig.from_dict(ckpt["config"])
    meta = json.loads((run_dir / "config.json").read_text()).get("meta", {})
    model = REDNet(config.model_config())
    model.load_state_dict(ckpt["model"])
    vals = [r for r in _read_log(run_dir) if "val_psnr" in r and r["step"] <= ckpt["step"]]
    at_step = next((r for r in vals if r["step"] == ckpt["step"]), None)
    levels = {"sigma": config.sigma, "scale": config.scale, "quality": config.quality}
    lineage = _lineage(meta)
    card = {
        "name": output.stem,
        "rednet": __version__,
        "architecture": {**asdict(model.config), "parameters": parameter_count(model.config)},
        "task": config.task,
        "channel": config.channel,
        "levels": {
            field: levels[field] if field in levels else getattr(config, field)
            for field in _card_levels(config)
        },
        "training_data": {"folders": config.data, "images": meta.get("images")},
        "steps": ckpt["step"],
        "patches_seen": ckpt["step"] * config.batch_size,
        "wall_time_s": round(ckpt["elapsed"], 1),
        "hardware": meta.get("hardware"),
        "command": meta.get("command"),
        **(
            {"lease": meta["lease"]} if meta.get("lease") else {}
        ),  # the GPU lease's command (rednet.campaign)
        "init": meta.get("init"),
        "lineage": lineage,
        "total": {
            "steps": ckpt["step"] + sum(r.get("steps") or 0 for r in lineage),
            "patches_seen": ckpt["step"] * config.batch_size
            + sum(r.get("patches_seen") or 0 for r in lineage),
            "wall_time_s": round(ckpt["elapsed"] + sum(r.get("wall_time_s") or 0 for r in lineage), 1),
        },
        "recipe": {
            k: getattr(config, k)
            for k in (
                "lr",
                "schedule",
                "min_lr",
                "warmup",
                "clip_grad",
                "loss",
                "dtype",
                "batch_size",
                "patch_size",
                "color_jitter",
                "patches_on_device",
                "seed",
            )
        }
        | ({"loss": "weighted binary cross-entropy"} if config.output == "damage" else {}),
        "validation": {
            "set": config.val_set,
            "level": config.val_level,
            "psnr_at_export": at_step["val_psnr"] if at_step else None,
            "best_psnr": max((r["val_psnr"] for r in vals), default=None),
            "history": [[r["step"], round(r["val_psnr"], 3)] for r in vals],
        },
        "checkpoint": ckpt_path.name,
        "torch": meta.get("torch"),
        "license": "MIT (as the code); the training images have their own research terms",
    }
    return save_weights(output, model, card)
