"""The five restoration tasks, each in one place: its level, how it degrades a clean image, how the protocol
scores it, and what ``restore`` does to an input before the model sees it.

Every module that used to test ``task == "sr"`` asks the :class:`Task` instead
(``task_named(name).enlarges``), so a task's recipe is written once, here. Images are (N, C, H, W) float32
in [0, 1]; noise levels (sigma) are on the 0-255 scale.

Levels, per task (the flag of ``rednet eval``/``degrade``/``restore`` and the field of ``EvalConfig``):

* denoise: ``sigma`` (float, 0-255 scale).
* sr: ``scale`` (int, 2, 3 or 4).
* jpeg: ``quality`` (int, 1-100).
* deblur: ``kernel`` (a blur name, see :func:`kernel_by_name`), with an optional added noise ``sigma``.
* inpaint: ``damage``, what is damaged: "text", "decoys", "framed", "strokes" (training only) or a
  pixel-loss rate in (0, 1). (A ``mask`` is always a per-pixel map of the damage, see :class:`Corrupted`.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from rednet import degrade, overlays

__all__ = [
    "KERNELS",
    "OVERLAY_DAMAGES",
    "TASKS",
    "TASK_NAMES",
    "TEXT_DAMAGES",
    "Blur",
    "Corrupted",
    "RestoreLevel",
    "Task",
    "inpaint_damage",
    "kernel_by_name",
    "parse_damage",
    "task_named",
]

KERNELS = ("gaussian", "disk")
"""The named blur kernels of the official demo (and "gaussian-S", a family, see :func:`kernel_by_name`)."""


TEXT_DAMAGES = ("text", "decoys", "framed")
"""The inpainting damages that overlay the test's text: on the image as it is, on the image given text of
its own, on the image given a frame of its own (:mod:`rednet.overlays`)."""

OVERLAY_DAMAGES = (*TEXT_DAMAGES, "strokes")
"""Every overlaid inpainting damage; "strokes" (text and scratches in random colours) is for training."""


def parse_damage(damage: str | None) -> float | None:
    """ "text", "decoys" or "framed" -> None (a text overlay); "0.5" -> 0.5 (pixel-loss rate in (0, 1))."""
    if damage in TEXT_DAMAGES:
        return None
    try:
        rate = float(damage)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"damage must be 'text', 'decoys', 'framed' or a pixel-loss rate in (0, 1), got {damage!r}"
        ) from None
    if not 0 < rate < 1:
        raise ValueError(f"damage rate must be in (0, 1), got {rate}")
    return rate


def kernel_by_name(name: str) -> Tensor:
    """A blur kernel (K, K) by name.

    The official demo's kernels: "gaussian" = fspecial('gaussian', 25, 1.6), "disk" = ('disk', 7); and
    "gaussian-S", a 25 x 25 Gaussian of sigma S pixels (0 < S <= 4), for the blind deblurrer's family.
    """
    if name == "gaussian":
        return degrade.gaussian_kernel(25, 1.6)
    if name == "disk":
        return degrade.disk_kernel(7)
    match = re.fullmatch(r"gaussian-(\d+(?:\.\d+)?)", name)
    if match and 0 < float(match.group(1)) <= 4:
        return degrade.gaussian_kernel(25, float(match.group(1)))
    raise ValueError(
        f"kernel must be one of {', '.join(KERNELS)} or gaussian-S (sigma S in (0, 4]), got {name!r}"
    )


@dataclass
class Corrupted:
    """A clean image, its corruption and what a method may know about it.

    Attributes:
        clean: (1, C, H, W) ground truth in [0, 1] (cropped for SR).
        degraded: (1, C, H, W) the method's input (unclipped for noise).
        mask: (1, 1, H, W) inpainting's damage mask, 1 = damaged, 0 = kept; None for other tasks.
    """

    clean: Tensor
    degraded: Tensor
    mask: Tensor | None = None


@dataclass(frozen=True)
class Blur:
    """The level of a deblurring: the kernel (K, K) that blurs and the noise added after it (0-255 scale)."""

    kernel: Tensor
    sigma: float = 0.0


def _damage(clean: Tensor, damage: str | float, generator: np.random.Generator) -> Corrupted:
    """Inpainting's degradation: "text" (white/black text), "decoys" (that text over an image given text of
    its own, which becomes the ground truth), "framed" (that text over an image given a frame of its own,
    likewise), "strokes" (text and scratches in random colours) or a pixel-loss rate (float). The mask is 1
    where a pixel is damaged."""
    if damage == "decoys":
        return Corrupted(*overlays.text_over(clean, overlays.content_text, generator=generator))
    if damage == "framed":
        return Corrupted(*overlays.text_over(clean, overlays.frame_lines, generator=generator))
    if damage == "text":
        return Corrupted(clean, *overlays.text_overlay(clean, generator=generator))
    if damage == "strokes":
        return Corrupted(clean, *overlays.scratches_and_text(clean, generator=generator))
    return Corrupted(clean, *overlays.drop_pixels(clean, float(damage), generator=generator))


def inpaint_damage(clean: Tensor, damage: str, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Damage one clean image (1, C, H, W) in [0, 1] as the inpainting ``damage`` setting says: "text"
    (white/black text), "decoys" (that text over an image given text of its own, which becomes the ground
    truth), "framed" (that text over an image given a frame of its own, likewise) or a pixel-loss rate
    such as "0.5". Returns (clean, degraded, mask), mask 1 = damaged."""
    c = _damage(clean, _damage_level(damage), rng)
    return c.clean, c.degraded, c.mask  # type: ignore[return-value]


