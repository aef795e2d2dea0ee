"""Inference: restore images of any size with a RED-Net, exactly tiled, optionally self-ensembled.

* :func:`tiled` splits the output into blocks of ``tile`` x ``tile`` pixels (a strip thinner than ``tile``:
  blocks of its whole height or width, of the same area, :func:`tile_shape`) and runs the network on each
  block plus a margin of at least half the receptive field (61 px for RED30), clipped at the image border.
  Every output pixel then sees exactly the input it would see in one whole-image pass, so the tiled result
  equals the whole-image result (to float rounding), while memory is bounded by the tile's area and time
  follows the pixels.
* :func:`self_ensemble` is the paper's self-ensemble (§2.4, ``netforward.m``): the 8 flips/rotations of the
  input are restored, turned back and averaged.
* :func:`restore` applies a model to a batch whose channels may differ from the model's: a colour image
  with a 1-channel (gray / Y) model is restored on Y of YCbCr (BT.601, as MATLAB's ``rgb2ycbcr``) and keeps
  its Cb and Cr, the convention of the SR and JPEG literature; a gray image with an RGB model is restored as
  three equal channels and averaged back to one.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor

from rednet.metrics import rgb_to_ycbcr, ycbcr_to_rgb
from rednet.model import REDNet, receptive_field

__all__ = [
    "DIHEDRAL",
    "auto_tile",
    "margin_for",
    "restore",
    "reuse_freed_memory",
    "self_ensemble",
    "tile_shape",
    "tiled",
]

Fn = Callable[[Tensor], Tensor]

DIHEDRAL: list[tuple[int, bool]] = [(k, flip) for flip in (False, True) for k in range(4)]
"""The 8 transforms of the self-ensemble: rotate by ``k`` quarter turns after an optional left-right flip."""


def _forward_transform(x: Tensor, k: int, flip: bool) -> Tensor:
    return torch.rot90(x.flip(-1) if flip else x, k, dims=(-2, -1))


def _inverse_transform(y: Tensor, k: int, flip: bool) -> Tensor:
    y = torch.rot90(y, -k, dims=(-2, -1))
    return y.flip(-1) if flip else y


def self_ensemble(fn: Fn, x: Tensor) -> Tensor:
    """Self-ensemble: the mean of ``inverse(fn(transform(x)))`` over the 8 dihedral transforms.

    Args:
        fn: a restoration function of (N, C, H, W) tensors that keeps H and W (the channels may change).
        x: (N, C, H, W) input.
    """
    total = None
    for k, flip in DIHEDRAL:
        y = _inverse_transform(fn(_forward_transform(x, k, flip).contiguous()), k, flip).float()
        total = y if total is None else total.add_(y)
    return total / len(DIHEDRAL)


def margin_for(model: REDNet) -> int:
    """Input pixels needed on each side of an output block for exact tiling: half the receptive field,
    rounded up to a multiple of the stride (strided blocks must stay on the down-sampling grid)."""
    s = model.config.stride
    half = receptive_field(model.config) // 2 + (s - 1)
    return math.ceil(half / s) * s


def tile_shape(h: int, w: int, tile: int, align: int = 1) -> tuple[int, int]:
    """(height, width) of the output blocks of an ``h`` x ``w`` image for the tile side ``tile``.

    Blocks are ``tile`` x ``tile``, except in a strip thinner than ``tile``: there a block is the strip's
    whole height (or width) and as long as the area ``tile * tile`` allows. Cut into squares, a 3 x 100000
    strip at tile 512 is 196 blocks, each of 3 x 634 input pixels for 3 x 512 output pixels (RED30's
    margin), and per-block costs dominate; by area it is 2 blocks, and time follows the pixels. Sides are
    rounded up to a multiple of ``align`` (the stride of a strided model).
    """
    if h < tile:
        shape = (h, max(tile, tile * tile // h))
    elif w < tile:
        shape = (max(tile, tile * tile // w), w)
    else:
        shape = (tile, tile)
    return (shape[0] + (-shape[0]) % align, shape[1] + (-shape[1]) % align)


def tiled(
    fn: Fn,
    x: Tensor,
    *,
    tile: int,
    margin: int,
    align: int = 1,
    progress: bool = False,
    on_tile: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Apply ``fn`` block by block so that the result equals ``fn(x)`` for a translation-equivariant ``fn``
    whose output pixels depend on at most ``margin`` input pixels on each side.

    Args:
        fn: (N, C, h, w) -> (N, C', h, w).
        x: (N, C, H, W) input.
        tile: side of the output blocks, which hold ``tile * tile`` output pixels (in a strip thinner than
            ``tile``, of its whole height or width: :func:`tile_shape`), each computed from them plus at most
            ``margin`` pixels on each side.
        margin: context pixels on each side of a block (clipped at the image border, where the whole-image
            pass sees the same border).
        align: block windows start on multiples of this (the stride of a strided model).
        progress: show a progress bar over the blocks.
        on_tile: called as ``on_tile(done, total)`` with 0 done before the first block and after each block
            (in the caller's thread; an exception it raises stops the work).

    Returns:
        (N, C', H, W) float32.
    """
    if tile < 1 or margin < 0:
        raise ValueError(f"tile must be >= 1 and margin >= 0, got tile={tile}, margin={margin}")
    n, c, h, w = x.shape
    tile_h, tile_w = tile_shape(h, w, tile, align)
    out = None
    blocks = [(top, left) for top in range(0, h, tile_h) for left in range(0, w, tile_w)]
    iterator = blocks
    if progress and len(blocks) > 1:
        from tqdm import tqdm

        iterator = tqdm(blocks, desc="tiles", unit="tile", leave=False)
    if on_tile is not None:
        on_tile(0, len(blocks))
    for done, (top, left) in enumerate(iterator, 1):
        bottom, right = min(top + tile_h, h), min(left + tile_w, w)
        y0, x0 = max(0, top - margin), max(0, left - margin)
        y0, x0 = y0 - y0 % align, x0 - x0 % align
        y1, x1 = min(h, bottom + margin), min(w, right + margin)
        result = fn(x[..., y0:y1, x0:x1])
        if out is None:
            out = torch.empty((n, result.shape[1], h, w), dtype=torch.float32, device=x.device)
        out[..., top:bottom, left:right] = result[..., top - y0 : bottom - y0, left - x0 : right - x0].float()
        if on_tile is not None:
            on_tile(done, len(blocks))
    return out


