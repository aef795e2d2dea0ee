"""``rednet ablate``: the paper's claims (``shared/docs/paper.md`` §6) re-checked by small training runs.

Every run is a plain :func:`rednet.train.train` run (σ = 70 gray denoising unless the claim needs more, 50x50
patches, one seed for all, equal steps within a claim), validated on the first images of the validation
split ``train/BSDS500/test``. The run folders live under one ``--runs`` folder with the budget
(``budget.json``), the extra measurements (``measurements.json``: PSNR of the noise-level models at every
level, inference times of the strided variants) and are enough to rebuild ``docs/ablations.md`` and its
plots without training (:func:`render`), byte for byte.

The claims: (a) depth with and without skips, (b) detail through a strided bottleneck, (c) mirrored skips
against He et al.'s residual blocks, (d) RED10 < RED20 < RED30, (e) one model for all noise levels against
one per level, (f) the strided (fast) variant's speed-up and PSNR cost, (g) the self-ensemble gain, read
from ``docs/results.md``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rednet.train_config import TrainConfig

__all__ = [
    "QUICK",
    "Arm",
    "Budget",
    "RunSummary",
    "arms",
    "ensemble_gains",
    "measure",
    "run_all",
    "summarise",
]

SIGMAS = (10, 30, 50, 70)
"""The paper's noise levels (claim e)."""
STRIDES = (1, 2, 4)
"""Strides of the fast variant (claim f): 1 is the full model."""


@dataclass(frozen=True)
class Budget:
    """What every run of one ablation gets.

    Attributes:
        steps: optimizer steps of every run (equal within each claim: all runs get the same).
        batch_size: patches per step.
        width: hidden channels of every model (the paper's Fig. 3 nets: 64; 32 here to afford it on CPU).
        val_images: validate on the first this many images of ``val_set``.
        val_every: validate every this many steps (and at the end).
        seed: the seed of every run (initialisation and patches): the arms of a claim see the same patches.
        data: the training folder (a path, or a name under the data root).
        val_set: the validation folder (a path, or a name under the data root): never a test set.
        threads: CPU threads (0 = PyTorch's default).
        timing_rounds: rounds of the inference timing of claim (f) (each times every stride once).
    """

    steps: int = 600
    batch_size: int = 16
    width: int = 32
    val_images: int = 4
    val_every: int = 150
    seed: int = 0
    data: str = "train/BSDS500/train"
    val_set: str = "train/BSDS500/test"
    threads: int = 0
    timing_rounds: int = 5

    def flags(self) -> str:
        """The budget as ``rednet ablate`` flags (those that differ from the defaults)."""
        default = Budget()
        parts = []
        for key, value in asdict(self).items():
            if value != getattr(default, key):
                parts.append(f"--{key.replace('_', '-')} {value}")
        return " ".join(parts)


QUICK = Budget(steps=4, batch_size=2, width=8, val_images=1, val_every=4, timing_rounds=1)
"""The ``--quick`` budget: checks that every table and plot is produced, not the conclusions."""


@dataclass(frozen=True)
class Arm:
    """One training run.

    Attributes:
        name: the run folder's name, unique (a run serves every claim that names it).
        label: what the run is, for tables and plots.
        config: the run's training config.
    """

    name: str
    label: str
    config: TrainConfig


def _folder(name: str) -> str:
    """A folder as given when it exists, else under the data root."""
    from rednet.data import data_root

    return name if Path(name).is_dir() else str(data_root() / name)


