"""Read images into tensors and write tensors back as images, keeping what the user had.

This is the only module of rednet that sees numpy, Pillow or uint8. Everything else works on
(N, C, H, W) float32 tensors in [0, 1] (C = 1 for gray, 3 for RGB).

Reading (:func:`read_image`) accepts PNG, JPEG, TIFF, BMP and WebP (other formats, GIF say, are
refused, whatever their suffix) and follows explicit rules, never guessing from content:

* 8-bit samples are divided by 255, 16-bit samples by 65535.
* Bilevel ("1") images give 0.0 / 1.0.
* Palette ("P", "PA") images are expanded to RGB, or RGB + alpha when they have transparency.
  "L" and "RGB" images with a transparent colour key (PNG ``tRNS``) get an alpha channel.
* CMYK images (CMYK JPEG/TIFF) are converted to RGB through their embedded ICC profile when they
  have one (the result is sRGB, so no profile is kept), else with Pillow's naive ``convert("RGB")``.
  No other colour management is done: RGB pixels are returned as stored and their ICC profile is
  kept for writing back.
* 32-bit integer ("I") images are divided by 65535 (the range of the 16-bit files Pillow reports
  as "I") and clipped to [0, 1]; float ("F") images are taken as already on [0, 1] and clipped.
  Both log a warning when clipping changed values, and both are written back as 16-bit.
* 16-bit colour PNG and TIFF files (RGB, RGBA and gray + alpha, which Pillow 13 still reduces
  to 8 bits) are decoded with OpenCV (``opencv-python-headless``) so their full precision is kept.
* The EXIF (or TIFF) orientation is applied, so the tensor is upright; the returned EXIF block
  then says orientation 1 (or, for TIFF sources, has no orientation tag).
* Multi-frame files (multi-page TIFF, animated WebP) give their first frame.
* Alpha is never mixed into the colour channels: it is returned separately in
  :attr:`ImageInfo.alpha` and re-attached by :func:`write_image`.

Size limit: an image whose header declares more than :data:`DEFAULT_MAX_PIXELS` (100 million)
pixels is refused *before* any pixel is decoded, so a decompression bomb (a tiny file declaring,
say, 30000 x 30000 pixels) costs nothing. Raise the limit with the ``max_pixels=`` argument of
:func:`read_image` or the ``REDNET_MAX_PIXELS`` environment variable (the argument wins; see
:func:`max_pixels`). Pillow keeps its own hard limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``, about
179 million pixels), which rednet neither relies on nor changes; an image above it is refused
with the same :class:`ImageError` even when ``max_pixels`` is larger.

Writing (:func:`write_image`) picks the format from the file suffix, keeps 16 bits where the
format allows it (PNG, TIFF), re-attaches alpha (PNG, TIFF, WebP), the ICC profile and EXIF, and
writes atomically: the file appears complete or not at all, and an existing file is replaced only
with ``overwrite=True``; a file listed in ``protect=`` (the inputs) never is. The temporary file is
``.NAME.XXXXXXXX.rednet-tmp`` beside the output: no image suffix, so no lister of images takes one
that a killed process left behind for an input, and :func:`remove_stale_temps` clears them.

Native decoders (libpng inside OpenCV, libtiff inside Pillow) print their complaints on the process's
standard error; :func:`read_image` sends them, and Pillow's warnings, to this module's debug log instead, so
that a bad file gives only the one-line error below.

Every expected failure on bad input raises :class:`ImageError` (a ``ValueError``) whose message
is one line naming the file, e.g. ``"photo.png: truncated or corrupt image file (image file is
truncated)"``.
"""

from __future__ import annotations

