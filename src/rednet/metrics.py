"""Image quality metrics, per image, as ``protocol.md`` §1 defines them.

* PSNR = ``10 log10(data_range^2 / MSE)``; for RGB the MSE is over all three channels. Identical images give
  ``inf`` (as scikit-image), never an epsilon-capped number.
* SSIM = Wang et al. 2004 with MATLAB ``ssim_index`` conventions: 11x11 Gaussian window, sigma 1.5,
  K1 = 0.01, K2 = 0.03, "valid" filtering, mean of the map; RGB = mean of the per-channel SSIMs. Agrees with
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
* Y = luminance of ITU-R BT.601 as MATLAB ``rgb2ycbcr`` computes it (16..235 on the 0..255 scale).

All functions take (N, C, H, W) tensors and return one value per image, shape (N,); the caller averages.
Metrics are computed in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

__all__ = ["psnr", "rgb_to_y", "rgb_to_ycbcr", "ssim", "ycbcr_to_rgb"]


def _check(x: Tensor, name: str = "x") -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, C, H, W), got {tuple(x.shape)}")


def _pair(x: Tensor, y: Tensor, shave: int) -> tuple[Tensor, Tensor]:
    _check(x, "x")
    _check(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if shave < 0:
        raise ValueError(f"shave must be >= 0, got {shave}")
    if shave:
        if min(x.shape[-2:]) <= 2 * shave:
            raise ValueError(f"shave={shave} leaves nothing of a {x.shape[-2]}x{x.shape[-1]} image")
        x = x[..., shave:-shave, shave:-shave]
        y = y[..., shave:-shave, shave:-shave]
    return x.double(), y.double()


def rgb_to_y(x: Tensor, *, round_8bit: bool = True) -> Tensor:
    """Y of BT.601 as MATLAB ``rgb2ycbcr``: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``.

    Args:
        x: (N, 3, H, W) RGB in [0, 1]. A 1-channel input is returned unchanged (a gray image is its own Y,
            as the classic SR evaluation code treats it).
        round_8bit: round Y to 8-bit levels as MATLAB does for uint8 input (the protocol's convention).

    Returns:
        (N, 1, H, W) float32, Y / 255, i.e. in [16/255, 235/255].
    """
    _check(x)
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"x must have 1 or 3 channels, got {x.shape[1]}")
    r, g, b = (x[:, i : i + 1].double() * 255 for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    if round_8bit:
        y = torch.round(y)
    return (y / 255).to(torch.float32)


# MATLAB rgb2ycbcr (ITU-R BT.601) on [0, 1] data: ycbcr = OFFSET + MATRIX @ rgb.
_YCBCR_MATRIX = (
    torch.tensor(
        [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=torch.float64
    )
    / 255
)
_YCBCR_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255


def _mix(x: Tensor, matrix: Tensor, bias: Tensor) -> Tensor:
    """``matrix @ pixel + bias`` for every pixel of (N, 3, H, W), in float32, accumulated channel by channel
    into the output so that the output is the only new memory (these run on whole 40-megapixel images; a
    1x1 convolution would let oneDNN pad 3 channels to 16 in temporary buffers)."""
    x = x.float()
    out = torch.empty_like(x)
    m, b = matrix.tolist(), bias.tolist()
    for c in range(3):
        torch.mul(x[:, 0], m[c][0], out=out[:, c])
        out[:, c].add_(x[:, 1], alpha=m[c][1]).add_(x[:, 2], alpha=m[c][2]).add_(b[c])
    return out


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """YCbCr of BT.601 as MATLAB ``rgb2ycbcr`` on double data, not rounded (computed in float32).

    Args:
        x: (N, 3, H, W) RGB in [0, 1].

    Returns:
        (N, 3, H, W) float32: Y in [16/255, 235/255], Cb and Cr in [16/255, 240/255].
    """
    _check(x)
    if x.shape[1] != 3:
        raise ValueError(f"x must have 3 channels, got {x.shape[1]}")
    return _mix(x, _YCBCR_MATRIX, _YCBCR_OFFSET)


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (MATLAB ``ycbcr2rgb``), not clipped: (N, 3, H, W) -> (N, 3, H, W)."""
    _check(x)
    if x.shape[1] != 3:
        raise ValueError(f"x must have 3 channels, got {x.shape[1]}")
    inverse = torch.linalg.inv(_YCBCR_MATRIX)
    return _mix(x, inverse, -inverse @ _YCBCR_OFFSET)


def psnr(x: Tensor, y: Tensor, *, data_range: float = 1.0, shave: int = 0) -> Tensor:
    """Peak signal-to-noise ratio in dB, per image.

    Args:
        x, y: (N, C, H, W) images on the scale of ``data_range`` (1.0 for [0, 1]).
        data_range: peak value.
        shave: pixels removed from each edge before scoring.

    Returns:
        (N,) float64 tensor; ``inf`` where the images are identical.
    """
    x, y = _pair(x, y, shave)
    mse = (x - y).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> Tensor:
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, *, data_range: float = 1.0, shave: int = 0) -> Tensor:
    """Structural similarity (MATLAB ``ssim_index`` conventions), per image.

    Args:
        x, y: (N, C, H, W) images on the scale of ``data_range``; at least 11x11 after shaving.
        data_range: peak value (L in the paper).
        shave: pixels removed from each edge before scoring.

    Returns:
        (N,) float64 tensor: the mean SSIM map, averaged over channels.
    """
    x, y = _pair(x, y, shave)
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {x.shape[-2]}x{x.shape[-1]}")
    n, c, h, w = x.shape
    g = _gaussian_1d().to(x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    # The 11x11 Gaussian window is separable: filter the 5 statistics of every channel along H, then W
    # ("valid"): (N*C*5, 1, H, W) -> (N*C*5, 1, H-10, W-10).
    stats = torch.stack([x, y, x * x, y * y, x * y], dim=2).reshape(n * c * 5, 1, h, w)
    stats = F.conv2d(F.conv2d(stats, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))
    mu_x, mu_y, xx, yy, xy = stats.reshape(n, c, 5, h - 10, w - 10).unbind(dim=2)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(2, 3)).mean(dim=1)
