"""Classical restoration methods, the peers that every rednet table is compared with.

Each function takes the degraded batch (N, C, H, W) float32 in [0, 1] plus what the method needs to know
(noise level, blur kernel, mask) and returns the restored batch, same shape, float32, not clamped unless the
method clamps. They wrap well-kept libraries:

* ``bm3d``: BM3D / CBM3D from the ``bm3d`` package (Mäkinen, Azzari, Foi), profile "np" (its default).
* ``wiener``, ``richardson_lucy``: ``skimage.restoration`` (edge-padded by the kernel size, then cropped,
  since both assume periodic boundaries).
* ``telea``: OpenCV's ``cv2.inpaint`` with ``INPAINT_TELEA`` (radius 3), on the 8-bit image.
* ``biharmonic``: ``skimage.restoration.inpaint_biharmonic``.

The inpainting methods are given the true mask (1 = damaged), an advantage the blind network does not have.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rednet.extras import require
from rednet.io import array_to_tensor, tensor_to_array

__all__ = ["biharmonic", "bm3d", "richardson_lucy", "telea", "wiener"]


def _per_image(fn, x: Tensor, *extra: Tensor | None) -> Tensor:
    """Apply ``fn`` to each image of ``x`` as an (H, W, C) float64 array (plus matching ``extra`` arrays)."""
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got {tuple(x.shape)}")

    def hwc(t: Tensor) -> np.ndarray:
        a = tensor_to_array(t).astype(np.float64)
        return a[:, :, None] if a.ndim == 2 else a

    out = []
    for i in range(x.shape[0]):
        args = [None if e is None else hwc(e[i]) for e in extra]
        out.append(array_to_tensor(fn(hwc(x[i]), *args)))
    return torch.cat(out)


def bm3d(degraded: Tensor, sigma: float) -> Tensor:
    """BM3D (gray) or CBM3D (RGB) denoising.

    Args:
        degraded: (N, C, H, W) noisy images, [0, 1] plus noise (not clipped), C = 1 or 3.
        sigma: noise standard deviation on the 0-255 scale.
    """
    bm3d_lib = require("bm3d", "classical", "the BM3D baseline")

    def run(a: np.ndarray) -> np.ndarray:
        if sigma <= 0:
            return a
        if a.shape[2] == 3:
            return bm3d_lib.bm3d_rgb(a, sigma / 255)
        return bm3d_lib.bm3d(a[:, :, 0], sigma / 255)

    return _per_image(run, degraded)


def _deconvolve(degraded: Tensor, kernel: Tensor, solve) -> Tensor:
    psf = kernel.detach().cpu().double().numpy()
    pad = max(psf.shape)

    def run(a: np.ndarray) -> np.ndarray:
        padded = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        channels = [solve(padded[:, :, c], psf) for c in range(a.shape[2])]
        return np.stack(channels, axis=2)[pad:-pad, pad:-pad]

    return _per_image(run, degraded)


def wiener(degraded: Tensor, kernel: Tensor, *, sigma: float = 0.0, balance: float | None = None) -> Tensor:
    """Wiener-Hunt deconvolution (``skimage.restoration.wiener``).

    Args:
        degraded: (N, C, H, W) blurred (and noisy) images in [0, 1].
        kernel: (kh, kw) blur kernel, summing to 1.
        sigma: noise level on the 0-255 scale.
        balance: regularisation weight of ``skimage.restoration.wiener``; None = the fixed rule
            ``max(0.005, 2 * sigma/255)``, the same for every image and kernel (not tuned on test images).
            It suits the Gaussian kernel; the disk kernel, whose spectrum has zeros, wants more (~0.05).
    """
    from skimage.restoration import wiener as sk_wiener

    if balance is None:
        balance = max(0.005, 2 * sigma / 255)
    return _deconvolve(degraded, kernel, lambda a, psf: sk_wiener(a, psf, balance, clip=False))


def richardson_lucy(degraded: Tensor, kernel: Tensor, *, num_iter: int = 30) -> Tensor:
    """Richardson-Lucy deconvolution (``skimage.restoration.richardson_lucy``), ``num_iter`` iterations.

    Args:
        degraded: (N, C, H, W) blurred images in [0, 1].
        kernel: (kh, kw) blur kernel, summing to 1.
    """
    from skimage.restoration import richardson_lucy as sk_rl

    return _deconvolve(
        degraded.clamp(0, 1), kernel, lambda a, psf: sk_rl(a, psf, num_iter=num_iter, clip=True)
    )


def telea(degraded: Tensor, mask: Tensor, *, radius: int = 3) -> Tensor:
    """Telea fast-marching inpainting (OpenCV) of the pixels where ``mask == 1``.

    Args:
        degraded: (N, C, H, W) images in [0, 1], C = 1 or 3.
        mask: (N, 1, H, W), 1 = pixel damaged, 0 = kept.
    """
    import cv2

    def run(a: np.ndarray, m: np.ndarray) -> np.ndarray:
        image = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
        holes = (m[:, :, 0] >= 0.5).astype(np.uint8) * 255
        out = cv2.inpaint(image if image.shape[2] == 3 else image[:, :, 0], holes, radius, cv2.INPAINT_TELEA)
        return out.reshape(a.shape).astype(np.float64) / 255

    return _per_image(run, degraded, mask)


def biharmonic(degraded: Tensor, mask: Tensor) -> Tensor:
    """Biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``) of the pixels where ``mask == 1``.

    Args:
        degraded: (N, C, H, W) images in [0, 1].
        mask: (N, 1, H, W), 1 = pixel damaged, 0 = kept.
    """
    from skimage.restoration import inpaint_biharmonic

    def run(a: np.ndarray, m: np.ndarray) -> np.ndarray:
        return inpaint_biharmonic(a, m[:, :, 0] >= 0.5, channel_axis=-1)

    return _per_image(run, degraded, mask)
