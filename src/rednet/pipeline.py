"""Restore one image: the path that ``rednet restore`` and ``rednet serve`` share.

:func:`choose_models` picks what restores (a shipped model by name, or for blind inpainting the damage model
and the mask-aware model that fills what it finds); :func:`restore_image` runs the task's pre-restore step
(SR's bicubic enlargement, of the alpha channel too), the damage finding, and the model. Reading and writing
files, queues and flags stay with the command line and the web app.

Images are (1, C, H, W) float32 in [0, 1]; masks (1, 1, H, W), 1 = damaged pixel (to fill), 0 = known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from rednet import zoo
from rednet.infer import restore
from rednet.inpaint import find_damage
from rednet.io import ImageInfo
from rednet.model import REDNet
from rednet.tasks import Task

__all__ = ["Choice", "Restored", "choose_models", "restore_image"]


@dataclass(frozen=True)
class Choice:
    """What restores an image.

    Attributes:
        model: the shipped model's name.
        detector: blind inpainting in two steps: the damage model (its name) whose mask ``model`` fills;
            None otherwise.
    """

    model: str
    detector: str | None = None


def choose_models(
    task: Task,
    channels: int,
    *,
    model: str | None = None,
    fast: bool = False,
    kernel: str | None = None,
    masked: bool = False,
    exact_variant: bool = True,
) -> Choice:
    """The shipped model(s) that restore an image of ``channels`` (1 or 3) for ``task``.

    Inpainting with no model named and no mask given is blind and, when both are shipped, takes two steps:
    the damage model finds the damage and the mask-aware model fills it.

    Args:
        task: the task.
        channels: the image's channels; a model for them is preferred.
        model: a shipped model's name (None: the task's default).
        fast: the strided model.
        kernel: deblur: the kernel whose own model is wanted (None: the blind deblurrer).
        masked: inpaint: a mask is given, so the mask-aware model fills it.
        exact_variant: ``rednet restore``: the model of exactly that kernel or mask variant, and a fast
            model is never blind (a ValueError when none is shipped); False (the web API, which takes no
            kernel and no mask): the blind model if there is one, else any of the task's, and blind
            inpainting whenever no model is named.
    """
    if not exact_variant:
        pair = zoo.detect_and_fill() if task.masks and not model else None
        if pair:
            return Choice(pair[1], pair[0])
        return Choice(model or zoo.default_model(task.name, channels, fast=fast, variant=None))
    variant = (kernel or "") if task.uses_kernel else ""
    variant = "mask" if task.masks and masked else variant
    detector, pair = None, zoo.detect_and_fill()
    if task.masks and not (masked or model or fast) and pair:
        detector, variant = pair[0], "mask"
    return Choice(model or zoo.default_model(task.name, channels, fast=fast, variant=variant), detector)


@dataclass(frozen=True)
class Restored:
    """One restored image.

    Attributes:
        image: (1, C, H', W') the model's output (H', W' = the input's, times the scale for SR).
        info: the input's file info, with its alpha channel (if any) put through the same pre-restore step.
        model_input: (1, C, H', W') what the model was given (after SR's enlargement).
        mask: the mask the model was given (found or given), 1 = damaged; None when it took none.
    """

    image: Tensor
    info: ImageInfo
    model_input: Tensor
    mask: Tensor | None


def restore_image(
    model: REDNet,
    x: Tensor,
    info: ImageInfo,
    task: Task | None,
    level: Any,
    *,
    detector: REDNet | None = None,
    mask: Tensor | None = None,
    tile: int | str = "auto",
    ensemble: bool = False,
    bf16: bool = False,
    on_tile: Callable[[int, int], None] | None = None,
    on_damage: Callable[[Tensor], None] | None = None,
) -> Restored:
    """Restore one decoded image ``x`` (1, C, H, W) in [0, 1] with ``model``.

    Args:
        model: the model that restores.
        x: the image as read (``rednet.io.read_image``).
        info: its file info (alpha channel, bit depth, format), carried to the result.
        task: the task; its pre-restore step runs first (SR: bicubic up by ``level``, the scale). None: a
            model for any damage (``zoo.ANY_TASK``) restores the image as it is.
        level: the task's level (``--scale`` for SR; unused by the others' pre-restore step).
        detector: blind inpainting: the damage model that finds the mask ``model`` fills.
        mask: the damage mask (1, 1, H, W), 1 = damaged, for a mask-aware model (ignored with
            ``detector``).
        tile, ensemble, bf16, on_tile: as :func:`rednet.infer.restore`.
        on_damage: called with the found mask before the model fills it (``restore --save-mask``).
    """
    if task is not None:
        x = task.pre_restore(x, level)
        if info.alpha is not None:
            info = replace(info, alpha=task.pre_restore(info.alpha, level).clamp(0, 1))
    if detector is not None:
        mask = find_damage(detector, x, tile=tile, bf16=bf16)
        if on_damage is not None:
            on_damage(mask)
    y = restore(model, x, mask=mask, tile=tile, ensemble=ensemble, bf16=bf16, on_tile=on_tile)
    return Restored(y, info, x, mask)
