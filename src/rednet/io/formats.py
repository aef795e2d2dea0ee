"""What rednet reads and writes: the formats, :class:`ImageError`, :class:`ImageInfo`, the pixel limit, and
the conversions between numpy arrays and (N, C, H, W) float32 tensors on [0, 1]."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest image (width x height, from the file header) that :func:`read_image` decodes by default."""

MAX_PIXELS_ENV = "REDNET_MAX_PIXELS"
"""Environment variable that overrides :data:`DEFAULT_MAX_PIXELS` (a positive integer)."""

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp")
"""File suffixes (lower case) that rednet reads and writes."""

# Pillow format name written for each suffix.
_SUFFIX_FORMATS = {
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".webp": "WEBP",
}
# Pillow plugins tried when reading. Its JPEG plugin also opens multi-picture camera JPEGs,
# which it then reports as format "MPO".
_READ_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_ALPHA_FORMATS = frozenset({"PNG", "TIFF", "WEBP"})
_LOSSY_FORMATS = frozenset({"JPEG", "MPO"})

# Exceptions Pillow (and its plugins) raise on malformed files, besides UnidentifiedImageError.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
)

_EXIF_PREFIX = b"Exif\x00\x00"
_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
# Descriptive TIFF/EXIF tags of a TIFF's first IFD that are worth carrying into an EXIF block;
# the others describe the TIFF's own layout.
_TIFF_EXIF_TAGS = (270, 271, 272, 274, 305, 306, 315, 33432)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Redirecting file descriptor 2 is process-wide: one decode at a time may do it.

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights for R, G, B: Pillow's ``convert("L")``, used by ``mode="gray"``."""