import contextlib
import io as _io
import logging
import os
import re
import secrets
import stat
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch
from PIL import Image, ImageCms, TiffImagePlugin, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "GRAY_WEIGHTS",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS_ENV",
    "ImageError",
    "ImageInfo",
    "array_to_tensor",
    "is_image_file",
    "max_pixels",
    "read_image",
    "remove_stale_temps",
    "replace_atomically",
    "tensor_to_array",
    "tensor_to_uint8",
    "tensor_to_uint16",
    "write_image",
]

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
_TEMP_SUFFIX = ".rednet-tmp"
# Redirecting file descriptor 2 is process-wide: one decode at a time may do it.
_STDERR_LOCK = threading.Lock()

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


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = None,
    mode: Literal["auto", "rgb", "gray"] = "auto",
) -> tuple[torch.Tensor, ImageInfo]:
    """Read an image file into a tensor, upright, with what is needed to write it back alike.

    Reads PNG (8/16-bit), TIFF (8/16-bit, 32-bit int and float), JPEG (also CMYK), BMP and WebP.
    See the module docstring for how each pixel mode is scaled to [0, 1].

    Args:
        path: The image file.
        max_pixels: Refuse images whose header declares more pixels (width x height) than this,
            before decoding. ``None``: the ``REDNET_MAX_PIXELS`` environment variable, else
            :data:`DEFAULT_MAX_PIXELS` (100 million).
        mode: "auto" keeps gray images gray (C = 1) and colour images colour (C = 3), even an RGB
            file whose channels are equal; "rgb" repeats a gray channel three times; "gray" turns
            colour into luma, 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, as Pillow's
            ``convert("L")``), computed in float without rounding.

    Returns:
        ``(x, info)``: x is (1, C, H, W) float32 on [0, 1], C = 1 or 3, alpha excluded;
        info is the :class:`ImageInfo` (alpha, bit depth, ICC profile, EXIF, dpi, ...).

    Raises:
        ImageError: If the file is missing, empty, a directory, not a supported image, truncated
            or corrupt, or larger than the pixel limit (one-line message naming the file).
        ValueError: If ``max_pixels``, ``mode`` or ``REDNET_MAX_PIXELS`` is invalid.
    """
    if mode not in ("auto", "rgb", "gray"):
        raise ValueError(f"mode must be 'auto', 'rgb' or 'gray', got {mode!r}")
    limit = _resolve_max_pixels(max_pixels)
    path = Path(path)
    name = str(path)
    _check_readable(path, name)
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below, after Pillow and OpenCV are done
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read file ({_one_line(e.strerror or e)})") from None
    # Pillow warns ("Corrupt EXIF data", "Tag data larger than file") while reading headers and EXIF too,
    # not only while decoding: every warning of the read goes to the debug log.
    with fp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        im = _open(fp, name, limit)
        with im:
            x, info = _decode(im, fp, path, name)
    for w in caught:
        logger.debug("%s: %s", name, w.message)
    if mode == "rgb" and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    elif mode == "gray" and x.shape[1] == 3:
        weights = torch.tensor(GRAY_WEIGHTS, dtype=torch.float32).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True).clamp_(0.0, 1.0)
    return x.contiguous(), replace(info, channels=int(x.shape[1]))


_resolve_max_pixels = max_pixels  # read_image's argument shadows the public name


@contextlib.contextmanager
def _native_messages_to_log(name: str) -> Iterator[None]:
    """Meanwhile, send what C libraries write on file descriptor 2, and Python warnings, to the debug log.

    libpng (inside OpenCV) and libtiff (inside Pillow) print on the process's standard error ("libpng
    error: IDAT: CRC error", "TIFFFillStrip: Read error on strip 0"), and Pillow warns ("Corrupt EXIF
    data"), before :func:`read_image` raises its own one-line error. Where descriptor 2 cannot be
    duplicated (closed), only the warnings are caught.
    """
    pillow = logging.getLogger("PIL")
    with _STDERR_LOCK, tempfile.TemporaryFile() as capture, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:
            saved = None
        if saved is not None:
            os.dup2(capture.fileno(), 2)
        # Pillow logs errors too ("More samples per pixel than can be decoded"), which Python's last-resort
        # handler prints when no logging is set up: they go to the debug log with the rest.
        handler, propagate = _ToDebugLog(name), pillow.propagate
        pillow.addHandler(handler)
        pillow.propagate = False
        try:
            yield
        finally:
            pillow.removeHandler(handler)
            pillow.propagate = propagate
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            capture.seek(0)
            printed = capture.read().decode(errors="replace")
            for message in [*printed.splitlines(), *(str(w.message) for w in caught)]:
                if message.strip():
                    logger.debug("%s: %s", name, message.strip())


class _ToDebugLog(logging.Handler):
    """Send a record (of Pillow's loggers) to this module's debug log, naming the file being read."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def emit(self, record: logging.LogRecord) -> None:
        logger.debug("%s: %s", self.name, record.getMessage())


def read_mask(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an inpainting mask: a black-and-white image, white (>= half) where the image is damaged.

    This is the convention of ``rednet degrade --save-mask`` and of most inpainting tools (OpenCV, GIMP
    selections): paint the damage white on black.

    Args:
        path: a 1-bit or gray image file (8 or 16 bits, no alpha); a colour mask is refused, since a
            photo given by mistake would otherwise pass as a mask.
        size: the (H, W) the mask must have (the image's); None = any.

    Returns:
        (1, 1, H, W) float32, 1 = pixel known, 0 = pixel to fill (the library's convention).

    Raises:
        ImageError: the file is not a readable image, is colour or has alpha, or has the wrong size.
    """
    x, info = read_image(path)
    if x.shape[1] != 1 or info.alpha is not None:
        kind = "has an alpha channel" if info.alpha is not None else f"is colour ({info.mode})"
        raise ImageError(f"{path}: a mask must be black and white (1-bit or gray), but this one {kind}")
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        got, want = "x".join(map(str, x.shape[-2:][::-1])), "x".join(map(str, tuple(size)[::-1]))
        raise ImageError(f"{path}: the mask is {got} pixels but the image is {want}")
    return (x < 0.5).to(torch.float32)


