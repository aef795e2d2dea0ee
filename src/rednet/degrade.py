"""Image corruptions: Gaussian noise, bicubic down/up-sampling, JPEG and blur (inpainting's damage is in
:mod:`rednet.overlays`).

Every function takes images as ``(N, C, H, W)`` float32 tensors in [0, 1] (C = 1 or 3), returns new
tensors and never modifies its arguments. Randomness comes only from the ``generator`` argument
(a ``torch.Generator`` or a ``numpy.random.Generator``); ``None`` means fresh, unseeded randomness.
No function touches global RNG state.

The degradations follow ``docs/protocol.md`` section 2. Where a MATLAB function defines the classic
protocol, the function here says which one it reproduces and how:

- :func:`imresize` is MATLAB's ``imresize(x, scale, 'bicubic')`` (antialiased cubic kernel, a = -0.5,
  symmetric border), computed in float64 like MATLAB's double path;
- :func:`gaussian_kernel` / :func:`disk_kernel` are ``fspecial('gaussian', ...)`` / ``fspecial('disk', ...)``;
- :func:`blur` is ``imfilter(x, k, 'conv', 'replicate')``.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Sequence
from typing import TypeAlias

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = [
    "RandomGenerator",
    "bicubic_sr",
    "check_image",
    "blur",
    "crop_to_multiple",
    "disk_kernel",
    "downscale",
    "gaussian_kernel",
    "gaussian_noise",
    "imresize",
    "jpeg",
    "numpy_rng",
    "quantize",
    "uniform_like",
    "upscale",
]

RandomGenerator: TypeAlias = "torch.Generator | np.random.Generator | None"
"""Source of randomness accepted by every random function (``None`` = fresh, unseeded)."""


# --------------------------------------------------------------------------------------------------
# helpers


def check_image(x: Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating (N, C, H, W) tensor with C in {1, 3}."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be (N, C, H, W), got {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")


def _bad_generator(generator: object) -> ValueError:
    return ValueError(
        "generator must be a torch.Generator, a numpy.random.Generator or None, "
        f"got {type(generator).__name__}"
    )


def _torch_draw(
    draw: Callable[..., Tensor], shape: Sequence[int], generator: torch.Generator | None, like: Tensor
) -> Tensor:
    """``draw`` (``torch.randn`` or ``torch.rand``) of ``shape`` in float64 on ``like``'s device. A torch
    generator draws only on its own device (a CPU one for images on a GPU: drawn on the CPU, then moved)."""
    device = like.device if generator is None else generator.device
    return draw(tuple(shape), generator=generator, dtype=torch.float64, device=device).to(like.device)


def _standard_normal(shape: Sequence[int], generator: RandomGenerator, like: Tensor) -> Tensor:
    """N(0, 1) samples of ``shape`` in float64 on ``like``'s device, drawn from ``generator``."""
    if isinstance(generator, np.random.Generator):
        return torch.from_numpy(generator.standard_normal(tuple(shape))).to(like.device)
    if generator is None or isinstance(generator, torch.Generator):
        return _torch_draw(torch.randn, shape, generator, like)
    raise _bad_generator(generator)


def uniform_like(shape: Sequence[int], generator: RandomGenerator, like: Tensor) -> Tensor:
    """U[0, 1) samples of ``shape`` in float64 on ``like``'s device, drawn from ``generator``."""
    if isinstance(generator, np.random.Generator):
        return torch.from_numpy(generator.random(tuple(shape))).to(like.device)
    if generator is None or isinstance(generator, torch.Generator):
        return _torch_draw(torch.rand, shape, generator, like)
    raise _bad_generator(generator)


def numpy_rng(generator: RandomGenerator) -> np.random.Generator:
    """A numpy Generator for ``generator``: itself, one seeded from a draw of a torch one, or a fresh one."""
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        return np.random.default_rng(seed)
    if generator is None:
        return np.random.default_rng()
    raise _bad_generator(generator)


