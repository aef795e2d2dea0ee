"""What a training run is: :class:`TrainConfig`, one field per ``rednet train`` flag, with the corruptions it
trains on and the model it builds (the loop is :func:`rednet.train.train`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from rednet.data import Corruption, Levels
from rednet.model import REDNetConfig
from rednet.tasks import OVERLAY_DAMAGES, TASKS, task_named

__all__ = ["LEVEL_FIELD", "RENAMED", "TrainConfig"]

LEVEL_FIELD = {name: task.train_level for name, task in TASKS.items()}

RENAMED = {"mask": "damage"}
"""Fields renamed since runs were first saved: old name -> new (inpainting's damage spec was ``mask``, a name
now kept for per-pixel damage maps)."""
"""Task name -> the field of :class:`TrainConfig` that holds its training levels."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. CLI flags map one-to-one to these fields.

    Attributes:
        task: "denoise", "sr", "jpeg", "deblur" or "inpaint"; several joined by "," are mixed per patch;
            tasks joined by ">" are applied in turn to one patch (``Corruption.then``), e.g.
            "denoise>jpeg" (noise, then JPEG) or "deblur>jpeg"; each draws its level from its own field.
        sigma: noise levels on the 0-255 scale, a range "0-75" or a list "10,30,50" (denoise; deblur's
            added noise unless ``deblur_sigma`` is given).
        deblur_sigma: deblur's added noise on the 0-255 scale, when a run that mixes tasks needs it to
            differ from ``sigma`` (the all-corruption model: light noise on its blurs, "0-2.55", while its
            denoising patches draw from "0-75"); "" = ``sigma``.
        scale: SR factors, a list such as "2,3,4".
        quality: JPEG qualities, a range "5-95" or a list.
        kernel: deblur kernel, "gaussian" (25x25, sigma 1.6), "disk" (radius 7) or "gaussian-family" (a
            25x25 Gaussian whose sigma is drawn from ``blur_sigma`` for each patch: a blind deblurrer).
        blur_sigma: the sigma range of the "gaussian-family" kernel, in pixels, e.g. "0.5-3".
        damage: inpainting's damage: "text" (white/black text, as the test), "strokes" (text and scratches in
            random colours), "decoys" (the test's text over an image given antialiased text and clipped
            areas of its own, which stay in the target: what a blind damage model must leave alone),
            "framed" (the test's text over an image given a frame of its own, likewise), or
            pixel-loss rates as a range "0.3-0.8" or a list; several joined by "+"
            are mixed per patch, e.g. "strokes+0-0.8".
        mask_input: the model also takes the mask as a 4th input channel (inpaint only).
        output: "image" (a restoring model) or "damage" (inpaint only): the model learns where the damage is,
            (N, 1, H, W) probabilities, by binary cross-entropy against the true mask, damaged pixels
            weighted by ``rednet.inpaint.DAMAGE_WEIGHT`` (a missed pixel of text costs more than one filled
            needlessly); it is validated by the PSNR of its mask filled by the shipped ``inpaint-mask``.
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
            AVX-512 or AMX: ``rednet.devices.native_bf16``), else fp32; the run folder stores the choice.
        channels_last: use the channels-last memory format (faster on CPU with oneDNN, and with bf16).
        compile: ``torch.compile`` the model.
        val_set: benchmark name or folder for validation; "" = no validation.
        val_level: the level validated at (e.g. 25 for denoise sigma, 3 for sr, 10 for jpeg, "text",
            "decoys" or "framed" for inpaint).
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
    deblur_sigma: str = ""
    scale: str = "2,3,4"
    quality: str = "5-95"
    kernel: str = "gaussian"
    blur_sigma: str = "0.5-3"
    damage: str = "text"
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
        for task in (t for chain in self.chains for t in chain):
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
    def chains(self) -> list[list[str]]:
        """The items of ``task``, each a list of the tasks applied in turn (most are one task)."""
        return [[t.strip() for t in item.split(">")] for item in self.task.split(",") if item.strip()]

    @property
    def tasks(self) -> list[str]:
        """The first task of each item of ``task`` (what validation and the model card go by)."""
        return [chain[0] for chain in self.chains]

    def corruptions(self) -> list[Corruption]:
        """The training corruptions: those of each item of ``task``; a chain "a>b" is a's, each followed
        by b's (``Corruption.then``), every task drawing from its own level field."""
        out = []
        for chain in self.chains:
            tail = None
            for task in reversed(chain[1:]):
                tail = replace(self._corruptions(task)[0], then=tail)
            out += [replace(c, then=tail) for c in self._corruptions(chain[0])]
        return out

    def _corruptions(self, task: str) -> list[Corruption]:
        """One task's corruptions: one, or for inpainting one per damage mixed in."""
        if not task_named(task).masks:
            spec = getattr(self, LEVEL_FIELD[task])
            if task_named(task).uses_kernel and self.deblur_sigma:
                spec = self.deblur_sigma
            kernel = self.kernel if task_named(task).uses_kernel else ""
            blur = Levels.parse(self.blur_sigma)
            return [Corruption(task, Levels.parse(spec), kernel=kernel, blur_sigma=blur)]
        out = []
        with_mask = self.mask_input or self.output == "damage"  # an input, or the target
        for kind in self.damage.split("+"):
            kind = kind.strip()
            if kind in OVERLAY_DAMAGES:
                out.append(Corruption(task, Levels(values=(0.0,)), damage=kind, with_mask=with_mask))
            else:
                out.append(Corruption(task, Levels.parse(kind), damage="rate", with_mask=with_mask))
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
        """Build from a dict (a TOML file, a checkpoint); unknown keys are an error. A checkpoint written
        before a field was renamed (:data:`RENAMED`) is read under the new name."""
        values = {RENAMED.get(k, k): v for k, v in values.items()}
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