def _check_readable(path: Path, name: str) -> None:
    """Raise ImageError unless ``path`` is a non-empty regular file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read file ({_one_line(e.strerror or e)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{name}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{name}: not a regular file")
    if st.st_size == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")


def _open(fp: IO[bytes], name: str, limit: int) -> Image.Image:
    """Open (not decode) an image, refusing unsupported formats and images above ``limit`` pixels."""
    with warnings.catch_warnings():
        # We check the size ourselves below; Pillow's warning (above ~89 MP) is noise here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with _native_messages_to_log(name):
                im = Image.open(fp, formats=_READ_FORMATS)
        except UnidentifiedImageError:
            raise ImageError(f"{name}: {_unidentified_reason(fp)}") from None
        except Image.DecompressionBombError as e:
            raise ImageError(_too_large_message(name, str(e), limit)) from None
        except _DECODE_ERRORS as e:
            raise ImageError(f"{name}: truncated or corrupt image file ({_one_line(e)})") from None
    width, height = im.size
    if width * height > limit:
        im.close()
        raise ImageError(_too_many_pixels(name, width * height, limit))
    if width == 0 or height == 0:
        im.close()
        raise ImageError(f"{name}: truncated or corrupt image file (size {width}x{height})")
    return im


def _unidentified_reason(fp: IO[bytes]) -> str:
    """Say why Pillow could not identify the file: not an image, or an image format we do not read."""
    fp.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _native_messages_to_log(str(getattr(fp, "name", "?"))), Image.open(fp) as other:
                fmt = other.format  # header only: any plugin, nothing decoded
    except Exception:  # any failure here just means "not an image"
        return "not an image (cannot identify image file)"
    supported = ", ".join(_READ_FORMATS)
    return f"unsupported image format {fmt} (rednet reads {supported})"


def _too_large_message(name: str, pillow_message: str, limit: int) -> str:
    """Message for Pillow's own DecompressionBombError, in our words when the pixel count is known."""
    m = re.search(r"\((\d+) pixels\)", pillow_message)
    if m is None:
        return f"{name}: image too large ({_one_line(pillow_message)})"
    pixels = int(m.group(1))
    if pixels > limit:
        return _too_many_pixels(name, pixels, limit)
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return f"{name}: {pixels} pixels exceeds Pillow's own limit of {pillow_limit}, which rednet cannot raise"


def _too_many_pixels(name: str, pixels: int, limit: int) -> str:
    """The message for an image above rednet's pixel limit."""
    remedy = f"set {MAX_PIXELS_ENV} or max_pixels= to raise it"
    return f"{name}: {pixels} pixels exceeds the limit of {limit} ({remedy})"


def _decode(im: Image.Image, fp: IO[bytes], path: Path, name: str) -> tuple[torch.Tensor, ImageInfo]:
    """Decode an opened image into an upright (1, C, H, W) tensor and its ImageInfo."""
    fmt = im.format or "PNG"
    src_mode = im.mode
    sixteen_bit_layout = _sixteen_bit_layout(im)  # from the tile list, which load() clears
    # Pillow's TIFF loader applies the orientation and drops the tag, so read it first. (Not for
    # PNG: there getexif() loads the image, and Pillow leaves the tag alone.)
    stored_orientation = _header_orientation(im) if fmt == "TIFF" else 1
    try:
        with _native_messages_to_log(name):
            im.load()
    except _DECODE_ERRORS as e:
        raise ImageError(f"{name}: truncated or corrupt image file ({_one_line(e)})") from None

    icc = im.info.get("icc_profile") or None
    exif, orientation = _exif_and_orientation(im, fmt, name)  # orientation still to apply to im

    if sixteen_bit_layout is not None:
        # Pillow has applied stored_orientation to im (TIFF) or left `orientation` to us (others).
        file_orientation = orientation if orientation != 1 else stored_orientation
        width, height = im.size
        upright = (width, height) if orientation >= 5 else (height, width)
        colour, alpha = _decode_16bit(fp, fmt, file_orientation, upright, sixteen_bit_layout, name)
        bit_depth = 16
    else:
        colour, alpha, bit_depth, icc = _pixels(im, icc, name)
        colour = _orient(colour, orientation)
        alpha = None if alpha is None else _orient(alpha, orientation)
    alpha_t = None if alpha is None else torch.from_numpy(_c_order(alpha))[None, None]

    x = torch.from_numpy(_c_order(colour.transpose(2, 0, 1)))[None]
    dpi = im.info.get("dpi")
    info = ImageInfo(
        path=path,
        format=fmt,
        mode=src_mode,
        bit_depth=bit_depth,
        channels=int(x.shape[1]),
        alpha=alpha_t,
        icc_profile=bytes(icc) if icc else None,
        exif=exif,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi and len(dpi) == 2 else None,
        lossless=_is_lossless(fmt, fp, im.info.get("compression")),
        compression=im.info.get("compression") if fmt == "TIFF" else None,
    )
    _log_frames(im, name)
    return x, info