def auto_tile(h: int, w: int, limit: int = 512) -> int | None:
    """Default tile: None (one pass) up to ``limit`` x ``limit`` pixels, else ``limit`` (bounded memory)."""
    return None if h * w <= limit * limit else limit


def reuse_freed_memory(limit: int = 1 << 30) -> bool:
    """Make glibc's ``malloc`` keep freed blocks of up to ``limit`` bytes for reuse (process-wide).

    Every layer of a RED-Net writes a fresh activation of tens to hundreds of MB. By default glibc serves
    such blocks with ``mmap`` and returns them to the system when freed, so each layer first touches brand-new
    pages, which is dear in a VM (RED30 width 64 on a 512 x 512 image on the 2-core VM here: 3.52 and 3.17 s
    by default, 2.64 and 3.09 s with this, alternating runs of ``REDNET_REUSE_FREED_MEMORY=0|1 rednet bench
    infer --size 512 --variants fp32 --no-bm3d --seconds 0``). With it, blocks come
    from the heap (``M_MMAP_THRESHOLD``) and freed memory stays with the process (``M_TRIM_THRESHOLD``), so
    most later activations reuse pages already touched (not every one: a freed block can be a little short
    of an aligned request of the same size and the heap grows instead), and the resident size stays at its
    peak after a large image instead of shrinking; the peak itself is unchanged (the 40-megapixel
    benchmark's stays under 2 GiB). The ``rednet`` command line calls this at start unless the environment
    sets ``REDNET_REUSE_FREED_MEMORY=0``; library users may call it.

    Returns:
        True where it took effect (Linux with glibc), False elsewhere (nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, or no C library by that name
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, 2 * limit))


def _model_fn(model: REDNet, *, bf16: bool, channels_last: bool) -> Fn:
    device_type = next(model.parameters()).device.type

    def run(x: Tensor) -> Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with autocast:
            return model(x).float()

    return run


@torch.inference_mode()
def restore(
    model: REDNet,
    x: Tensor,
    *,
    tile: int | None | str = "auto",
    ensemble: bool = False,
    bf16: bool = False,
    channels_last: bool = True,
    progress: bool = False,
    on_tile: Callable[[int, int], None] | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Restore a batch with ``model``.

    Args:
        model: a RED-Net (its device is used).
        x: (N, C, H, W) float32 in [0, 1], C = 1 or 3, any H and W (1x1 included).
        mask: (N or 1, 1, H, W) float, 1 = pixel damaged (to fill), 0 = known: required by a mask-aware
            inpainting model (``model.config.mask_input``), refused by any other.
        tile: output block side for tiled inference (blocks of ``tile * tile`` pixels, :func:`tile_shape`);
            None = one pass; "auto" = :func:`auto_tile`.
        ensemble: average the 8 flips/rotations (about 8x slower; "slightly better" in the paper).
        bf16: bfloat16 autocast (fast on CPUs with AVX-512 BF16 / AMX and on GPUs).
        channels_last: channels-last memory format (faster with oneDNN).
        progress: progress bar over tiles.
        on_tile: called as ``on_tile(done, total)`` before the first tile and after each one (a one-pass
            restore counts as one tile), for progress reports.

    Returns:
        (N, C, H, W) float32, clamped to [0, 1], on ``x``'s device (an inference-mode tensor: no autograd).
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"x must be (N, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    if model.config.mask_input != (mask is not None):
        need = "needs a mask (where the damage is)" if mask is None else "takes no mask (it finds the damage)"
        raise ValueError(f"this model {need}")
    if mask is not None and (mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]):
        raise ValueError(f"mask must be (N, 1, {x.shape[-2]}, {x.shape[-1]}), got {tuple(mask.shape)}")
    device = next(model.parameters()).device
    want = model.config.channels
    source = x.to(device, torch.float32)
    if x.shape[1] == 3 and want == 1:
        # Memory matters here (whole images): no copy beyond YCbCr, the restored Y and the RGB result.
        ycbcr = rgb_to_ycbcr(source)
        del source
        options = {
            "tile": tile,
            "ensemble": ensemble,
            "bf16": bf16,
            "channels_last": channels_last,
            "mask": mask,
        }
        ycbcr[:, :1] = restore(model, ycbcr[:, :1], progress=progress, on_tile=on_tile, **options)
        for top in range(0, ycbcr.shape[-2], 256):  # back to RGB in place, a band of rows at a time
            band = ycbcr[..., top : top + 256, :]
            band.copy_(ycbcr_to_rgb(band))
        return ycbcr.clamp_(0, 1).to(x.device)
    if x.shape[1] == 1 and want == 3:
        rgb = restore(
            model,
            source.expand(-1, 3, -1, -1),
            tile=tile,
            ensemble=ensemble,
            bf16=bf16,
            channels_last=channels_last,
            progress=progress,
            on_tile=on_tile,
            mask=mask,
        )
        return rgb.mean(dim=1, keepdim=True).to(x.device)
    fn = _model_fn(model, bf16=bf16, channels_last=channels_last)
    if ensemble:
        single = fn

        def fn(t: Tensor) -> Tensor:
            return self_ensemble(single, t)

    if mask is not None:
        known = (mask.to(device, torch.float32) < 0.5).float().expand(source.shape[0], -1, -1, -1)
        source = torch.cat([source, known], dim=1)
    if tile == "auto":
        tile = auto_tile(*x.shape[-2:])
    was_training = model.training
    model.eval()
    try:
        if tile is None:
            if on_tile is not None:
                on_tile(0, 1)
            out = fn(source)
            if on_tile is not None:
                on_tile(1, 1)
        else:
            margin, align = margin_for(model), model.config.stride
            out = tiled(
                fn, source, tile=int(tile), margin=margin, align=align, progress=progress, on_tile=on_tile
            )
    finally:
        model.train(was_training)
    return out.float().clamp_(0, 1).to(x.device)
