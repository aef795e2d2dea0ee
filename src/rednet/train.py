"""Training: one :class:`TrainConfig`, one :func:`train` loop, on one CPU, one GPU or many (DDP).

Run it as ``rednet train ...`` or, on several processes, ``torchrun --nproc_per_node N -m rednet train ...``
(multi-node through torchrun's rendezvous). Under torchrun each rank builds the same model, takes its own
slice of every global batch (``batch_size`` is the global batch), gradients are averaged by
DistributedDataParallel, and rank 0 alone writes logs and checkpoints.

A run folder holds ``config.json`` (the resolved config and the command), ``log.jsonl`` (one line per logged
step and per validation), ``last.pt`` and ``best.pt`` (model, optimizer, scheduler, step, RNG states, config,
written atomically). Patches are a pure function of (seed, step), so ``--resume`` continues bit for bit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from rednet.data import Corruption, Levels, PatchDataset, data_root, load_training_images
from rednet.device_patches import DevicePatches
from rednet.infer import native_bf16
from rednet.io import replace_atomically
from rednet.model import REDNet, REDNetConfig, convert_channels
from rednet.tasks import TASKS, task_named

__all__ = ["TrainConfig", "hardware", "load_checkpoint", "train"]

log = logging.getLogger(__name__)

DAMAGE_WEIGHT = 4.0
"""Weight of the damaged pixels in a damage model's cross-entropy (the intact ones weigh 1)."""