def _log_frames(im: Image.Image, name: str) -> None:
    """Log that a file has several frames (the first is read); a later frame may be corrupt, and that is
    no error: counting frames seeks through them (a TIFF's next IFD), so it comes after the first is read."""
    try:
        frames = getattr(im, "n_frames", 1)
    except _DECODE_ERRORS as e:
        logger.info("%s: reading the first frame; the next cannot be read (%s)", name, _one_line(e))
        return
    if frames > 1:
        logger.info("%s: %d frames; reading the first", name, frames)


def _sixteen_bit_layout(im: Image.Image) -> Literal["gray_alpha", "rgb", "rgba"] | None:
    """How to unpack a file whose 16-bit samples Pillow would reduce to 8 bits; ``None`` if it would not.

    Pillow 13 keeps 16 bits only for single-channel images ("I;16"); it opens 16-bit RGB, RGBA and
    gray + alpha as 8-bit "RGB", "RGBA" (sic, for gray + alpha PNG) and "LA".
    """
    if im.mode not in ("RGB", "RGBA", "LA", "RGBX"):
        return None
    rawmodes = []
    for tile in im.tile:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmodes.append(
            args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
        )
    sixteen = any(";16" in r for r in rawmodes)
    if not sixteen and im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258)
        sixteen = 16 in (bits if isinstance(bits, tuple) else (bits,))
    if not sixteen:
        return None
    if im.mode == "LA" or any(r.startswith("LA;") for r in rawmodes):
        return "gray_alpha"
    return "rgba" if im.mode == "RGBA" else "rgb"


def _decode_16bit(
    fp: IO[bytes], fmt: str, orientation: int, upright: tuple[int, int], layout: str, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a 16-bit multi-channel PNG/TIFF with OpenCV, upright.

    OpenCV's own handling of orientation differs between formats and versions (its TIFF decoder
    applies the tag even with IMREAD_UNCHANGED, and OpenCV 5.0 fails on TIFF orientations 5-8),
    so it is given a copy of the file with the orientation neutralised, and we apply it here.

    Args:
        fp: The open file.
        fmt: "PNG" or "TIFF".
        orientation: The file's EXIF/TIFF orientation, 1-8.
        upright: (height, width) of the image once upright.
        layout: "gray_alpha", "rgb" or "rgba", from :func:`_sixteen_bit_layout`.
        name: The file name for messages.

    Returns:
        Colour (H, W, 1 or 3) float32 on [0, 1] in RGB order, and alpha (H, W) or ``None``.
    """
    try:
        import cv2
    except ImportError:
        raise ImageError(
            f"{name}: 16-bit colour images need OpenCV; install it with `pip install opencv-python-headless`"
        ) from None
    fp.seek(0)
    data = fp.read()
    if orientation != 1:
        data = _png_without_exif(data) if fmt == "PNG" else _tiff_with_orientation_1(data)
    with _native_messages_to_log(name):
        a = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)  # BGR(A), as stored
    if a is None or a.dtype != np.uint16 or a.ndim != 3:
        raise ImageError(f"{name}: truncated or corrupt image file (OpenCV cannot decode its 16-bit data)")
    a = _orient(a, orientation)
    if a.shape[:2] != upright:
        raise ImageError(f"{name}: truncated or corrupt image file (OpenCV and Pillow disagree on its size)")
    a = a.astype(np.float32) / 65535
    n = a.shape[2]
    if layout == "gray_alpha":  # OpenCV gives gray + alpha as BGRA with B = G = R
        return a[:, :, :1], (a[:, :, -1] if n in (2, 4) else None)
    if n < 3:
        raise ImageError(
            f"{name}: truncated or corrupt image file (OpenCV found {n} channels, expected 3 or 4)"
        )
    return a[:, :, 2::-1], (a[:, :, 3] if layout == "rgba" and n == 4 else None)


def _png_without_exif(data: bytes) -> bytes:
    """A PNG file's bytes without its eXIf chunks (unchanged if the chunk structure is broken)."""
    out = [data[:8]]
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length
        if data[pos + 4 : pos + 8] != b"eXIf":
            out.append(data[pos:end])
        pos = end
    return b"".join(out) if pos == len(data) else data