def _to_uint8(x: Tensor) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, H, W, C) uint8, clipped and rounded (as :func:`quantize`)."""
    q = torch.round(x.detach().to(torch.float64).clamp(0, 1) * 255)
    return q.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# --------------------------------------------------------------------------------------------------
# noise and quantisation


def gaussian_noise(
    x: Tensor,
    sigma: float | Tensor,
    *,
    generator: RandomGenerator = None,
    clip: bool = False,
) -> Tensor:
    """Add white Gaussian noise: ``y = x + sigma / 255 * n`` with ``n ~ N(0, 1)``, independent per value.

    The sum is formed in float64 and returned as float32. It is not quantised, and not clipped
    unless ``clip=True`` (protocol: denoising inputs are neither).

    Args:
        x: clean images, (N, C, H, W) float32 in [0, 1].
        sigma: noise standard deviation on the **0-255 scale** (``sigma=25`` -> std 25/255); a float,
            or a tensor of shape (N,) giving one level per image (training draws a level per patch).
        generator: a ``numpy.random.Generator`` (the evaluation path: ``n = generator.standard_normal(
            x.shape)`` in float64, as with ``numpy.random.default_rng(seed)``), a ``torch.Generator``
            (``torch.randn``), or ``None`` for unseeded noise.
        clip: clip the result to [0, 1].

    Returns:
        Noisy images, (N, C, H, W) float32; values may leave [0, 1] unless ``clip``.

    Raises:
        ValueError: if ``x`` is not (N, C, H, W), ``sigma`` is negative or has the wrong shape.
    """
    check_image(x)
    n = _standard_normal(x.shape, generator, x)
    if isinstance(sigma, Tensor):
        s = sigma.detach().to(device=x.device, dtype=torch.float64)
        if s.ndim == 0:
            s = s.reshape(1)
        if s.ndim != 1 or s.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"sigma must be a float or a tensor of shape (N,) = ({x.shape[0]},), got {tuple(s.shape)}"
            )
        # Checked where it costs nothing: reading a GPU tensor's values would make the CPU wait for the GPU
        # (rednet.device_patches draws its levels there, from ranges it checks itself).
        if s.device.type == "cpu" and bool((s < 0).any()):
            raise ValueError("sigma must be >= 0 (0-255 scale)")
        s = s.reshape(-1, 1, 1, 1)
    else:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0 (0-255 scale), got {sigma}")
        s = float(sigma)
    y = x.to(torch.float64) + s / 255.0 * n
    if clip:
        y = y.clamp(0, 1)
    return y.to(torch.float32)


def quantize(x: Tensor) -> Tensor:
    """Clip to [0, 1] and round to the 256 levels of an 8-bit image.

    Args:
        x: images, (N, C, H, W) float.

    Returns:
        ``torch.round(x.clamp(0, 1) * 255) / 255``, (N, C, H, W) float32 (round half to even).
    """
    check_image(x)
    return (torch.round(x.to(torch.float32).clamp(0, 1) * 255) / 255).to(torch.float32)


# --------------------------------------------------------------------------------------------------
# MATLAB-compatible bicubic resize


def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB ``imresize``'s ``cubic``)."""
    a = np.abs(t)
    a2, a3 = a * a, a * a * a
    inner = (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1)
    outer = (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2))
    return inner + outer


@functools.lru_cache(maxsize=64)
def _resize_matrix(in_length: int, out_length: int, scale: float, antialias: bool) -> Tensor:
    """Dense (out_length, in_length) float64 CPU tensor of weights of MATLAB ``imresize``'s ``contributions``.

    Port of the MATLAB algorithm: output pixel ``x`` (1-based) maps to input coordinate
    ``u = x / scale + 0.5 * (1 - 1 / scale)``; the cubic kernel (width 4) is stretched by ``1 / scale``
    when downscaling with antialiasing; each row is normalised to sum to 1; out-of-range input
    indices are mirrored symmetrically (``aux = [1:in, in:-1:1]``). Mirrored contributions to the same
    input pixel add up, which is exactly what MATLAB's sparse sum does.
    """
    kernel_width = 4.0
    if scale < 1 and antialias:

        def h(t: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * t)

        kernel_width = kernel_width / scale
    else:
        h = _cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p, dtype=np.float64)[None, :]  # 1-based
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])  # 0-based mirror
    idx = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_length)[:, None], idx.shape)
    np.add.at(matrix, (rows, idx), weights)
    return torch.from_numpy(matrix)  # cached: callers must not modify it


