"""Reading image files into tensors: :func:`read_image` and :func:`read_mask` (the rules are in
:mod:`rednet.io`)."""

from __future__ import annotations

import io as _io
import logging
import os
import re
import stat
import struct
import warnings
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch
from PIL import Image, ImageCms, UnidentifiedImageError

from rednet.io.formats import (
    _DECODE_ERRORS,
    _EXIF_IFD,
    _EXIF_PREFIX,
    _GPS_IFD,
    _LOSSY_FORMATS,
    _ORIENTATION,
    _READ_FORMATS,
    _TIFF_EXIF_TAGS,
    GRAY_WEIGHTS,
    MAX_PIXELS_ENV,
    ImageError,
    ImageInfo,
    max_pixels,
)
from rednet.io.quiet import _native_messages_to_log

logger = logging.getLogger(__name__)

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
    except OSError as e:
        raise _unreadable(name, e) from None
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


def read_mask(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an inpainting mask: a black-and-white image, white (>= half) where the image is damaged.

    This is the convention of ``rednet degrade --save-mask`` and of most inpainting tools (OpenCV, GIMP
    selections): paint the damage white on black.

    Args:
        path: a 1-bit or gray image file (8 or 16 bits, no alpha); a colour mask is refused, since a
            photo given by mistake would otherwise pass as a mask.
        size: the (H, W) the mask must have (the image's); None = any.

    Returns:
        (1, 1, H, W) float32, 1 = pixel damaged (to fill), 0 = known (the library's convention too).

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
    return (x >= 0.5).to(torch.float32)


def _unreadable(name: str, e: OSError) -> ImageError:
    """The one-line error for a file that cannot be opened or looked at."""
    if isinstance(e, FileNotFoundError):
        return ImageError(f"{name}: file not found")
    if isinstance(e, PermissionError):
        return ImageError(f"{name}: permission denied")
    return ImageError(f"{name}: cannot read file ({_one_line(e.strerror or e)})")


def _check_readable(path: Path, name: str) -> None:
    """Raise ImageError unless ``path`` is a non-empty regular file."""
    try:
        st = path.stat()
    except OSError as e:
        raise _unreadable(name, e) from None
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