def _tiff_with_orientation_1(data: bytes) -> bytes:
    """A TIFF file's bytes with the first IFD's Orientation set to 1 (unchanged if not found)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 16:
        return data
    (magic,) = struct.unpack(order + "H", data[2:4])
    if magic == 42:  # classic TIFF: 12-byte entries, 4-byte counts and offsets
        (ifd,) = struct.unpack(order + "I", data[4:8])
        count_fmt, entry_size, value_at = "H", 12, 8
    elif magic == 43:  # BigTIFF: 20-byte entries, 8-byte counts and offsets
        (ifd,) = struct.unpack(order + "Q", data[8:16])
        count_fmt, entry_size, value_at = "Q", 20, 12
    else:
        return data
    size = struct.calcsize(count_fmt)
    if ifd + size > len(data):
        return data
    (entries,) = struct.unpack(order + count_fmt, data[ifd : ifd + size])
    for i in range(entries):
        entry = ifd + size + i * entry_size
        if entry + entry_size > len(data):
            break
        tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
        if tag == _ORIENTATION and kind == 3:  # SHORT, stored in the entry itself
            patched = bytearray(data)
            patched[entry + value_at : entry + value_at + 2] = struct.pack(order + "H", 1)
            return bytes(patched)
    return data


def _header_orientation(im: Image.Image) -> int:
    """The orientation tag (1-8) as read from the header, before decoding; 1 if none or unreadable."""
    try:
        orientation = int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # malformed EXIF is reported (once) by _exif_and_orientation
        return 1
    return orientation if orientation in range(1, 9) else 1


def _pixels(
    im: Image.Image, icc: bytes | None, name: str
) -> tuple[np.ndarray, np.ndarray | None, int, bytes | None]:
    """Convert a loaded Pillow image to colour (H, W, C) float32, alpha (H, W) or None, bit depth, ICC."""
    mode = im.mode
    transparency = "transparency" in im.info
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or transparency or (im.palette is not None and im.palette.mode == "RGBA")
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "L" and transparency:
        im = im.convert("LA")
    elif mode == "RGB" and transparency:
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode == "RGBX":
        im = im.convert("RGB")
    elif mode == "CMYK":
        im, icc = _cmyk_to_rgb(im, icc, name), None
    elif mode in ("YCbCr", "LAB", "HSV"):
        try:
            im = im.convert("RGB")
        except ValueError as e:
            raise ImageError(f"{name}: unsupported pixel mode {mode} ({_one_line(e)})") from None

    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.float32)[:, :, None], None, 8, icc
    if mode in ("L", "LA", "RGB", "RGBA"):
        a = np.asarray(im, dtype=np.float32) / 255
        if a.ndim == 2:
            a = a[:, :, None]
        if mode in ("LA", "RGBA"):
            return a[:, :, :-1], a[:, :, -1], 8, icc
        return a, None, 8, icc
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32)[:, :, None] / 65535, None, 16, icc
    if mode in ("I", "F"):
        raw = np.asarray(im).astype(np.float64)
        scaled = raw / 65535 if mode == "I" else raw
        a = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        if not np.array_equal(a, scaled):
            rule = "divided by 65535 and clipped" if mode == "I" else "clipped"
            logger.warning("%s: %s-mode values outside [0, 1] after scaling were %s", name, mode, rule)
        return a.astype(np.float32)[:, :, None], None, 16, icc
    raise ImageError(f"{name}: unsupported pixel mode {mode}")


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None, name: str) -> Image.Image:
    """CMYK to RGB: through the embedded ICC profile to sRGB if any, else Pillow's naive convert."""
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(_io.BytesIO(icc))
            rgb = ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if rgb is not None:
                return rgb
        except (ImageCms.PyCMSError, OSError, ValueError) as e:
            logger.warning("%s: unusable CMYK ICC profile (%s); converting without it", name, _one_line(e))
    return im.convert("RGB")


def _exif_and_orientation(im: Image.Image, fmt: str, name: str) -> tuple[bytes | None, int]:
    """Return the EXIF block to keep (prefixed, orientation 1) and the orientation to apply (1-8)."""
    try:
        exif = im.getexif()
        orientation = int(exif.get(_ORIENTATION, 1))
        if fmt == "TIFF":  # the EXIF "block" of a TIFF is its own first IFD: keep the descriptive tags only
            kept = Image.Exif()
            for tag in _TIFF_EXIF_TAGS:
                if tag in exif:
                    kept[tag] = exif[tag]
            for tag in (_EXIF_IFD, _GPS_IFD):
                sub = exif.get_ifd(tag) if tag in exif else {}
                if sub:
                    kept[tag] = sub
            if _ORIENTATION in kept:
                kept[_ORIENTATION] = 1
            data = kept.tobytes() if len(kept) else None
        else:
            data = im.info.get("exif") or None
            if data is not None and not data.startswith(_EXIF_PREFIX):
                data = _EXIF_PREFIX + data
            if data is not None and orientation != 1:
                exif[_ORIENTATION] = 1
                data = exif.tobytes()
    except Exception as e:  # malformed EXIF must not make the image unreadable
        logger.warning("%s: ignoring unreadable EXIF data (%s)", name, _one_line(e))
        return None, 1
    if orientation not in range(1, 9):
        orientation = 1
    return data, orientation


def _c_order(a: np.ndarray) -> np.ndarray:
    """``a`` in C order with no negative stride, as ``torch.from_numpy`` needs. (``np.ascontiguousarray``
    keeps a flipped array whose flipped axes all have length 1, such as a rotated 1 x 1 image, as it is.)"""
    return np.ascontiguousarray(a) if all(s >= 0 for s in a.strides) else a.copy()


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W) or (H, W, C) array, as PIL.ImageOps.exif_transpose."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def _is_lossless(fmt: str, fp: IO[bytes], compression: Any) -> bool:
    """Whether the source stored its pixels losslessly."""
    if fmt in _LOSSY_FORMATS:
        return False
    if fmt == "TIFF":
        return compression not in ("jpeg", "tiff_jpeg", "webp")
    if fmt == "WEBP":
        return _webp_is_lossless(fp)
    return True