def imresize(
    x: Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> Tensor:
    """Bicubic resize matching MATLAB ``imresize(x, scale, 'bicubic')`` on double images.

    Cubic kernel with a = -0.5 and support 4; when downscaling (and ``antialias``) the kernel is
    stretched by ``1 / scale``, as MATLAB does; input coordinate ``u = x / scale + 0.5 (1 - 1 / scale)``;
    borders by MATLAB's symmetric index mirroring. Each axis is resized in turn (the axis with the
    smaller scale first, H first on ties, as MATLAB), with weight matrices applied by matmul, in
    float64. The result is neither clipped nor rounded: MATLAB on ``uint8`` rounds (after each axis);
    callers that want 8-bit values apply :func:`quantize`.

    Args:
        x: images, (N, C, H, W) float in [0, 1] (any real values work).
        scale: resize factor, e.g. 0.5 or 3; output is ``ceil(H * scale) x ceil(W * scale)``.
        size: output ``(H_out, W_out)`` instead of ``scale``; the per-axis scale is then
            ``H_out / H`` and ``W_out / W`` (MATLAB's ``imresize(x, [h w])``).
        antialias: stretch the kernel when downscaling (MATLAB's default ``'Antialiasing', true``).

    Returns:
        Resized images, (N, C, H_out, W_out) float32.

    Raises:
        ValueError: if ``x`` is not (N, C, H, W), or not exactly one of ``scale``/``size`` is given,
            or they are not positive.
    """
    check_image(x)
    in_h, in_w = int(x.shape[-2]), int(x.shape[-1])
    if (scale is None) == (size is None):
        raise ValueError("imresize needs exactly one of scale or size")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        scales = (float(scale), float(scale))
        out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
    else:
        out_h, out_w = (int(s) for s in size)
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"size must be positive, got {size}")
        scales = (out_h / in_h, out_w / in_w)
    y = x.to(torch.float64)
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for dim in order:
        if dim == 0:
            m = _resize_matrix(in_h, out_h, scales[0], antialias).to(y.device)
            y = torch.einsum("oh,nchw->ncow", m, y)
        else:
            m = _resize_matrix(in_w, out_w, scales[1], antialias).to(y.device)
            y = torch.einsum("ow,nchw->ncho", m, y)
    return y.to(torch.float32)


