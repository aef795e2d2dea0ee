"""Training: one :func:`train` loop for a ``TrainConfig`` (:mod:`rednet.train_config`), on one CPU, one GPU
or many (DDP).

Run it as ``rednet train ...`` or, on several processes, ``torchrun --nproc_per_node N -m rednet train ...``
(multi-node through torchrun's rendezvous). Under torchrun each rank builds the same model, takes its own
slice of every global batch (``batch_size`` is the global batch), gradients are averaged by
DistributedDataParallel, and rank 0 alone writes logs and checkpoints.

A run folder holds ``config.json`` (the resolved config and the command), ``log.jsonl`` (one line per logged
step and per validation), ``last.pt`` and ``best.pt`` (model, optimizer, scheduler, step, RNG states, config,
written atomically). Patches are a pure function of (seed, step), so ``--resume`` continues bit for bit on
the CPU (on a GPU, cuDNN's autotuned convolutions are not all deterministic: a resumed run continues the same
patches, not the same bits).
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from rednet.data import PatchDataset, data_root, load_training_images
from rednet.device_patches import DevicePatches
from rednet.devices import choose_device, init_process_group, native_bf16
from rednet.inpaint import damage_loss
from rednet.io import replace_atomically
from rednet.model import REDNet, convert_channels
from rednet.tasks import task_named
from rednet.train_config import TrainConfig

__all__ = ["hardware", "load_checkpoint", "train", "training_optimizer"]

log = logging.getLogger(__name__)

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
        init_process_group(device)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def training_optimizer(model: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam as training runs it on ``device`` (``rednet bench train`` times the same): on a GPU fused, one
    kernel for all the parameters, with cuDNN's autotuning on (patch shapes are fixed, so the fastest
    convolution is picked once); on the CPU the default for-each."""
    if device.type != "cuda":
        return torch.optim.Adam(model.parameters(), lr=lr)
    torch.backends.cudnn.benchmark = True
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


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


def _validate(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> dict[str, float]:
    from rednet.evaluate import EvalConfig, evaluate

    task = config.tasks[0]
    levels = {"sigma": None, "scale": None, "quality": None, "kernel": None, "damage": None}
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
        from rednet.infer import restore
        from rednet.inpaint import find_damage
        from rednet.zoo import load

        filler = load("inpaint-mask", device=device)

    def run(corrupted, _config) -> Tensor:
        x = corrupted.degraded
        if config.output == "damage":  # the found damage, filled by the shipped mask-aware model
            bf16 = config.dtype == "bf16"
            return restore(filler, x, mask=find_damage(model, x, bf16=bf16), bf16=bf16)
        if config.mask_input:
            x = torch.cat([x, 1 - corrupted.mask], dim=1)  # the model's mask channel: 1 = known
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


def _resumed_config(config: TrainConfig, checkpoint: dict[str, Any]) -> TrainConfig:
    """The config a resume runs: the stored run's, except for how many CPU threads and loader workers run it
    when ``config`` gives them (a value other than the default)."""
    defaults = TrainConfig()
    machine = {
        k: getattr(config, k) for k in ("threads", "workers") if getattr(config, k) != getattr(defaults, k)
    }
    return TrainConfig.from_dict({**checkpoint["config"], **machine})


def _resumed_meta(run_dir: Path, step: int, now: str) -> dict[str, Any]:
    """The stored run's meta, its hardware extended with "; from step S: NOW" if this machine differs."""
    meta = json.loads((run_dir / "config.json").read_text()).get("meta", {})
    # "A; from step S: B": the machine of the latest stretch is what follows the last ": ".
    if meta and meta.get("hardware", "").split("; from step ")[-1].split(": ", 1)[-1] != now:
        meta["hardware"] = f"{meta['hardware']}; from step {step}: {now}"
    return meta


def _load_init(model: REDNet, init: Path) -> None:
    """Start ``model`` from exported weights or a checkpoint, converting 1 <-> 3 channels if needed."""
    source = _read_weights(init)
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


def _batches(
    config: TrainConfig,
    images: list[Tensor],
    dataset: PatchDataset,
    device: torch.device,
    ddp: _Dist,
    *,
    start: int,
) -> Iterable[tuple[Tensor, Tensor]]:
    """This rank's (degraded, clean) batches of steps ``start`` .. ``config.steps``: made on the device
    (``patches_on_device``; each rank makes the global batch and takes its slice) or by loader processes."""
    local_batch = config.batch_size // ddp.world
    if config.patches_on_device:
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
        return ((d[mine], c[mine]) for d, c in map(make, range(start, config.steps)))
    batches = [
        [s * config.batch_size + ddp.rank * local_batch + i for i in range(local_batch)]
        for s in range(start, config.steps)
    ]
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=config.workers,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if config.workers else None,
    )