def _webp_is_lossless(fp: IO[bytes]) -> bool:
    """Whether a WebP file's image is VP8L (lossless) rather than VP8 (lossy)."""
    fp.seek(0)
    head = fp.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return False
    while True:
        chunk = fp.read(8)
        if len(chunk) < 8:
            return False
        fourcc, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if fourcc == b"VP8L":
            return True
        if fourcc in (b"VP8 ", b"ANMF"):
            return False
        fp.seek(size + (size & 1), os.SEEK_CUR)


def _one_line(e: object) -> str:
    """An exception's message on one line (its type name if it has no message)."""
    text = " ".join(str(e).split())
    return text or type(e).__name__


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------


def write_image(
    path: str | os.PathLike[str],
    x: torch.Tensor,
    info: ImageInfo | None = None,
    *,
    overwrite: bool = False,
    protect: Iterable[str | os.PathLike[str]] = (),
    bit_depth: int | None = None,
    quality: int = 95,
) -> Path:
    """Write an image tensor to a file, atomically, the way its source was stored.

    The format comes from the suffix (.png, .tif/.tiff, .jpg/.jpeg, .bmp, .webp). Values are
    clipped to [0, 1] and rounded to the nearest 8- or 16-bit level. From ``info`` it keeps:
    the bit depth (16 bits in PNG and TIFF; JPEG, BMP and WebP are 8-bit), the alpha channel
    (PNG, TIFF, WebP; dropped for JPEG and BMP), the ICC profile (not BMP), the EXIF block (not
    BMP; orientation 1, since :func:`read_image` made the pixels upright), dpi (not WebP), the
    TIFF compression (lossless codecs; a JPEG-compressed TIFF is written with Deflate), and
    whether WebP is lossless (when the source was lossless). An ICC profile whose colour space
    does not fit the output (an RGB profile on a gray image, say, after ``mode="gray"``) is
    dropped. Gray is written as gray except in WebP, which has no gray mode, and 16-bit
    gray + alpha TIFF, which Pillow cannot read back: both are written as RGB(A). JPEG is written
    at ``quality``, as is lossy WebP.

    The file is written to a temporary file in the target folder and then renamed over the
    target, so a failure leaves no partial file and an existing target untouched. Missing parent
    folders are created.

    Args:
        path: The output file.
        x: (1, C, H, W) or (C, H, W) float tensor, C = 1 (gray) or 3 (RGB), values on [0, 1].
        info: From :func:`read_image` of the source, or ``None`` (8-bit, no alpha or metadata).
            Its alpha, if used, must be (1, 1, H, W) with x's H and W (resize it yourself after
            super-resolution).
        overwrite: Replace an existing file (never one listed in ``protect``).
        protect: Files that must never be written (typically the inputs), whatever ``overwrite``
            says; compared as files, not spellings (links, hard links, ``..`` are seen through).
        bit_depth: 8 or 16 to override ``info.bit_depth``; 16 needs PNG or TIFF.
        quality: JPEG and lossy WebP quality, 1-100.

    Returns:
        The path written.

    Raises:
        FileExistsError: If the file is in ``protect``, or exists and ``overwrite`` is False.
        IsADirectoryError: If ``path`` is a directory.
        ValueError: If ``x``, ``info.alpha``, ``bit_depth``, ``quality`` or the suffix is invalid.
        OSError: If the file cannot be written (the target is then unchanged).
    """
    path = Path(path)
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        raise ValueError(
            f"{path}: cannot write {path.suffix or 'a file without suffix'}; use one of {suffixes}"
        )
    colour = _as_chw(x, "x")
    if colour.shape[0] not in (1, 3):
        raise ValueError(
            f"x must have 1 (gray) or 3 (RGB) channels, got {tuple(x.shape)}; alpha goes in info"
        )
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got {quality!r}")
    depth = _output_bit_depth(fmt, bit_depth, info)
    height, width = colour.shape[1:]
    alpha = None
    if info is not None and info.alpha is not None and fmt in _ALPHA_FORMATS:
        alpha = _as_chw(info.alpha, "info.alpha")
        if alpha.shape != (1, height, width):
            raise ValueError(
                f"info.alpha must be (1, 1, {height}, {width}) to match x, got {tuple(info.alpha.shape)}; "
                "resize the alpha to the output size first"
            )
    peak = 65535 if depth == 16 else 255
    channels = colour if alpha is None else torch.cat([colour, alpha])
    dtype = np.uint16 if depth == 16 else np.uint8
    samples = _quantize(channels.numpy().transpose(1, 2, 0), peak).astype(dtype)

    _check_target(path, overwrite, protect)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = _encoder(fmt, samples, info, quality)
    _write_atomically(path, encode, overwrite)
    return path