class ImageError(ValueError):
    """An input file that cannot be read as an image; the message is one line naming the file."""


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` learned about a file, so :func:`write_image` can write it back alike."""

    path: Path | None = None
    """The file read, or ``None`` for an image that did not come from a file."""
    format: str = "PNG"
    """Pillow's name for the file format: "PNG", "JPEG", "MPO" (a camera JPEG), "TIFF", "BMP", "WEBP"."""
    mode: str = "RGB"
    """Pillow's mode of the file as opened ("L", "RGB", "RGBA", "P", "1", "I;16", "CMYK", ...)."""
    bit_depth: int = 8
    """Bits per sample to write back: 8, or 16 for 16-bit, 32-bit integer and float sources."""
    channels: int = 3
    """Colour channels of the tensor returned by :func:`read_image`: 1 (gray) or 3 (RGB)."""
    alpha: torch.Tensor | None = field(default=None, compare=False, repr=False)
    """Opacity, (1, 1, H, W) float32 in [0, 1] (1 = opaque), upright like the image; ``None`` if none."""
    icc_profile: bytes | None = field(default=None, repr=False)
    """The embedded ICC colour profile, or ``None`` (sRGB assumed)."""
    exif: bytes | None = field(default=None, repr=False)
    """The EXIF block, starting with ``b"Exif\\x00\\x00"``, orientation reset to 1; or ``None``."""
    dpi: tuple[float, float] | None = None
    """Horizontal and vertical resolution in dots per inch, or ``None`` if the file gives none."""
    lossless: bool = True
    """Whether the source was stored losslessly (everything but JPEG and lossy WebP): decides WebP output."""
    compression: str | None = None
    """Pillow's name for a TIFF's compression ("raw", "tiff_lzw", ...); ``None`` for other formats."""


def max_pixels(value: int | None = None) -> int:
    """Return the pixel limit :func:`read_image` applies.

    Args:
        value: An explicit limit (width x height), which wins when given.

    Returns:
        ``value`` if given, else the ``REDNET_MAX_PIXELS`` environment variable if set, else
        :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        ValueError: If the limit is not a positive integer.
    """
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"max_pixels must be a positive integer, got {value!r}")
        return value
    env = os.environ.get(MAX_PIXELS_ENV)
    if env is None or not env.strip():
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(env.strip())
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV} must be a positive integer, got {env!r}")
    return limit


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Return whether ``path`` ends in one of :data:`IMAGE_SUFFIXES` (any case); the file is not opened."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


# --------------------------------------------------------------------------------------------------
# numpy <-> tensor conversions
# --------------------------------------------------------------------------------------------------


def array_to_tensor(a: np.ndarray) -> torch.Tensor:
    """Convert an image array to a (1, C, H, W) float32 tensor.

    The rule is explicit, by dtype: uint8 is divided by 255, uint16 by 65535, bool gives 0/1, and
    floating-point arrays are taken as already on [0, 1] (not clipped). The argument is not modified.

    Args:
        a: (H, W) or (H, W, C) array, C = 1, 3 (or any count: channels are kept as given).

    Returns:
        (1, C, H, W) float32 tensor (C = 1 for an (H, W) array), on the CPU, not sharing memory with ``a``.

    Raises:
        ValueError: If ``a`` is not 2-D or 3-D, or its dtype is none of the above.
    """
    if a.ndim not in (2, 3):
        raise ValueError(f"a must be (H, W) or (H, W, C), got shape {tuple(a.shape)}")
    if a.dtype == np.uint8:
        x = a.astype(np.float32) / 255
    elif a.dtype == np.uint16:
        x = a.astype(np.float32) / 65535
    elif a.dtype == np.bool_ or np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float32)
    else:
        raise ValueError(f"a must be uint8, uint16, bool or floating point, got dtype {a.dtype}")
    if x.ndim == 2:
        x = x[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def tensor_to_array(x: torch.Tensor) -> np.ndarray:
    """Convert an image tensor to a float32 array with values unchanged (no clipping).

    Args:
        x: (1, C, H, W) or (C, H, W) tensor, any device and floating dtype.

    Returns:
        (H, W) float32 array when C = 1, else (H, W, C); a copy.
    """
    chw = _as_chw(x, "x")
    a = chw.numpy().transpose(1, 2, 0)
    return np.ascontiguousarray(a[:, :, 0] if a.shape[2] == 1 else a)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """Convert an image tensor in [0, 1] to uint8: clipped to [0, 1], times 255, rounded to nearest.

    Args:
        x: (1, C, H, W) or (C, H, W) tensor, values on [0, 1].

    Returns:
        (H, W) uint8 array when C = 1, else (H, W, C).
    """
    return _quantize(tensor_to_array(x), 255).astype(np.uint8)


def tensor_to_uint16(x: torch.Tensor) -> np.ndarray:
    """Convert an image tensor in [0, 1] to uint16: clipped to [0, 1], times 65535, rounded to nearest.

    Args:
        x: (1, C, H, W) or (C, H, W) tensor, values on [0, 1].

    Returns:
        (H, W) uint16 array when C = 1, else (H, W, C).
    """
    return _quantize(tensor_to_array(x), 65535).astype(np.uint16)


def _as_chw(x: torch.Tensor, name: str) -> torch.Tensor:
    """Return ``x`` as a detached float32 CPU (C, H, W) tensor, checking its shape."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"{name} must hold one image, (1, C, H, W), got {tuple(x.shape)}")
        x = x[0]
    if x.ndim != 3 or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{name} must be (1, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype == torch.bool):
        raise ValueError(f"{name} must be a floating-point tensor with values on [0, 1], got dtype {x.dtype}")
    return x.detach().to(device="cpu", dtype=torch.float32)


def _quantize(a: np.ndarray, peak: int) -> np.ndarray:
    """Clip float ``a`` to [0, 1], scale to [0, peak] and round to nearest (still float)."""
    if not np.isfinite(a).all():
        raise ValueError("x contains NaN or infinite values; an image needs finite values on [0, 1]")
    return np.rint(np.clip(a, 0.0, 1.0) * peak)