def _config(budget: Budget, **model: Any) -> TrainConfig:
    """A σ = 70 gray denoising run with the budget's steps, validated on its validation images."""
    values: dict[str, Any] = {
        "task": "denoise",
        "sigma": "70",
        "channel": "gray",
        "data": _folder(budget.data),
        "depth": 30,
        "width": budget.width,
        "steps": budget.steps,
        "batch_size": budget.batch_size,
        "patch_size": 50,
        "val_set": _folder(budget.val_set),
        "val_level": "70",
        "val_limit": budget.val_images,
        "val_every": budget.val_every,
        "log_every": max(1, budget.steps // 50),
        "ckpt_every": budget.val_every,
        "seed": budget.seed,
        "threads": budget.threads,
    }
    return TrainConfig(**{**values, **model})


def arms(budget: Budget) -> dict[str, Arm]:
    """Every run of the ablation, by name."""
    out: list[Arm] = [Arm("red20", "RED20, skips every 2", _config(budget, depth=20))]
    # (b) the paper's Fig. 3a: 5 convolutions of stride 3 on 243x243 patches (the encoder ends in 1 pixel).
    neck = {"depth": 10, "stride": 3, "stride_layers": 5, "patch_size": 243}
    out.append(
        Arm("neck-noskip", "bottleneck, no skips", _config(budget, **neck, skip_every=0, residual=False))
    )
    out.append(
        Arm(
            "neck-skip",
            "bottleneck, skips every layer",
            _config(budget, **neck, skip_every=1, residual=False),
        )
    )
    out.append(
        Arm(
            "neck-skip-res",
            "bottleneck, skips every layer + input skip",
            _config(budget, **neck, skip_every=1),
        )
    )
    # (c) RED20: mirrored skips against He et al.'s blocks, span 2 and 4 (red20 is RED span 2).
    out.append(Arm("red20-he2", "RED20, He blocks of span 2", _config(budget, depth=20, he_blocks=True)))
    out.append(Arm("red20-span4", "RED20, mirrored skips every 4", _config(budget, depth=20, skip_every=4)))
    out.append(
        Arm(
            "red20-he4", "RED20, He blocks of span 4", _config(budget, depth=20, skip_every=4, he_blocks=True)
        )
    )
    # (e) RED10 with skips: one model per noise level and one for all of them.
    for sigma in SIGMAS:
        out.append(
            Arm(
                f"level{sigma}",
                f"RED10, σ = {sigma} only",
                _config(budget, depth=10, sigma=str(sigma), val_level=str(sigma)),
            )
        )
    every = ",".join(map(str, SIGMAS))
    out.append(Arm("level-all", f"RED10, σ ∈ {{{every}}}", _config(budget, depth=10, sigma=every)))
    # (f) RED20 strided (red20 is stride 1).
    for stride in STRIDES[1:]:
        out.append(
            Arm(f"red20-stride{stride}", f"RED20, stride {stride}", _config(budget, depth=20, stride=stride))
        )
    # (a) and (d): depth with and without skips (the costliest runs come last).
    for depth in (10, 20, 30):
        if depth != 20:
            out.append(Arm(f"red{depth}", f"RED{depth}, skips every 2", _config(budget, depth=depth)))
        out.append(
            Arm(f"red{depth}-noskip", f"RED{depth}, no skips", _config(budget, depth=depth, skip_every=0))
        )
    return {a.name: a for a in out}


FAST_ARMS = {1: "red20", **{s: f"red20-stride{s}" for s in STRIDES[1:]}}
LEVEL_ARMS = {**{s: f"level{s}" for s in SIGMAS}, "all": "level-all"}


# --------------------------------------------------------------------------------------------------------
# Running


def _log(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _done(run_dir: Path, config: TrainConfig) -> bool:
    """Whether the run folder holds this exact run, finished."""
    if not (run_dir / "config.json").is_file() or not (run_dir / "last.pt").is_file():
        return False
    stored = json.loads((run_dir / "config.json").read_text())["config"]
    mine = {**asdict(config), "dtype": stored.get("dtype")}
    if stored != mine:
        raise ValueError(f"{run_dir} holds another run than this budget's; use another --runs folder")
    return any(r.get("step") == config.steps and "val_psnr" in r for r in _log(run_dir))


def _check_budget(runs: Path, budget: Budget) -> None:
    """Write the budget into ``runs``, or check that it is the one already there."""
    path = runs / "budget.json"
    if path.is_file():
        stored = Budget(**json.loads(path.read_text()))
        if stored != budget:
            raise ValueError(f"{runs} holds runs of another budget ({stored.flags() or 'the defaults'})")
        return
    runs.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(budget), indent=2) + "\n")


def run_all(
    budget: Budget,
    runs: str | Path,
    *,
    progress: bool = False,
    command: str = "",
    say: Callable[[str], None] = lambda message: None,
) -> Path:
    """Train every arm that ``runs`` does not hold finished yet (an unfinished one is resumed), then take
    the measurements (:func:`measure`) into ``runs/measurements.json``.

    Returns:
        The runs folder.
    """
    from rednet.train import train

    runs = Path(runs)
    _check_budget(runs, budget)
    for arm in arms(budget).values():
        run_dir = runs / arm.name
        if _done(run_dir, arm.config):
            continue
        resume = (run_dir / "last.pt").is_file()
        if not resume and run_dir.exists():
            for leftover in ("log.jsonl", "config.json", "best.pt"):
                (run_dir / leftover).unlink(missing_ok=True)
        say(f"{time.strftime('%H:%M:%S')} training {arm.name} ({arm.label})")
        train(
            arm.config,
            run_dir,
            resume=resume,
            progress=progress,
            command=command or f"rednet ablate {arm.name}",
        )
    say(f"{time.strftime('%H:%M:%S')} measuring the noise-level models and the strided variants")
    result = measure(budget, runs)
    (runs / "measurements.json").write_text(json.dumps(result, indent=2) + "\n")
    return runs


def _load(run_dir: Path) -> Any:
    import torch

    from rednet.model import REDNet
    from rednet.train import load_checkpoint

    checkpoint = load_checkpoint(run_dir / "last.pt")
    config = TrainConfig.from_dict(checkpoint["config"])
    model = REDNet(config.model_config())
    model.load_state_dict(checkpoint["model"])
    model.eval()
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, config