def _output_bit_depth(fmt: str, bit_depth: int | None, info: ImageInfo | None) -> int:
    """The bit depth to write: explicit > info > 8, limited to what the format stores."""
    if bit_depth is not None:
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
        if bit_depth == 16 and fmt not in _SIXTEEN_BIT_FORMATS:
            raise ValueError(f"{fmt} cannot store 16-bit images; write .png or .tif, or pass bit_depth=8")
        return bit_depth
    if info is not None and info.bit_depth == 16 and fmt in _SIXTEEN_BIT_FORMATS:
        return 16
    return 8


def _check_target(path: Path, overwrite: bool, protect: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse to write onto a directory, a protected file or (without overwrite) an existing file."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; give an output file name")
    for p in protect:
        if same_file(path, Path(p)):
            raise FileExistsError(input_message(path))
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(_exists_message(path))


def input_message(path: Path) -> str:
    """The message for refusing to write over an input file (whatever the flags)."""
    return f"{path}: is an input file; refusing to overwrite it (inputs are never replaced: write elsewhere)"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (same inode if both exist, else same resolved path)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def replace_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Make a file through ``write(tmp)`` on a temporary path beside ``path``, then rename it over ``path``.

    Readers never see a partial file and an interrupted write leaves the old file (if any) untouched; the
    temporary file (hidden, same suffix) is removed on failure. For non-image files: checkpoints, weights,
    JSON, Markdown, plots. Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_atomically(path: Path, encode: Any, overwrite: bool) -> None:
    """Write via ``encode(file)`` to a temporary file beside ``path``, then move it into place."""
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            encode(f)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _create_temp(path: Path) -> tuple[Path, int]:
    """Create an empty hidden file beside ``path`` (honouring the umask, unlike mkstemp's 0600), named
    ``.NAME.XXXXXXXX.rednet-tmp``: without an image suffix, so that no image lister takes it for an input."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TEMP_SUFFIX}")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: cannot create a temporary file for {path.name}")


def remove_stale_temps(outputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Remove the temporary files that writes of ``outputs`` killed mid-way (``kill -9``, power loss) left.

    Only this module's own pattern for these very outputs, ``.NAME.XXXXXXXX.rednet-tmp`` beside each
    (8 hex digits), is removed: other files, and the temporary files of other outputs, are left alone.
    Each folder is read once.

    Returns:
        The files removed.
    """
    names: dict[Path, set[str]] = {}
    for output in map(Path, outputs):
        names.setdefault(output.parent, set()).add(output.name)
    pattern = re.compile(rf"\.(.+)\.[0-9a-f]{{8}}{re.escape(_TEMP_SUFFIX)}")
    removed = []
    for folder, wanted in names.items():
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as entries:
            for entry in entries:
                match = pattern.fullmatch(entry.name)
                if match and match.group(1) in wanted and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