def _damage_level(damage: str) -> str | float:
    """An inpainting setting as :func:`_damage` takes it: an overlay's name as it is, a rate as a float."""
    rate = parse_damage(damage)
    return damage if rate is None else rate


def _check_scale(scale: Any) -> None:
    if scale not in (2, 3, 4):
        raise ValueError(f"scale must be 2, 3 or 4, got {scale}")


def _check_quality(quality: Any) -> None:
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be 1..100, got {quality}")


def _check_kernel(kernel: Any) -> None:
    kernel_by_name(str(kernel))


def _check_damage(damage: Any) -> None:
    parse_damage(damage)


def _no_check(_: Any) -> None:
    return None


@dataclass(frozen=True)
class RestoreLevel:
    """The level that ``rednet restore`` and the web API's ``level`` field take for a task.

    Attributes:
        name: its name (``sigma``, ``scale``, ``quality``), None when the task takes none.
        help: what it means, in a few words.
        required: whether a restore needs it (SR's enlargement factor).
        low, high: its valid range (inclusive), if it has one.
        choices: its valid values, if it has a list.
    """

    name: str | None
    help: str
    required: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[int, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The web API's description of the level (``GET /v1/models``)."""
        out: dict[str, Any] = {"name": self.name}
        if self.choices:
            out["choices"] = list(self.choices)
        if self.low is not None:
            out.update(min=self.low, max=self.high)
        return {**out, "required": self.required, "help": self.help}


def _same(x: Tensor, _level: Any) -> Tensor:
    return x


def _enlarge(x: Tensor, scale: Any) -> Tensor:
    return degrade.imresize(x, float(scale))


def _shrink(x: Tensor, scale: Any) -> Tensor:
    return degrade.imresize(degrade.crop_to_multiple(x, scale), 1 / scale)


@dataclass(frozen=True)
class Task:
    """One corruption and everything rednet does differently for it.

    Attributes:
        name: "denoise", "sr", "jpeg", "deblur" or "inpaint" (``--task``).
        level: the setting that a degradation needs, the field of ``EvalConfig`` and the flag of
            ``rednet eval``/``degrade``: ``sigma``, ``scale``, ``quality``, ``kernel`` or ``damage``.
        train_level: the field of ``TrainConfig`` that holds its training levels (deblur: ``sigma``, the
            added noise; its kernel is ``TrainConfig.kernel``).
        check_level: raises ValueError when the value of ``level`` is not valid.
        degrade_fn: (clean (1, C, H, W) in [0, 1], level value, numpy generator) -> :class:`Corrupted`, the
            protocol's model input (evaluation and training).
        color_channel, gray_channel: the channel the protocol restores and scores on colour and gray sets.
        enlarges: restore enlarges its input by ``scale`` first (bicubic), SR's pre-restore step; the
            protocol shaves ``scale`` border pixels; what a user has is the small image.
        uses_kernel: degraded with a blur kernel (``--kernel``); the shipped models are one per kernel.
        masks: the degradation leaves a mask of what was lost (inpainting); models may take it.
        integer_levels: training levels are drawn as integers (scale, quality).
        margin: pixels cut around a training patch before degrading it, so that no patch edge shows in it.
        restore_level: the level ``rednet restore`` and the web API take.
        level_recorded_only: the shipped models are blind: a restore's level is only recorded.
        notes: what the protocol records about its input (``evaluate``'s ``protocol``), beyond the common.
        table_levels: the levels of the published tables (and of ``rednet report fast``); () when its
            levels are named settings (a kernel, a damage).
    """

    name: str
    level: str
    train_level: str
    check_level: Callable[[Any], None]
    degrade_fn: Callable[[Tensor, Any, np.random.Generator], Corrupted]
    color_channel: str
    gray_channel: str
    restore_level: RestoreLevel
    enlarges: bool = False
    uses_kernel: bool = False
    masks: bool = False
    integer_levels: bool = False
    margin: int = 16
    level_recorded_only: bool = False
    notes: tuple[tuple[str, str], ...] = ()
    table_levels: tuple[int, ...] = ()

    def degrade(self, clean: Tensor, level: Any, *, generator: np.random.Generator) -> Corrupted:
        """Degrade one clean image (1, C, H, W) in [0, 1] at ``level`` (see :meth:`level_of`): the
        protocol's model input, e.g. for SR the bicubic up-sampling of the 8-bit LR image, with the clean
        image cropped."""
        return self.degrade_fn(clean, level, generator)

    def degrade_file(self, image: Tensor, level: Any, *, generator: np.random.Generator) -> Corrupted:
        """What a user would have (``rednet degrade``): :meth:`degrade`, but for SR the small image itself,
        which ``rednet restore --task sr`` takes back up."""
        if self.enlarges:
            return Corrupted(image, _shrink(image, level))
        return self.degrade(image, level, generator=generator)

    def shrink(self, x: Tensor, level: Any) -> Tensor:
        """The geometric part of ``degrade_file`` alone (for an alpha channel): SR's bicubic down-sizing."""
        return _shrink(x, level) if self.enlarges else _same(x, level)

    def pre_restore(self, x: Tensor, level: Any) -> Tensor:
        """What restore does to an input (N, C, H, W) before the model sees it: SR's bicubic enlargement by
        ``level`` (the scale); nothing for the others."""
        return _enlarge(x, level) if self.enlarges else _same(x, level)

    def level_of(self, settings: Any) -> Any:
        """The level that :meth:`degrade` takes, from an object with ``sigma``, ``scale``, ``quality``,
        ``kernel`` and ``damage`` attributes (an ``EvalConfig``, parsed flags)."""
        value = getattr(settings, self.level)
        if self.uses_kernel:
            return Blur(kernel_by_name(str(value)), float(settings.sigma or 0))
        if self.masks:
            return _damage_level(str(value))
        return int(value) if self.integer_levels else float(value)

    def channel(self, color: bool) -> str:
        """The channel the protocol scores for a set whose images are colour (``color``) or gray."""
        return self.color_channel if color else self.gray_channel

    def shave(self, scale: Any) -> int:
        """Border pixels the protocol ignores: SR's scale, else 0."""
        return int(scale) if self.enlarges else 0


def _noise(clean: Tensor, sigma: float, generator: np.random.Generator) -> Corrupted:
    return Corrupted(clean, degrade.gaussian_noise(clean, sigma, generator=generator))


def _bicubic(clean: Tensor, scale: int, _generator: np.random.Generator) -> Corrupted:
    return Corrupted(*degrade.bicubic_sr(clean, scale))


def _jpeg(clean: Tensor, quality: int, _generator: np.random.Generator) -> Corrupted:
    return Corrupted(clean, degrade.jpeg(clean, quality))


def _blur(clean: Tensor, blur: Blur, generator: np.random.Generator) -> Corrupted:
    return Corrupted(clean, degrade.blur(clean, blur.kernel, sigma=blur.sigma, generator=generator))


_NO_LEVEL = RestoreLevel(None, "no level")

_TASKS = (
    Task(
        "denoise",
        level="sigma",
        train_level="sigma",
        check_level=_no_check,
        degrade_fn=_noise,
        color_channel="rgb",
        gray_channel="gray",
        restore_level=RestoreLevel("sigma", "noise std, 0-255 scale", low=0, high=255),
        margin=0,
        level_recorded_only=True,
        table_levels=(15, 25, 50),
    ),
    Task(
        "sr",
        level="scale",
        train_level="scale",
        check_level=_check_scale,
        degrade_fn=_bicubic,
        color_channel="y",
        gray_channel="gray",
        restore_level=RestoreLevel("scale", "enlargement factor", required=True, choices=(2, 3, 4)),
        enlarges=True,
        integer_levels=True,
        notes=(("sr_input", "MATLAB-compatible bicubic down (LR rounded to 8 bits), then bicubic up"),),
        table_levels=(2, 3, 4),
    ),
    Task(
        "jpeg",
        level="quality",
        train_level="quality",
        check_level=_check_quality,
        degrade_fn=_jpeg,
        color_channel="y",
        gray_channel="gray",
        restore_level=RestoreLevel("quality", "JPEG quality of the input", low=1, high=100),
        integer_levels=True,
        level_recorded_only=True,
        notes=(("jpeg_codec", "Pillow (libjpeg) at the given quality"),),
        table_levels=(10, 20, 30, 40),
    ),
    Task(
        "deblur",
        level="kernel",
        train_level="sigma",
        check_level=_check_kernel,
        degrade_fn=_blur,
        color_channel="rgb",
        gray_channel="rgb",
        restore_level=_NO_LEVEL,
        uses_kernel=True,
    ),
    Task(
        "inpaint",
        level="damage",
        train_level="damage",
        check_level=_check_damage,
        degrade_fn=_damage,
        color_channel="rgb",
        gray_channel="rgb",
        restore_level=_NO_LEVEL,
        masks=True,
        margin=0,
    ),
)

TASKS: dict[str, Task] = {t.name: t for t in _TASKS}
"""The tasks by name, in the order the CLI lists them."""

TASK_NAMES: tuple[str, ...] = tuple(TASKS)
"""The task names of ``--task``: denoise, sr, jpeg, deblur, inpaint."""


def task_named(name: str) -> Task:
    """The task called ``name``; ValueError naming the choices for an unknown name."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASK_NAMES)}, got {name!r}")
    return TASKS[name]