def crop_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Crop the bottom and right so that H and W are multiples of ``multiple`` (MATLAB ``modcrop``).

    Args:
        x: images, (N, C, H, W).
        multiple: positive integer, e.g. the SR scale.

    Returns:
        A copy of ``x[..., :H - H % multiple, :W - W % multiple]``.

    Raises:
        ValueError: if H or W is smaller than ``multiple``.
    """
    check_image(x)
    if multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    h, w = x.shape[-2], x.shape[-1]
    if h < multiple or w < multiple:
        raise ValueError(f"a {h}x{w} image is smaller than {multiple}x{multiple}; cannot down-sample")
    return x[..., : h - h % multiple, : w - w % multiple].clone()


def downscale(clean: Tensor, scale: int) -> Tensor:
    """Bicubic downscaling by ``1 / scale`` (MATLAB ``imresize(clean, 1/scale)``), not rounded.

    Args:
        clean: images, (N, C, H, W) float32 in [0, 1], H and W multiples of ``scale``.
        scale: integer SR factor (2, 3, 4).

    Returns:
        Low-resolution images, (N, C, H / scale, W / scale) float32, not clipped or rounded.
    """
    check_image(clean, "clean")
    h, w = clean.shape[-2], clean.shape[-1]
    if h % scale or w % scale:
        raise ValueError(f"clean H and W must be multiples of scale={scale}, got {tuple(clean.shape)}")
    lr = imresize(clean, 1.0 / scale)
    if lr.shape[-2:] != (h // scale, w // scale):  # guards ceil(H * (1/s)) against float error
        raise ValueError(f"unexpected LR size {tuple(lr.shape)} for scale {scale}")
    return lr


def upscale(lr: Tensor, scale: int) -> Tensor:
    """Bicubic upscaling by ``scale`` (MATLAB ``imresize(lr, scale)``), not rounded.

    Args:
        lr: images, (N, C, h, w) float32.
        scale: integer SR factor (2, 3, 4).

    Returns:
        (N, C, h * scale, w * scale) float32, not clipped or rounded.
    """
    check_image(lr, "lr")
    return imresize(lr, float(scale))


def bicubic_sr(clean: Tensor, scale: int, *, quantize_lr: bool = True) -> tuple[Tensor, Tensor]:
    """Make the super-resolution input: crop, bicubic down by ``1 / scale``, bicubic up by ``scale``.

    ``crop_to_multiple(clean, scale)`` -> ``imresize(., 1/scale)`` -> (8-bit rounding, as MATLAB on
    uint8 images) -> ``imresize(., scale)``. The upscaled result is not clipped or rounded; the
    protocol's bicubic baseline quantises it before PSNR.

    Args:
        clean: images, (N, C, H, W) float32 in [0, 1].
        scale: integer SR factor (2, 3, 4).
        quantize_lr: clip and round the LR image to 8-bit levels before upscaling.

    Returns:
        ``(cropped_clean, degraded)``, both (N, C, H', W') float32 with H', W' the multiples of
        ``scale`` at most H, W.
    """
    check_image(clean, "clean")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    cropped = crop_to_multiple(clean, scale)
    lr = downscale(cropped, scale)
    if quantize_lr:
        lr = quantize(lr)
    return cropped, upscale(lr, scale)


# --------------------------------------------------------------------------------------------------
# JPEG


def jpeg(x: Tensor, quality: int, *, subsampling: int | None = None) -> Tensor:
    """JPEG-compress with Pillow, in memory, and decode again.

    The images are first clipped and rounded to 8 bits; each image of the batch is coded on its own,
    1 channel as mode ``"L"``, 3 channels as ``"RGB"``.

    Args:
        x: images, (N, C, H, W) float32 in [0, 1], C = 1 or 3.
        quality: JPEG quality, int 1..100 (Pillow's scale, libjpeg's tables).
        subsampling: chroma subsampling for RGB as Pillow takes it: 0 = 4:4:4, 1 = 4:2:2,
            2 = 4:2:0; ``None`` = Pillow's default (4:2:0). Ignored for 1 channel.

    Returns:
        Decoded images, (N, C, H, W) float32 on 8-bit levels in [0, 1], on ``x``'s device.

    Raises:
        ValueError: if ``quality`` is not an int in 1..100, ``subsampling`` not None/0/1/2, or bad shape.
    """
    check_image(x)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an int in 1..100, got {quality!r}")
    if subsampling is not None and subsampling not in (0, 1, 2):
        raise ValueError(f"subsampling must be None, 0 (4:4:4), 1 (4:2:2) or 2 (4:2:0), got {subsampling!r}")
    arrays = _to_uint8(x)
    out = np.empty_like(arrays)
    kwargs: dict[str, int] = {"quality": int(quality)}
    if subsampling is not None and x.shape[1] == 3:
        kwargs["subsampling"] = subsampling
    for i, a in enumerate(arrays):
        img = Image.fromarray(a[..., 0], mode="L") if a.shape[-1] == 1 else Image.fromarray(a, mode="RGB")
        buf = io.BytesIO()
        img.save(buf, format="JPEG", **kwargs)
        buf.seek(0)
        with Image.open(buf) as dec:
            d = np.asarray(dec.convert(img.mode))
        out[i] = d.reshape(a.shape)
    y = torch.from_numpy(out).permute(0, 3, 1, 2).to(torch.float32) / 255
    return y.contiguous().to(x.device)


# --------------------------------------------------------------------------------------------------
# blur kernels and convolution


def gaussian_kernel(size: int | tuple[int, int] = 25, sigma: float = 1.6) -> Tensor:
    """Gaussian blur kernel, equal to MATLAB ``fspecial('gaussian', size, sigma)``.

    ``h = exp(-(x^2 + y^2) / (2 sigma^2))`` on the grid ``-(size-1)/2 .. (size-1)/2``, values below
    ``eps * max(h)`` set to 0, normalised to sum 1.

    Args:
        size: kernel side in pixels (int) or ``(kh, kw)``; the paper's demo uses 25.
        sigma: standard deviation in pixels; the paper's demo uses 1.6.

    Returns:
        (kh, kw) float32 kernel summing to 1.
    """
    kh, kw = (size, size) if isinstance(size, int) else size
    if kh < 1 or kw < 1 or sigma <= 0:
        raise ValueError(f"size must be >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    y = np.linspace(-(kh - 1) / 2, (kh - 1) / 2, kh)
    x = np.linspace(-(kw - 1) / 2, (kw - 1) / 2, kw)
    h = np.exp(-(x[None, :] ** 2 + y[:, None] ** 2) / (2 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    h = h / h.sum()
    return torch.from_numpy(h).to(torch.float32)


def disk_kernel(radius: float = 7) -> Tensor:
    """Circular averaging (pillbox) kernel, equal to MATLAB ``fspecial('disk', radius)``.

    A port of MATLAB's algorithm: the kernel is (2 ceil(radius - 0.5) + 1) square; each pixel's weight
    is the area of the unit pixel square covered by the disk of the given radius centred on the middle
    pixel (computed analytically for border pixels), normalised to sum 1. MATLAB's arithmetic is
    followed literally, including its special case for the four axis-end pixels; complex
    intermediate values (MATLAB's ``sqrt`` of negatives, always multiplied by 0) are reproduced
    with complex arithmetic and the real part kept.

    Args:
        radius: disk radius in pixels (> 0); the paper's demo uses 7 (15 x 15 kernel).

    Returns:
        (2r + 1, 2r + 1) float32 kernel summing to 1, r = ceil(radius - 0.5).
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    rad = float(radius)
    crad = int(math.ceil(rad - 0.5))
    grid = np.arange(-crad, crad + 1, dtype=np.float64)
    xx, yy = np.meshgrid(grid, grid)
    maxxy = np.maximum(np.abs(xx), np.abs(yy))
    minxy = np.minimum(np.abs(xx), np.abs(yy))
    r2 = rad * rad

    def csqrt(v: np.ndarray) -> np.ndarray:
        return np.sqrt(v.astype(np.complex128))

    m1 = (r2 < (maxxy + 0.5) ** 2 + (minxy - 0.5) ** 2) * (minxy - 0.5) + (
        r2 >= (maxxy + 0.5) ** 2 + (minxy - 0.5) ** 2
    ) * csqrt(r2 - (maxxy + 0.5) ** 2)
    m2 = (r2 > (maxxy - 0.5) ** 2 + (minxy + 0.5) ** 2) * (minxy + 0.5) + (
        r2 <= (maxxy - 0.5) ** 2 + (minxy + 0.5) ** 2
    ) * csqrt(r2 - (maxxy - 0.5) ** 2)
    a1, a2 = np.arcsin(m1 / rad), np.arcsin(m2 / rad)
    area = (
        r2 * (0.5 * (a2 - a1) + 0.25 * (np.sin(2 * a2) - np.sin(2 * a1)))
        - (maxxy - 0.5) * (m2 - m1)
        + (m1 - minxy + 0.5)
    )
    crossed = (r2 < (maxxy + 0.5) ** 2 + (minxy + 0.5) ** 2) & (r2 > (maxxy - 0.5) ** 2 + (minxy - 0.5) ** 2)
    border = crossed | ((minxy == 0) & (maxxy - 0.5 < rad) & (maxxy + 0.5 >= rad))
    sgrid = area * border
    sgrid = sgrid + ((maxxy + 0.5) ** 2 + (minxy + 0.5) ** 2 < r2)
    c = crad  # 0-based index of the centre
    sgrid[c, c] = min(math.pi * r2, math.pi / 2)
    if crad > 0 and rad > crad - 0.5 and r2 < (crad - 0.5) ** 2 + 0.25:
        m1s = math.sqrt(r2 - (crad - 0.5) ** 2)
        m1n = m1s / rad
        sg0 = 2 * (r2 * (0.5 * math.asin(m1n) + 0.25 * math.sin(2 * math.asin(m1n))) - m1s * (crad - 0.5))
        last = 2 * crad
        sgrid[last, c] = sg0
        sgrid[c, last] = sg0
        sgrid[c, 0] = sg0
        sgrid[0, c] = sg0
        sgrid[last - 1, c] -= sg0
        sgrid[c, last - 1] -= sg0
        sgrid[c, 1] -= sg0
        sgrid[1, c] -= sg0
    sgrid[c, c] = min(sgrid[c, c].real, 1.0)
    h = sgrid.real
    h = h / h.sum()
    return torch.from_numpy(np.ascontiguousarray(h)).to(torch.float32)


def blur(
    x: Tensor,
    kernel: Tensor,
    *,
    sigma: float = 0.0,
    generator: RandomGenerator = None,
) -> Tensor:
    """Blur by true convolution with replicate borders, then optionally add Gaussian noise.

    Equals MATLAB ``imfilter(x, kernel, 'conv', 'replicate')`` in floating point: the kernel is
    flipped, the output has the input's size, and the kernel centre is ``floor((k + 1) / 2)``
    (1-based), as MATLAB places it for even sizes. Computed in float64 (by FFT); the same kernel is
    applied to every channel. Then, if ``sigma > 0``, :func:`gaussian_noise` is added (not clipped).

    Args:
        x: images, (N, C, H, W) float32 in [0, 1].
        kernel: blur kernel, (kh, kw) float (e.g. :func:`gaussian_kernel`, :func:`disk_kernel`).
        sigma: standard deviation of additive Gaussian noise on the 0-255 scale (0 = none;
            the protocol uses 0 and 2.55).
        generator: randomness for the noise, as in :func:`gaussian_noise`.

    Returns:
        Blurred (and noisy) images, (N, C, H, W) float32, not clipped.
    """
    check_image(x)
    if not isinstance(kernel, Tensor) or kernel.ndim != 2:
        shape = tuple(kernel.shape) if isinstance(kernel, Tensor) else type(kernel).__name__
        raise ValueError(f"kernel must be a (kh, kw) tensor, got {shape}")
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    ch, cw = (kh + 1) // 2, (kw + 1) // 2  # MATLAB's 1-based centre of the (rotated) kernel
    k = kernel.to(device=x.device, dtype=torch.float64)
    pad = (cw - 1, kw - cw, ch - 1, kh - ch)  # left, right, top, bottom
    xp = torch.nn.functional.pad(x.to(torch.float64).reshape(n * c, 1, h, w), pad, mode="replicate")
    # Convolution by FFT (exact to float64 rounding, and far faster than a float64 conv2d): the circular
    # convolution of the padded image with the kernel equals the linear one from index (kh-1, kw-1) on.
    hp, wp = xp.shape[-2:]
    y = torch.fft.irfft2(torch.fft.rfft2(xp, s=(hp, wp)) * torch.fft.rfft2(k, s=(hp, wp)), s=(hp, wp))
    y = y[..., kh - 1 :, kw - 1 :].reshape(n, c, h, w)
    if sigma > 0:
        return gaussian_noise(y, sigma, generator=generator)
    return y.to(torch.float32)