def _link_no_clobber(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists, atomically where the file system allows."""
    try:
        os.link(tmp, path)  # fails if path appeared since we checked; the finally removes tmp
    except FileExistsError:
        raise FileExistsError(_exists_message(path)) from None
    except OSError:  # no hard links here (FAT, some network shares): check, then rename
        if path.exists():
            raise FileExistsError(_exists_message(path)) from None
        os.replace(tmp, path)


def _exists_message(path: Path) -> str:
    """The message for refusing to replace an existing file."""
    return f"{path}: already exists; pass overwrite=True to replace it"


def _encoder(fmt: str, samples: np.ndarray, info: ImageInfo | None, quality: int) -> Any:
    """Return a function writing ``samples`` ((H, W, C) uint8/uint16, alpha last) in ``fmt`` to a file."""
    exif = info.exif if info is not None else None
    dpi = info.dpi if info is not None else None
    if samples.shape[2] in (1, 2) and (
        fmt == "WEBP" or (fmt == "TIFF" and samples.shape[2] == 2 and samples.dtype == np.uint16)
    ):
        # WebP has no gray; Pillow cannot read back 16-bit gray + alpha TIFF: write RGB(A)
        samples = np.concatenate([np.repeat(samples[:, :, :1], 3, axis=2), samples[:, :, 1:]], axis=2)
    channels = samples.shape[2]
    icc = _matching_icc(info.icc_profile if info is not None else None, 1 if channels < 3 else 3)
    if samples.dtype == np.uint16 and channels > 1:
        if fmt == "PNG":
            return lambda f: f.write(_encode_png16(samples, icc=icc, exif=exif, dpi=dpi))
        compressed = _tiff_compression(info) != "raw"
        return lambda f: f.write(_encode_tiff16(samples, icc=icc, exif=exif, dpi=dpi, compress=compressed))

    im = Image.fromarray(samples[:, :, 0] if channels == 1 else samples)  # L, LA, RGB, RGBA, or I;16
    options: dict[str, Any] = {}
    if icc and fmt != "BMP":
        options["icc_profile"] = icc
    if exif and fmt != "BMP":
        options["exif"] = exif
    if dpi and fmt != "WEBP":
        options["dpi"] = dpi
    if fmt == "JPEG":
        options["quality"] = quality
    elif fmt == "WEBP":
        if info is not None and info.lossless:
            options.update(lossless=True, quality=100)
        else:
            options["quality"] = quality
    elif fmt == "TIFF":
        options["compression"] = _tiff_compression(info)
    return lambda f: im.save(f, format=fmt, **options)


def _matching_icc(icc: bytes | None, colour_channels: int) -> bytes | None:
    """The ICC profile if its colour space (header bytes 16-20) fits the output's gray or RGB, else None."""
    if not icc:
        return None
    space = icc[16:20]
    if space == (b"GRAY" if colour_channels == 1 else b"RGB "):
        return icc
    logger.info("dropping the %s ICC profile, which does not fit a %d-channel image", space, colour_channels)
    return None


def _tiff_compression(info: ImageInfo | None) -> str:
    """The compression to write a TIFF with: the source's if lossless and common, else Deflate."""
    source = info.compression if info is not None else None
    if source is None or source == "raw":
        return "raw"
    if source in ("tiff_lzw", "packbits", "tiff_adobe_deflate"):
        return source
    return "tiff_adobe_deflate"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _encode_png16(
    samples: np.ndarray, *, icc: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None
) -> bytes:
    """Encode (H, W, C) uint16 samples, C = 2 (gray + alpha), 3 (RGB) or 4 (RGBA), as a 16-bit PNG."""
    height, width, channels = samples.shape
    colour_type = {2: 4, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(samples.astype(">u2")).view(np.uint8).reshape(height, width * channels * 2)
    bpp = channels * 2
    filtered = rows.copy()
    filtered[:, bpp:] -= rows[:, :-bpp]  # filter type 1 ("Sub"), uint8 arithmetic wraps as PNG wants
    scanlines = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)
    stream = zlib.compress(scanlines.tobytes(), 6)

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    out = [_PNG_SIGNATURE, _png_chunk(b"IHDR", header)]
    if icc:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        ppm = [round(d / 0.0254) for d in dpi]
        out.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif[len(_EXIF_PREFIX) :] if exif.startswith(_EXIF_PREFIX) else exif))
    step = 1 << 20
    out.extend(_png_chunk(b"IDAT", stream[i : i + step]) for i in range(0, len(stream), step))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def _encode_tiff16(
    samples: np.ndarray,
    *,
    icc: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
    compress: bool,
) -> bytes:
    """Encode (H, W, C) uint16 samples, C = 2, 3 or 4 (alpha last), as a little-endian 16-bit TIFF.

    One strip, uncompressed or Deflate with the horizontal predictor. Pillow cannot write
    16-bit colour, so the IFD is built with its ImageFileDirectory_v2, as Pillow's own writer does.
    """
    height, width, channels = samples.shape
    if compress:
        diff = samples.copy()
        diff[:, 1:] -= samples[:, :-1]  # predictor 2, per sample, uint16 arithmetic wraps as TIFF wants
        strip = zlib.compress(np.ascontiguousarray(diff.astype("<u2")).tobytes(), 6)
    else:
        strip = np.ascontiguousarray(samples.astype("<u2")).tobytes()

    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if exif:
        tags = Image.Exif()
        tags.load(exif)
        for tag in list(tags):
            if tag in (_EXIF_IFD, _GPS_IFD):
                sub = tags.get_ifd(tag)
                if sub:
                    ifd[tag] = sub
            elif tag in _TIFF_EXIF_TAGS:
                ifd[tag] = tags[tag]
    ifd[256] = width  # ImageWidth
    ifd[257] = height  # ImageLength
    ifd[258] = (16,) * channels  # BitsPerSample
    ifd[259] = 8 if compress else 1  # Compression: Adobe Deflate or none
    ifd[262] = 1 if channels == 2 else 2  # PhotometricInterpretation: BlackIsZero or RGB
    ifd[277] = channels  # SamplesPerPixel
    ifd[278] = height  # RowsPerStrip
    ifd[284] = 1  # PlanarConfiguration: contiguous
    ifd[339] = (1,) * channels  # SampleFormat: unsigned integer
    if channels in (2, 4):
        ifd[338] = (2,)  # ExtraSamples: unassociated alpha
    if compress:
        ifd[317] = 2  # Predictor: horizontal differencing
    if dpi:
        ifd[296] = 2  # ResolutionUnit: inch
        ifd[282] = float(dpi[0])
        ifd[283] = float(dpi[1])
    if icc:
        ifd[34675] = icc  # InterColorProfile
    ifd.tagtype[273] = ifd.tagtype[279] = 4  # LONG
    ifd[279] = (len(strip),)  # StripByteCounts
    ifd[273] = (0,)  # StripOffsets: relative to the end of the IFD, fixed up by tobytes
    header = b"II" + struct.pack("<HI", 42, 8)
    return header + ifd.tobytes(8) + strip
