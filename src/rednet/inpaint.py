"""Inpainting without a mask: finding the damage, and the loss a damage model learns it with.

Blind inpainting runs in two steps (:mod:`rednet.pipeline`): a damage model (``config.output == "damage"``,
the shipped ``inpaint-detect``) gives per-pixel probabilities, :func:`find_damage` turns them into a mask,
and a mask-aware model fills it (its first step, :func:`rednet.model.fill_missing`, lives with the model).
A damage model is trained with :func:`damage_loss`.

Masks here are (N, 1, H, W) float32; ``find_damage`` returns 1 = pixel known, 0 = pixel to fill, the
convention of mask-aware models; ``damaged`` maps are 1 = damaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from rednet.infer import restore
from rednet.model import REDNet

__all__ = [
    "DAMAGE_THRESHOLD",
    "DAMAGE_WEIGHT",
    "FRAME_COVER",
    "FRAME_RUN",
    "FRAME_TOLERANCE",
    "FRAME_WIDTH",
    "damage_loss",
    "find_damage",
    "flat_colour",
    "keep_frame",
]

DAMAGE_WEIGHT = 4.0
"""Weight of the damaged pixels in a damage model's cross-entropy (the intact ones weigh 1)."""


def damage_loss(probability: Tensor, damaged: Tensor) -> Tensor:
    """A damage model's loss: cross-entropy of (N, 1, H, W) probabilities against the true damage (1 =
    damaged), the damaged pixels weighted by :data:`DAMAGE_WEIGHT`."""
    weight = 1 + (DAMAGE_WEIGHT - 1) * damaged
    return F.binary_cross_entropy(probability.clamp(1e-6, 1 - 1e-6), damaged, weight=weight)


def flat_colour(
    damaged: Tensor, x: Tensor, tolerance: float, *, neighbours: int = 2, reach: int = 3
) -> Tensor:
    """Keep the found damage painted in one colour: overlaid text and scratches are flat, texture is not.

    Two neighbouring pixels (8-connected) *match* where both are damaged and differ by at most
    ``tolerance`` in every channel. A damaged pixel is kept where it matches at least ``neighbours`` of its
    8 neighbours (the inside of a stroke), then, ``reach`` times, where it matches a kept pixel (the ends
    and corners of strokes). The rest, the specks a damage model finds in fur, foliage or grain, becomes
    known.

    Args:
        damaged: (N, 1, H, W) float32, 1 = damaged.
        x: (N, C, H, W) float32 in [0, 1], the damaged image.
        tolerance: the largest colour difference inside one stroke, on the [0, 1] scale (8/255 keeps
            the strokes of a JPEG saved at quality 90 or more).
        neighbours: matching neighbours a pixel needs to be kept at first, 1-8.
        reach: how many pixels the kept strokes then extend along matching pixels.

    Returns:
        (N, 1, H, W) float32, 1 = damaged, a subset of ``damaged``.
    """
    h, w = x.shape[-2:]
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    shifts = [(dy, dx) for dy in (0, 1, 2) for dx in (0, 1, 2) if (dy, dx) != (1, 1)]
    dp = torch.nn.functional.pad(damaged, (1, 1, 1, 1))
    match = [  # (N, 1, H, W) per neighbour: both damaged, same colour
        damaged
        * dp[..., dy : dy + h, dx : dx + w]
        * ((xp[..., dy : dy + h, dx : dx + w] - x).abs().amax(dim=1, keepdim=True) <= tolerance)
        for dy, dx in shifts
    ]
    kept = (sum(match) >= neighbours).float()
    for _ in range(reach):
        kp = torch.nn.functional.pad(kept, (1, 1, 1, 1))
        for m, (dy, dx) in zip(match, shifts, strict=True):
            kept = torch.maximum(kept, m * kp[..., dy : dy + h, dx : dx + w])
    return kept


FRAME_RUN = 32
"""The shortest line along an edge, in pixels, that :func:`keep_frame` takes for part of a frame (16, 32
and 64 did the same on the validation images, docs/training.md)."""

FRAME_COVER = 0.5
"""The fraction of an edge's length that such lines must cover to be a frame (:func:`keep_frame`)."""

FRAME_WIDTH = 4
"""Default width, in pixels, of the band along each edge where :func:`find_damage` keeps a frame."""

FRAME_TOLERANCE = 8 / 255
"""The largest difference between two neighbours of one frame line, per channel ([0, 1] scale)."""


def _lines(x: Tensor, length: int, dim: int, tolerance: float) -> Tensor:
    """The pixels of ``x`` that lie in a line of at least ``length`` pixels along ``dim`` (-1: rows, -2:
    columns) in which no two neighbours differ by more than ``tolerance`` in any channel.

    Args:
        x: (N, C, H, W) float32 in [0, 1].

    Returns:
        (N, 1, H, W) float32, 1 = in such a line.
    """
    n, _, h, w = x.shape
    if x.shape[dim] < length:
        return x.new_zeros(n, 1, h, w)
    ahead = (..., slice(1, None)) if dim == -1 else (..., slice(1, None), slice(None))
    behind = (..., slice(None, -1)) if dim == -1 else (..., slice(None, -1), slice(None))
    links = ((x[ahead] - x[behind]).abs().amax(dim=1, keepdim=True) <= tolerance).float()  # neighbours
    size = (1, length - 1) if dim == -1 else (length - 1, 1)
    whole = (F.avg_pool2d(links, size, stride=1) > 1 - 1e-6).float()  # lines of `length` pixels
    pad = (length - 1, length - 1, 0, 0) if dim == -1 else (0, 0, length - 1, length - 1)
    window = (1, length) if dim == -1 else (length, 1)
    return F.max_pool2d(F.pad(whole, pad), window, stride=1)  # every pixel of those lines


