"""Denoising batches made on the training device, a whole batch at a time.

A GPU trains a RED30 faster than loader processes can cut, turn and degrade 50 x 50 patches one by one in
Python (``rednet.data.PatchDataset``, a few thousand patches/s per core). :class:`DevicePatches` keeps the
training images on the device and makes each batch there in a few kernels: it gathers every crop, already
flipped or turned, in one indexing operation, gives RGB crops new colours (``rednet.data.jitter_colours``)
and adds the noise with ``rednet.degrade.gaussian_noise``, the function the loader processes use.

A batch is a pure function of (seed, step) on a given kind of device, as ``PatchDataset``'s are of (seed,
index), so ``--resume`` continues bit for bit; the stream differs from ``PatchDataset``'s (other random
numbers, the same distribution: image, position, transform, level and colour drawn uniformly alike).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from rednet.data import SATURATION_RANGE, Levels, jitter_colours
from rednet.degrade import gaussian_noise

__all__ = ["DevicePatches", "dihedral_maps"]


def dihedral_maps(side: int) -> tuple[Tensor, Tensor]:
    """Where each pixel of a turned patch comes from, for the 8 flips and quarter turns.

    Transform ``t = 2 * k + f`` is ``torch.rot90(x, k, dims=(2, 3))`` followed, if ``f``, by a left-right
    flip: the order in which ``PatchDataset`` applies them.

    Returns:
        (rows, cols), each (8, side, side) int64: pixel (i, j) of transform t is pixel (rows[t, i, j],
        cols[t, i, j]) of the untouched patch.
    """
    index = torch.arange(side * side).view(1, 1, side, side)
    maps = []
    for k in range(4):
        for flip in (False, True):
            turned = torch.rot90(index, k, dims=(2, 3))
            maps.append((turned.flip(3) if flip else turned)[0, 0])
    stacked = torch.stack(maps)
    return stacked // side, stacked % side


class DevicePatches:
    """Batches of (noisy, clean) denoising patches, made on ``device``.

    Args:
        images: clean training images, uint8 (C, H, W), all with the same C, each at least ``patch_size``.
        sigma: the noise levels to draw from, on the 0-255 scale.
        batch_size: patches per batch.
        patch_size: side of the patches.
        seed: base seed.
        device: where the images live and the batches are made.
        augment: random flips and quarter turns.
        color_jitter: new colours for RGB patches (``rednet.data.jitter_colours``).
    """

    def __init__(
        self,
        images: Sequence[Tensor],
        sigma: Levels,
        *,
        batch_size: int,
        patch_size: int,
        seed: int,
        device: torch.device,
        augment: bool = True,
        color_jitter: bool = False,
    ) -> None:
        if min((*sigma.values, sigma.low)) < 0:
            raise ValueError(f"noise levels must be >= 0 (0-255 scale), got {sigma}")
        images = [im for im in images if min(im.shape[-2:]) >= patch_size]
        if not images:
            raise ValueError(f"no training image is at least {patch_size}x{patch_size} pixels")
        channels = images[0].shape[0]
        height = max(im.shape[1] for im in images)
        width = max(im.shape[2] for im in images)
        self.images = torch.zeros(len(images), channels, height, width, dtype=torch.uint8, device=device)
        for i, im in enumerate(images):
            self.images[i, :, : im.shape[1], : im.shape[2]] = im.to(device)
        self.sizes = torch.tensor([list(im.shape[1:]) for im in images], device=device)
        self.rows, self.cols = (m.to(device) for m in dihedral_maps(patch_size))
        self.sigma, self.batch_size, self.patch_size = sigma, batch_size, patch_size
        self.seed, self.device, self.augment, self.color_jitter = seed, device, augment, color_jitter

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        """Batch ``step``: (noisy, clean), each (batch_size, C, patch_size, patch_size) float32 on the device,
        clean in [0, 1]."""
        state = np.random.SeedSequence([self.seed, step]).generate_state(1, np.uint64)[0]
        g = torch.Generator(device=self.device).manual_seed(int(state >> np.uint64(1)))
        b, p, dev = self.batch_size, self.patch_size, self.device
        n = torch.randint(len(self.sizes), (b,), generator=g, device=dev)
        room = self.sizes[n] - p + 1  # (B, 2): the positions a crop can start at
        corner = (torch.rand(b, 2, generator=g, device=dev) * room).long().minimum(room - 1)
        turn = torch.randint(8, (b,), generator=g, device=dev) if self.augment else torch.zeros_like(n)
        ys = corner[:, 0, None, None] + self.rows[turn]
        xs = corner[:, 1, None, None] + self.cols[turn]
        clean = self.images[n[:, None, None], :, ys, xs].permute(0, 3, 1, 2).float().div(255)
        if self.color_jitter and clean.shape[1] == 3:
            order = torch.rand(b, 3, generator=g, device=dev).argsort(dim=1)
            low, high = (math.log(v) for v in SATURATION_RANGE)
            factor = torch.exp(low + (high - low) * torch.rand(b, generator=g, device=dev))
            clean = jitter_colours(clean, order, factor)
        if self.sigma.values:
            levels = torch.tensor(self.sigma.values, device=dev)
            sigma = levels[torch.randint(len(levels), (b,), generator=g, device=dev)]
        else:
            low, high = self.sigma.low, self.sigma.high
            sigma = low + (high - low) * torch.rand(b, generator=g, device=dev, dtype=torch.float64)
        return gaussian_noise(clean, sigma, generator=g), clean.contiguous()