def _start_run_folder(run_dir: Path, config: TrainConfig, meta: dict[str, Any], step: int) -> None:
    """Make the run folder, write its config.json (resolved config and meta) and cut log.jsonl to ``step``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(
        run_dir / "config.json", json.dumps({"config": asdict(config), "meta": meta}, indent=2)
    )
    truncate_log(run_dir / "log.jsonl", step)


def _step(
    net: torch.nn.Module,
    model: REDNet,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    degraded: Tensor,
    clean: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """One optimizer step on a batch already on the device (N, C, H, W); returns the loss (not synced)."""
    if config.channels_last:
        degraded = degraded.contiguous(memory_format=torch.channels_last)
        clean = clean.contiguous(memory_format=torch.channels_last)
    if config.output == "damage":  # the mask rides as the last channel: the target, not an input
        degraded, clean = degraded[:, :-1], 1 - degraded[:, -1:]
    with torch.autocast(degraded.device.type, dtype=torch.bfloat16, enabled=config.dtype == "bf16"):
        restored = net(degraded)
    loss = loss_fn(restored.float(), clean)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_grad:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
    optimizer.step()
    return loss


@dataclass
class _Run:
    """A training run's state, what its checkpoints hold (with the RNG), and its folder."""

    config: TrainConfig
    run_dir: Path
    model: REDNet
    net: torch.nn.Module  # the model as trained: wrapped by DDP and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    step: int = 0
    best: float = -math.inf
    elapsed: float = 0.0

    def save(self, name: str) -> None:
        """Write checkpoint ``run_dir/name`` atomically."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "best_psnr": self.best,
            "elapsed": self.elapsed,
            "config": asdict(self.config),
            "torch_rng": torch.get_rng_state(),
        }
        _save_atomic(state, self.run_dir / name)

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to ``log.jsonl``."""
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def _build_run(
    config: TrainConfig,
    run_dir: Path,
    device: torch.device,
    ddp: _Dist,
    *,
    init: str | Path | None,
    checkpoint: dict[str, Any] | None,
) -> tuple[_Run, dict[str, Any]]:
    """The model (seeded, from ``init`` if given), optimizer and schedule, at ``checkpoint``'s state when
    resuming; and the stored run's meta (empty for a new run or on ranks other than 0)."""
    torch.manual_seed(config.seed)
    model = REDNet(config.model_config())
    if init is not None:
        _load_init(model, Path(init))
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = training_optimizer(model, config.lr, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    run = _Run(config, run_dir, model, model, optimizer, scheduler)
    meta: dict[str, Any] = {}
    if checkpoint is not None:
        _load_model_state(model, checkpoint["model"], str(run_dir / "last.pt"))
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        run.step, run.best, run.elapsed = checkpoint["step"], checkpoint["best_psnr"], checkpoint["elapsed"]
        torch.set_rng_state(checkpoint["torch_rng"])
        meta = _resumed_meta(run_dir, run.step, hardware(device, ddp.world)) if ddp.is_main else {}
    if ddp.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        run.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        run.net = torch.compile(run.net)
    return run, meta


def _loop(
    run: _Run,
    loader: Iterable[tuple[Tensor, Tensor]],
    device: torch.device,
    ddp: _Dist,
    *,
    end: int,
    stop_at_time: float | None,
    bar: Any,
) -> None:
    """Train ``run`` on ``loader``'s batches up to step ``end`` (or the deadline ``stop_at_time``), logging,
    validating and checkpointing as its config says (rank 0)."""
    config, cuda = run.config, device.type == "cuda"
    loss_fn = F.mse_loss if config.loss == "l2" else F.l1_loss
    if config.output == "damage":
        loss_fn = damage_loss
    # The window's loss is summed on the device (float64, as a Python float would be) and read at log
    # steps only: reading it every step would make the CPU wait for the GPU at every step.
    window_loss = torch.zeros((), dtype=torch.float64, device=device)
    window_steps, window_start = 0, time.perf_counter()
    last_tick = time.perf_counter()
    run.net.train()
    for degraded, clean in loader:
        if run.step >= end:
            break
        if stop_at_time is not None and time.time() >= stop_at_time:
            run.save("last.pt")
            break
        degraded, clean = degraded.to(device, non_blocking=cuda), clean.to(device, non_blocking=cuda)
        loss = _step(run.net, run.model, run.optimizer, config, degraded, clean, loss_fn)
        run.scheduler.step()
        run.step += 1
        now = time.perf_counter()
        run.elapsed, last_tick = run.elapsed + now - last_tick, now
        window_loss += loss.detach().double()
        window_steps += 1
        if not ddp.is_main:
            continue
        if bar is not None:
            bar.update(1)
        if run.step % config.log_every == 0 or run.step == end:
            # .item() waits for a GPU to finish the window's steps, so the rate that follows counts them all
            loss_mean, lr = window_loss.item() / window_steps, run.scheduler.get_last_lr()[0]
            rate = window_steps * config.batch_size / (time.perf_counter() - window_start)
            run.log(
                {"step": run.step, "loss": loss_mean, "lr": lr, "patches_per_s": rate, "elapsed": run.elapsed}
            )
            if bar is not None:
                bar.set_postfix(loss=f"{loss_mean:.2e}", lr=f"{lr:.1e}", pps=f"{rate:.1f}")
            window_loss.zero_()
            window_steps, window_start = 0, time.perf_counter()
        if config.val_set and (run.step % config.val_every == 0 or run.step == config.steps):
            scores = _validate(run.model, config, device)
            run.log({"step": run.step, **scores})
            if scores["val_psnr"] > run.best:
                run.best = scores["val_psnr"]
                run.save("best.pt")
            window_start = last_tick = time.perf_counter()
        if run.step % config.ckpt_every == 0 or run.step == end:
            run.save("last.pt")


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
        config = _resumed_config(config, checkpoint)
    device = choose_device(config.device)
    if config.dtype == "auto":
        config = replace(config, dtype="bf16" if native_bf16(device) else "fp32")
    ddp = _init_distributed(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    if stop_at_time is not None and ddp.world > 1:
        raise ValueError("a deadline (stop_at_time) is for one process: ranks could stop at different steps")
    if config.batch_size % ddp.world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the {ddp.world} processes")

    run, meta = _build_run(config, run_dir, device, ddp, init=init, checkpoint=checkpoint)
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
    loader = _batches(config, images, dataset, device, ddp, start=run.step)
    if ddp.is_main:
        meta = meta or {
            "command": command if command is not None else " ".join(sys.argv),
            "hardware": hardware(device, ddp.world),
            "torch": torch.__version__,
            "images": len(dataset.images),
            "init": str(init) if init else None,
            "init_card": _init_card(Path(init)) if init else None,
        }
        _start_run_folder(run_dir, config, meta, run.step)
    bar = None
    if progress and ddp.is_main:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=run.step, unit="step", dynamic_ncols=True)
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    # SIGTERM (kill, a cluster's pre-emption) stops the run like Ctrl-C: last.pt is written first.
    on_term = None
    if threading.current_thread() is threading.main_thread():
        on_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _loop(run, loader, device, ddp, end=end, stop_at_time=stop_at_time, bar=bar)
    except KeyboardInterrupt:
        if ddp.is_main:
            run.save("last.pt")
            log.warning("interrupted at step %d; resume with --resume %s", run.step, run_dir)
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