LEVEL_FIELD = {name: task.train_level for name, task in TASKS.items()}
"""Task name -> the field of :class:`TrainConfig` that holds its training levels."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. CLI flags map one-to-one to these fields.

    Attributes:
        task: "denoise", "sr", "jpeg", "deblur" or "inpaint"; several joined by "," are mixed per patch.
        sigma: noise levels on the 0-255 scale, a range "0-75" or a list "10,30,50" (denoise; deblur's
            added noise).
        scale: SR factors, a list such as "2,3,4".
        quality: JPEG qualities, a range "5-95" or a list.
        kernel: deblur kernel, "gaussian" (25x25, sigma 1.6), "disk" (radius 7) or "gaussian-family" (a
            25x25 Gaussian whose sigma is drawn from ``blur_sigma`` for each patch: a blind deblurrer).
        blur_sigma: the sigma range of the "gaussian-family" kernel, in pixels, e.g. "0.5-3".
        mask: inpainting damage: "text" (white/black text, as the test), "strokes" (text and scratches in
            random colours), "decoys" (the test's text over an image given antialiased text and clipped
            areas of its own, which stay in the target: what a blind damage model must leave alone), or
            pixel-loss rates as a range "0.3-0.8" or a list; several joined by "+"
            are mixed per patch, e.g. "strokes+0-0.8".
        mask_input: the model also takes the mask as a 4th input channel (inpaint only).
        output: "image" (a restoring model) or "damage" (inpaint only): the model learns where the damage is,
            (N, 1, H, W) probabilities, by binary cross-entropy against the true mask, damaged pixels
            weighted by ``DAMAGE_WEIGHT`` (a missed pixel of text costs more than one filled needlessly); it
            is validated by the PSNR of its mask filled by the shipped ``inpaint-mask``.
        channel: "gray", "y" (BT.601 luminance) or "rgb"; sets the model's channels.
        data: training folders, comma-separated: paths, or names relative to the data root.
        data_root: where ``data`` and the validation set live; None = ``rednet.data.data_root()``.
        depth, width, skip_every, residual, stride: the model (see ``rednet.model.REDNetConfig``).
        stride_layers: how many first convolutions (and last deconvolutions) stride (``REDNetConfig``).
        he_blocks: He et al.'s residual blocks of span ``skip_every`` instead of the mirrored skips.
        steps: optimizer steps in the run (the LR schedule spans them).
        batch_size: global batch (split evenly over DDP ranks).
        patch_size: side of the training patches (the paper: 50).
        patch_stride: 0 = patches anywhere; s > 0 = patch corners on a grid of step s.
        color_jitter: new colours for RGB patches (channel order, saturation: ``rednet.data.jitter_colours``).
        patches_on_device: make each batch on the training device (``rednet.device_patches``; denoising
            only): for a GPU, which loader processes cutting patches one by one cannot keep up with.
        lr: Adam learning rate (the paper: 1e-4).
        schedule: "constant" or "cosine" (decay to ``min_lr`` over the run), after ``warmup`` linear steps.
        min_lr: the cosine schedule's final learning rate.
        warmup: linear warm-up steps from 0.
        clip_grad: gradient-norm clipping threshold; 0 = off.
        loss: "l2" (the paper's MSE) or "l1".
        dtype: "bf16" (autocast, CPU or GPU), "fp32", or "auto": bf16 where it is fast (a GPU, a CPU with
            AVX-512 or AMX: ``rednet.infer.native_bf16``), else fp32; the run folder stores the choice.
        channels_last: use the channels-last memory format (faster on CPU with oneDNN, and with bf16).
        compile: ``torch.compile`` the model.
        val_set: benchmark name or folder for validation; "" = no validation.
        val_level: the level validated at (e.g. 25 for denoise sigma, 3 for sr, 10 for jpeg, "text" or
            "decoys" for inpaint).
        val_limit: validate on the first N images only (0 = all).
        val_every: validate every N steps (and at the end).
        log_every: write a loss line every N steps.
        ckpt_every: write ``last.pt`` every N steps (and at the end, and on Ctrl-C).
        seed: seeds the model's initialisation and every patch.
        workers: DataLoader worker processes (0 = in the training process).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        threads: CPU threads for PyTorch (0 = PyTorch's default).
    """

    task: str = "denoise"
    sigma: str = "0-75"
    scale: str = "2,3,4"
    quality: str = "5-95"
    kernel: str = "gaussian"
    blur_sigma: str = "0.5-3"
    mask: str = "text"
    mask_input: bool = False
    output: str = "image"
    channel: str = "gray"
    data: str = "train/BSDS500"
    data_root: str | None = None
    depth: int = 30
    width: int = 64
    skip_every: int = 2
    residual: bool = True
    stride: int = 1
    stride_layers: int = 1
    he_blocks: bool = False
    steps: int = 10_000
    batch_size: int = 16
    patch_size: int = 50
    patch_stride: int = 0
    color_jitter: bool = False
    patches_on_device: bool = False
    lr: float = 1e-4
    schedule: str = "constant"
    min_lr: float = 1e-6
    warmup: int = 0
    clip_grad: float = 0.0
    loss: str = "l2"
    dtype: str = "auto"
    channels_last: bool = True
    compile: bool = False
    val_set: str = "Set12"
    val_level: str = "25"
    val_limit: int = 0
    val_every: int = 500
    log_every: int = 10
    ckpt_every: int = 200
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        for task in self.tasks:
            if task not in LEVEL_FIELD:
                raise ValueError(f"task must be among {', '.join(LEVEL_FIELD)}, got {task!r}")
        inpaint_only = len(self.tasks) == 1 and task_named(self.tasks[0]).masks
        checks = {
            "channel": self.channel in ("gray", "y", "rgb"),
            "schedule": self.schedule in ("constant", "cosine"),
            "loss": self.loss in ("l2", "l1"),
            "dtype": self.dtype in ("auto", "bf16", "fp32"),
            "device": self.device in ("auto", "cpu", "cuda"),
            "kernel": self.kernel in ("gaussian", "disk", "gaussian-family"),
            "mask_input": not self.mask_input or inpaint_only,
            "output": self.output == "image" or (self.output == "damage" and inpaint_only),
            # a task-name test: DevicePatches makes the denoising patches only (Gaussian noise, on the GPU)
            "patches_on_device": not self.patches_on_device
            or (self.tasks == ["denoise"] and not self.patch_stride),
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "patch_size": self.patch_size >= 1,
            "lr": self.lr > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed (see rednet train --help)")
        self.corruptions()  # parses the level specs
        self.model_config()

    @property
    def tasks(self) -> list[str]:
        return [t.strip() for t in self.task.split(",") if t.strip()]

    def corruptions(self) -> list[Corruption]:
        """The training corruptions, one per task."""
        out = []
        for task in self.tasks:
            if task_named(task).masks:
                for kind in self.mask.split("+"):
                    kind = kind.strip()
                    with_mask = self.mask_input or self.output == "damage"  # an input, or the target
                    if kind in ("text", "strokes", "decoys"):
                        out.append(Corruption(task, Levels(values=(0.0,)), kind, with_mask=with_mask))
                    else:
                        out.append(Corruption(task, Levels.parse(kind), "rate", with_mask=with_mask))
            else:
                spec = getattr(self, LEVEL_FIELD[task])
                kernel = self.kernel if task_named(task).uses_kernel else ""
                out.append(Corruption(task, Levels.parse(spec), kernel, Levels.parse(self.blur_sigma)))
        return out

    def model_config(self) -> REDNetConfig:
        return REDNetConfig(
            depth=self.depth,
            width=self.width,
            channels=3 if self.channel == "rgb" else 1,
            skip_every=self.skip_every,
            residual=self.residual,
            stride=self.stride,
            mask_input=self.mask_input,
            output=self.output,
            stride_layers=self.stride_layers,
            he_blocks=self.he_blocks,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a TOML file, a checkpoint); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        with open(path, "rb") as f:
            return cls.from_dict(tomllib.load(f))


# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device=cuda but no CUDA device is available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def hardware(device: torch.device, world: int = 1) -> str:
    """A one-line description of the machine a run used."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{world} x {name}" if world > 1 else name
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    procs = f"{world} processes, " if world > 1 else ""
    return f"CPU {cpu} ({procs}{torch.get_num_threads()} threads, {os.cpu_count()} cores)"


def _lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if config.warmup and step < config.warmup:
            return (step + 1) / config.warmup
        if config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
        floor = config.min_lr / config.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _training_folder(name: str, root: str | None) -> Path:
    """A training folder: as given when it exists (absolute or relative to the working directory), else
    relative to the data root."""
    path = Path(name)
    return path if path.is_dir() else data_root(root) / name


def _save_atomic(obj: Any, path: Path) -> None:
    replace_atomically(path, lambda tmp: torch.save(obj, tmp))


def _write_text_atomic(path: Path, text: str) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def truncate_log(path: Path, step: int) -> None:
    """Keep only the records of ``log.jsonl`` up to ``step`` (the checkpoint a run resumes from), atomically.

    A run killed after its last checkpoint has logged steps that its resume logs again; they go, and so does
    a last line cut short by the kill. A fresh run (``step`` 0) starts an empty log.
    """
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut short by a kill: only the last one can be
        if not isinstance(record, dict) or record.get("step", math.inf) > step:
            break
        kept.append(line + "\n")
    _write_text_atomic(path, "".join(kept))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``last.pt``/``best.pt``) safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a corrupt file can raise many types
        raise ValueError(f"{path}: not a readable rednet checkpoint ({type(e).__name__})") from None


def _load_model_state(model: REDNet, state: dict[str, Tensor], source: str) -> None:
    """Load weights, turning an architecture mismatch into one readable line."""
    own = model.state_dict()
    mismatched = [k for k in own if k not in state or state[k].shape != own[k].shape]
    extra = [k for k in state if k not in own]
    if mismatched or extra:
        key = (mismatched or extra)[0]
        got = tuple(state[key].shape) if key in state else "missing"
        want = tuple(own[key].shape) if key in own else "absent"
        raise ValueError(
            f"{source}: weights do not match the model {model.config} "
            f"(first difference: {key} is {got}, the model needs {want})"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def damage_loss(probability: Tensor, damaged: Tensor) -> Tensor:
    """A damage model's loss: cross-entropy of (N, 1, H, W) probabilities against the true damage (1 =
    damaged), the damaged pixels weighted by :data:`DAMAGE_WEIGHT`."""
    weight = 1 + (DAMAGE_WEIGHT - 1) * damaged
    return F.binary_cross_entropy(probability.clamp(1e-6, 1 - 1e-6), damaged, weight=weight)


def _validate(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> dict[str, float]:
    from rednet.evaluate import EvalConfig, evaluate

    task = config.tasks[0]
    levels = {"sigma": None, "scale": None, "quality": None, "kernel": None, "mask": None}
    field = task_named(task).level
    value: Any = config.val_level
    if field in ("scale", "quality"):
        value = int(float(value))
    elif field == "sigma":
        value = float(value)
    # A blind Gaussian deblurrer is validated on the demo's Gaussian (sigma 1.6), inside its family.
    levels[field] = value if field != "kernel" else config.kernel.replace("gaussian-family", "gaussian")
    if task_named(task).uses_kernel:  # the added noise
        levels["sigma"] = float(config.val_level)
    eval_config = EvalConfig(
        task=task,  # type: ignore[arg-type]
        dataset=config.val_set,
        channel=config.channel,  # type: ignore[arg-type]
        data_root=config.data_root,
        limit=config.val_limit or None,
        **levels,
    )

    if config.output == "damage":
        from rednet.infer import find_damage, restore
        from rednet.zoo import load

        filler = load("inpaint-mask", device=device)

    def run(corrupted, _config) -> Tensor:
        x = corrupted.degraded
        if config.output == "damage":  # the found damage, filled by the shipped mask-aware model
            bf16 = config.dtype == "bf16"
            return restore(filler, x, mask=find_damage(model, x, bf16=bf16), bf16=bf16)
        if config.mask_input:
            x = torch.cat([x, corrupted.mask], dim=1)
        x = x.to(device)
        if config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.dtype == "bf16"):
            return model(x).float().cpu()

    was_training = model.training
    model.eval()
    try:
        result = evaluate(eval_config, method=run)
    finally:
        model.train(was_training)
    return {"val_psnr": result["mean"]["psnr"], "val_ssim": result["mean"]["ssim"]}


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    init: str | Path | None = None,
    stop_at: int | None = None,
    stop_at_time: float | None = None,
    progress: bool = True,
    command: str | None = None,
) -> Path:
    """Train a RED-Net and write the run folder.

    Args:
        config: the run.
        run_dir: folder for config, logs and checkpoints (created).
        resume: continue from ``run_dir/last.pt`` exactly: the config stored there wins, but for
            ``threads`` and ``workers``, taken from ``config``.
        init: exported weights (``.safetensors``) or a checkpoint to start from, with a fresh optimizer; a
            1-channel model can start a 3-channel one and back (``rednet.model.convert_channels``).
        stop_at: stop after this step, as if interrupted (tests; the schedule still spans ``config.steps``).
        stop_at_time: stop at the first step that ends after this ``time.time()``, as if interrupted
            (``last.pt`` is written): a deadline for a run on a lent machine.
        progress: show a progress bar on rank 0.
        command: the command line to record (default: ``sys.argv``).

    Returns:
        The run folder.
    """
    run_dir = Path(run_dir)
    checkpoint = load_checkpoint(run_dir / "last.pt") if resume else None
    if checkpoint is not None:
        # The stored run wins, except for how many CPU threads and loader workers run it, when given (a
        # value other than the default); otherwise the stored ones are kept.
        defaults = TrainConfig()
        machine = {
            k: getattr(config, k)
            for k in ("threads", "workers")
            if getattr(config, k) != getattr(defaults, k)
        }
        config = TrainConfig.from_dict({**checkpoint["config"], **machine})
    device = _device(config)
    if config.dtype == "auto":
        config = replace(config, dtype="bf16" if native_bf16(device) else "fp32")
    ddp = _init_distributed(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    if stop_at_time is not None and ddp.world > 1:
        raise ValueError("a deadline (stop_at_time) is for one process: ranks could stop at different steps")
    if config.batch_size % ddp.world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the {ddp.world} processes")
    local_batch = config.batch_size // ddp.world

    torch.manual_seed(config.seed)
    model = REDNet(config.model_config())
    if init is not None:
        source = _read_weights(Path(init))
        state = (
            convert_channels(source, model.config.channels, mask_input=model.config.mask_input)
            if model.config.output == "image"
            else dict(source)
        )
        if (
            state.get("convs.0.weight") is not None
            and any(k.startswith("deconvs.") for k in source)
            and source[_end_layers(source)[1]].shape[1] != model.config.channels
        ):
            # A converted model sits at a saddle: its first layer sees only the mean of the channels and its
            # last layer writes the same residual to each, so no gradient reaches the colour differences.
            # Adding the fresh (seeded) initialisation of those two layers breaks the symmetry.
            fresh = model.state_dict()
            for key in _end_layers(state):
                state[key] = state[key] + fresh[key]
        _load_model_state(model, state, str(init))
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    # On a GPU the fused Adam is one kernel for all the parameters (the CPU keeps the default for-each).
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, **fused)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: pick the fastest convolution once
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    step, best, elapsed, meta = 0, -math.inf, 0.0, {}
    if checkpoint is not None:
        _load_model_state(model, checkpoint["model"], str(run_dir / "last.pt"))
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        step, best, elapsed = checkpoint["step"], checkpoint["best_psnr"], checkpoint["elapsed"]
        torch.set_rng_state(checkpoint["torch_rng"])
        meta = json.loads((run_dir / "config.json").read_text()).get("meta", {}) if ddp.is_main else {}
        now = hardware(device, ddp.world)
        # "A; from step S: B": the machine of the latest stretch is what follows the last ": ".
        if meta and meta.get("hardware", "").split("; from step ")[-1].split(": ", 1)[-1] != now:
            meta["hardware"] = f"{meta['hardware']}; from step {step}: {now}"
    net: torch.nn.Module = model
    if ddp.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        net = torch.compile(net)

    folders = [_training_folder(d.strip(), config.data_root) for d in config.data.split(",") if d.strip()]
    images = load_training_images(folders, config.channel)
    dataset = PatchDataset(
        images,
        config.corruptions(),
        patch_size=config.patch_size,
        seed=config.seed,
        patch_stride=config.patch_stride,
        color_jitter=config.color_jitter,
    )
    cuda = device.type == "cuda"
    loader: Iterable[tuple[Tensor, Tensor]]
    if config.patches_on_device:  # each rank makes the global batch and takes its own slice of it
        make = DevicePatches(
            images,
            config.corruptions()[0].levels,
            batch_size=config.batch_size,
            patch_size=config.patch_size,
            seed=config.seed,
            device=device,
            color_jitter=config.color_jitter,
        )
        mine = slice(ddp.rank * local_batch, (ddp.rank + 1) * local_batch)
        loader = ((d[mine], c[mine]) for d, c in map(make, range(step, config.steps)))
    else:
        batches = [
            [s * config.batch_size + ddp.rank * local_batch + i for i in range(local_batch)]
            for s in range(step, config.steps)
        ]
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=config.workers,
            persistent_workers=False,
            pin_memory=cuda,
            prefetch_factor=4 if config.workers else None,
        )

    if ddp.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not meta:
            meta = {
                "command": command if command is not None else " ".join(sys.argv),
                "hardware": hardware(device, ddp.world),
                "torch": torch.__version__,
                "images": len(dataset.images),
                "init": str(init) if init else None,
                "init_card": _init_card(Path(init)) if init else None,
            }
        _write_text_atomic(
            run_dir / "config.json", json.dumps({"config": asdict(config), "meta": meta}, indent=2)
        )
        truncate_log(run_dir / "log.jsonl", step)

    def save(name: str) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "best_psnr": best,
            "elapsed": elapsed,
            "config": asdict(config),
            "torch_rng": torch.get_rng_state(),
        }
        _save_atomic(state, run_dir / name)

    def write_log(record: dict[str, Any]) -> None:
        with open(run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    bar = None
    if progress and ddp.is_main:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=step, unit="step", dynamic_ncols=True)
    loss_fn = F.mse_loss if config.loss == "l2" else F.l1_loss
    if config.output == "damage":
        loss_fn = damage_loss
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    # The window's loss is summed on the device (float64, as a Python float would be) and read at log
    # steps only: reading it every step would make the CPU wait for the GPU at every step.
    window_loss = torch.zeros((), dtype=torch.float64, device=device)
    window_steps, window_start = 0, time.perf_counter()
    last_tick = time.perf_counter()
    net.train()
    # SIGTERM (kill, a cluster's pre-emption) stops the run like Ctrl-C: last.pt is written first.
    on_term = None
    if threading.current_thread() is threading.main_thread():
        on_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for degraded, clean in loader:
            if step >= end:
                break
            if stop_at_time is not None and time.time() >= stop_at_time:
                save("last.pt")
                break
            degraded, clean = degraded.to(device, non_blocking=cuda), clean.to(device, non_blocking=cuda)
            if config.channels_last:
                degraded = degraded.contiguous(memory_format=torch.channels_last)
                clean = clean.contiguous(memory_format=torch.channels_last)
            if config.output == "damage":  # the mask rides as the last channel: the target, not an input
                degraded, clean = degraded[:, :-1], 1 - degraded[:, -1:]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.dtype == "bf16"):
                restored = net(degraded)
            loss = loss_fn(restored.float(), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            optimizer.step()
            scheduler.step()
            step += 1
            now = time.perf_counter()
            elapsed, last_tick = elapsed + now - last_tick, now
            window_loss += loss.detach().double()
            window_steps += 1
            if ddp.is_main:
                if bar is not None:
                    bar.update(1)
                if step % config.log_every == 0 or step == end:
                    seconds = time.perf_counter() - window_start
                    rate = window_steps * config.batch_size / seconds
                    record = {
                        "step": step,
                        "loss": window_loss.item() / window_steps,
                        "lr": scheduler.get_last_lr()[0],
                        "patches_per_s": rate,
                        "elapsed": elapsed,
                    }
                    write_log(record)
                    if bar is not None:
                        bar.set_postfix(
                            loss=f"{record['loss']:.2e}", lr=f"{record['lr']:.1e}", pps=f"{rate:.1f}"
                        )
                    window_loss.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                if config.val_set and (step % config.val_every == 0 or step == config.steps):
                    scores = _validate(model, config, device)
                    write_log({"step": step, **scores})
                    if scores["val_psnr"] > best:
                        best = scores["val_psnr"]
                        save("best.pt")
                    window_start = last_tick = time.perf_counter()
                if step % config.ckpt_every == 0 or step == end:
                    save("last.pt")
    except KeyboardInterrupt:
        if ddp.is_main:
            save("last.pt")
            log.warning("interrupted at step %d; resume with --resume %s", step, run_dir)
        raise
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        if bar is not None:
            bar.close()
    if ddp.world > 1:
        dist.barrier()
        dist.destroy_process_group()  # a live gloo group aborts the process at exit
    return run_dir


def _end_layers(state: dict[str, Tensor]) -> list[str]:
    """The keys of the first convolution and the last deconvolution (those that depend on the channels)."""
    last = max(int(k.split(".")[1]) for k in state if k.startswith("deconvs."))
    return ["convs.0.weight", f"deconvs.{last}.weight", f"deconvs.{last}.bias"]


def _init_card(path: Path) -> dict[str, Any] | None:
    """What a warm start began from: the parts of its card that add up (steps, patches, time, command)."""
    if path.suffix != ".safetensors":
        return None
    from rednet.zoo import read_weights

    card = read_weights(path)[2]
    keys = ("name", "command", "steps", "patches_seen", "wall_time_s", "hardware", "lineage")
    return {k: card.get(k) for k in keys}


def _read_weights(path: Path) -> dict[str, Tensor]:
    """Model weights from exported ``.safetensors`` or from a training checkpoint (``.pt``)."""
    if path.suffix == ".safetensors":
        from rednet.zoo import read_weights

        return read_weights(path)[0]
    return load_checkpoint(path)["model"]
