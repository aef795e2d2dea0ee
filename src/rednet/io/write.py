"""Writing tensors back as image files the way their source was stored: :func:`write_image` and its encoders
(the rules are in :mod:`rednet.io`)."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, TiffImagePlugin

from rednet.io.atomic import _check_target, _write_atomically
from rednet.io.formats import (
    _ALPHA_FORMATS,
    _EXIF_IFD,
    _EXIF_PREFIX,
    _GPS_IFD,
    _PNG_SIGNATURE,
    _SIXTEEN_BIT_FORMATS,
    _SUFFIX_FORMATS,
    _TIFF_EXIF_TAGS,
    IMAGE_SUFFIXES,
    ImageInfo,
    _as_chw,
    _quantize,
)

logger = logging.getLogger(__name__)


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