def _level_psnr(model: Any, config: TrainConfig, sigma: int, budget: Budget) -> float:
    """Validation PSNR of a trained model at noise level ``sigma``."""
    import torch

    from rednet.evaluate import EvalConfig, evaluate

    def run(corrupted: Any, _config: Any) -> Any:
        x = corrupted.degraded.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.dtype == "bf16"):
            return model(x).float()

    eval_config = EvalConfig(
        task="denoise", dataset=config.val_set, sigma=float(sigma), channel="gray", limit=budget.val_images
    )
    return float(evaluate(eval_config, method=run)["mean"]["psnr"])


def _timings(models: dict[int, tuple[Any, TrainConfig]], budget: Budget) -> dict[int, list[float]]:
    """Seconds per forward pass of each model on the first validation image, in interleaved rounds."""
    import torch

    from rednet.data import resolve_dataset
    from rednet.evaluate import load_clean

    files, _ = resolve_dataset(_folder(budget.val_set), None)
    image = load_clean(files[0], "gray").contiguous(memory_format=torch.channels_last)
    seconds: dict[int, list[float]] = {s: [] for s in models}
    with torch.inference_mode():
        for round_ in range(budget.timing_rounds + 1):
            for stride, (model, config) in models.items():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.dtype == "bf16"):
                    start = time.perf_counter()
                    model(image)
                    if round_:  # the first round warms up
                        seconds[stride].append(time.perf_counter() - start)
    return seconds


def measure(budget: Budget, runs: str | Path) -> dict[str, Any]:
    """What the logs do not hold: (e) every noise-level model's validation PSNR at every level, and (f) the
    inference time of each stride on the first validation image, measured together in this process."""
    import torch

    runs = Path(runs)
    if budget.threads:
        torch.set_num_threads(budget.threads)
    every = arms(budget)
    done = {n for n, a in every.items() if _done(runs / n, a.config)}
    levels: dict[str, dict[str, float]] = {}
    for key, name in LEVEL_ARMS.items():
        if name in done:
            model, config = _load(runs / name)
            levels[str(key)] = {str(s): _level_psnr(model, config, s, budget) for s in SIGMAS}
    fast = {s: _load(runs / name) for s, name in FAST_ARMS.items() if name in done}
    seconds = _timings(fast, budget)
    from rednet.train import hardware

    return {
        "level_psnr": levels,
        "inference_seconds": {str(s): v for s, v in seconds.items()},
        "timing_hardware": hardware(torch.device("cpu")),
        "timing_image": "the first validation image, gray, one forward pass, batch 1",
    }


# --------------------------------------------------------------------------------------------------------
# Reading the runs


@dataclass(frozen=True)
class RunSummary:
    """What the doc needs of one run folder."""

    name: str
    label: str
    steps: int
    planned: int
    batch_size: int
    patch_size: int
    seed: int
    seconds: float
    hardware: str
    dtype: str
    curve: list[tuple[int, float]]
    val: list[tuple[int, float]]

    @property
    def done(self) -> bool:
        return self.steps == self.planned and bool(self.val) and self.val[-1][0] == self.planned

    @property
    def final_psnr(self) -> float | None:
        return self.val[-1][1] if self.done else None

    @property
    def final_loss(self) -> float | None:
        """Mean training loss (MSE, [0, 1] images) over the last fifth of the run's logged steps."""
        if not self.done or not self.curve:
            return None
        tail = self.curve[-max(1, len(self.curve) // 5) :]
        return statistics.fmean(loss for _, loss in tail)


def summarise(arm: Arm, run_dir: Path) -> RunSummary:
    """Read one run folder (an absent one reads as a run of 0 steps)."""
    records = _log(run_dir)
    stored = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    losses = [r for r in records if "loss" in r]
    return RunSummary(
        name=arm.name,
        label=arm.label,
        steps=losses[-1]["step"] if losses else 0,
        planned=arm.config.steps,
        batch_size=arm.config.batch_size,
        patch_size=arm.config.patch_size,
        seed=arm.config.seed,
        seconds=losses[-1]["elapsed"] if losses else 0.0,
        hardware=stored.get("meta", {}).get("hardware", ""),
        dtype=stored.get("config", {}).get("dtype", ""),
        curve=[(r["step"], r["loss"]) for r in losses],
        val=[(r["step"], r["val_psnr"]) for r in records if "val_psnr" in r],
    )


def ensemble_gains(results_md: str) -> list[tuple[str, str, list[str], list[float]]]:
    """The self-ensemble gain rows of ``docs/results.md``: (section, table, level labels, gains in dB)."""
    out = []
    section = table = ""
    header: list[str] = []
    for line in results_md.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("### "):
            table = line[4:].strip()
        elif line.startswith("| method |"):
            header = [c.strip() for c in line.strip("|").split("|")][1:]
        elif line.startswith("| self-ensemble gain (dB) |"):
            values = [c.strip() for c in line.strip("|").split("|")][1:]
            out.append((section, table, header, [float(v) for v in values]))
    return out