def keep_frame(
    damaged: Tensor,
    x: Tensor,
    width: int,
    *,
    run: int = FRAME_RUN,
    cover: float = FRAME_COVER,
    tolerance: float = FRAME_TOLERANCE,
) -> Tensor:
    """Keep the image's own frame: lines along its edges (scans, screenshots, LIVE1's one-pixel black
    border) are not damage, however much they look like scratches to a damage model.

    A frame runs along most of an edge in one colour (slowly changing colours count as one). In each of
    the ``width`` outermost rows and columns of ``x`` where one-colour lines of at least ``run`` pixels
    (:func:`_lines`) cover at least ``cover`` of its length, the found damage on those lines is dropped.
    What stays is damage that differs from the line it lies on: overlaid text and scratches of another
    colour, lost pixels among known ones (a lost pixel on a near-black edge, which becomes known, is
    wrong by at most ``tolerance``).

    Args:
        damaged: (N, 1, H, W) float32, 1 = damaged.
        x: (N, C, H, W) float32 in [0, 1], the damaged image.
        width: rows and columns looked at along each edge, in pixels (0 = none).
        run: the shortest one-colour line along an edge that can be part of a frame, in pixels.
        cover: the fraction of a row's or column's length such lines must cover.
        tolerance: the largest difference between neighbours of one line, per channel, [0, 1] scale.

    Returns:
        (N, 1, H, W) float32, 1 = damaged, a subset of ``damaged``.
    """
    if width <= 0:
        return damaged
    h, w = damaged.shape[-2:]
    frame = torch.zeros_like(damaged)
    for rows in (slice(0, width), slice(max(h - width, 0), h)):  # only the bands are looked at
        lines = _lines(x[..., rows, :], run, -1, tolerance)
        frame[..., rows, :] = torch.maximum(
            frame[..., rows, :], lines * (lines.mean(-1, keepdim=True) >= cover)
        )
    for cols in (slice(0, width), slice(max(w - width, 0), w)):
        lines = _lines(x[..., cols], run, -2, tolerance)
        frame[..., cols] = torch.maximum(frame[..., cols], lines * (lines.mean(-2, keepdim=True) >= cover))
    return damaged * (1 - frame)


DAMAGE_THRESHOLD = 0.55
"""Default probability above which a damage model's pixel counts as damaged: for the shipped
``inpaint-detect``, the best mean of the validation text and decoys PSNR of 0.45, 0.55 and 0.65
(docs/training.md)."""


def find_damage(
    detector: REDNet,
    x: Tensor,
    *,
    threshold: float = DAMAGE_THRESHOLD,
    grow: int = 0,
    tolerance: float | None = None,
    frame: int = FRAME_WIDTH,
    frame_run: int = FRAME_RUN,
    ensemble: bool = True,
    tile: int | None | str = "auto",
    bf16: bool = False,
) -> Tensor:
    """The mask of what a damage model (``config.output == "damage"``) finds damaged in ``x``: the input of
    a mask-aware inpainting model, for blind inpainting in two steps.

    Args:
        detector: a damage model.
        x: (N, C, H, W) float32 in [0, 1].
        threshold: a pixel is damaged where the probability is above this (:data:`DAMAGE_THRESHOLD`).
        tolerance: if given, keep only damage painted in one colour, to this tolerance on the [0, 1]
            scale (:func:`flat_colour`), before growing. Off by default: on the validation images it
            dropped more false alarms than text but cost more than it gained (docs/training.md).
        frame, frame_run: keep the image's frame, lines of at least ``frame_run`` pixels in the ``frame``
            rows and columns along each edge (:func:`keep_frame`), before growing; ``frame`` 0 = off.
        grow: also mark the pixels within this many pixels of a damaged one (the soft edges of text).
        ensemble: average the probabilities over the 8 flips/rotations (the default: +0.09 dB on the
            validation images for twice the time of the whole two-step restore, docs/training.md).
        tile, bf16: as :func:`rednet.infer.restore`.

    Returns:
        (N, 1, H, W) float32, 1 = pixel damaged (to fill), 0 = known, on ``x``'s device.
    """
    if detector.config.output != "damage":
        raise ValueError(
            "this model restores images; finding damage needs a damage model (e.g. inpaint-detect)"
        )
    probability = restore(detector, x, ensemble=ensemble, tile=tile, bf16=bf16)
    damaged = (probability > threshold).float()
    image = x.to(damaged.device, torch.float32)
    if tolerance is not None:
        damaged = flat_colour(damaged, image, tolerance)
    damaged = keep_frame(damaged, image, frame, run=frame_run)
    if grow > 0:
        damaged = torch.nn.functional.max_pool2d(damaged, 2 * grow + 1, stride=1, padding=grow)
    return damaged
