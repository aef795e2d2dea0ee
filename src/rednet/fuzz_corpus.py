"""The fuzzer's seed files and mutations (:mod:`rednet.fuzz` runs them).

:func:`seed_corpus` makes real image files from a crop of scikit-image's astronaut. Each mutation in
:data:`MUTATIONS` is a hypothesis strategy of the mutated bytes of a file: byte flips, truncations, spliced
bytes, PNG chunk data and chunk order (lengths and CRCs fixed), IHDR fields, a cut or lengthened IDAT stream,
TIFF and EXIF IFD entries, ICC profile header and tag-table fields.
"""

from __future__ import annotations

import io as _io
import struct
import zlib
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

__all__ = ["MUTATIONS", "png_bytes", "png_chunks", "seed_corpus"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- seed corpus


def seed_corpus(side: int = 24) -> dict[str, bytes]:
    """Real image files, each a ``side`` x ``side`` crop of scikit-image's astronaut: name -> bytes."""
    import cv2
    import numpy as np
    from PIL import Image, ImageCms
    from skimage import data

    rgb = data.astronaut()[100 : 100 + side, 180 : 180 + side]
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    exif[0x010F] = "rednet"
    exif_bytes = exif.tobytes()
    alpha = np.linspace(0, 255, side * side, dtype=np.uint8).reshape(side, side)

    def pil(image: Image.Image, fmt: str, **options: Any) -> bytes:
        buf = _io.BytesIO()
        image.save(buf, fmt, **options)
        return buf.getvalue()

    def ocv(suffix: str, a: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(suffix, a)
        assert ok
        return buf.tobytes()

    im, g = Image.fromarray(rgb), Image.fromarray(gray)
    rgba = Image.fromarray(np.dstack([rgb, alpha]))
    palette = im.quantize(16)
    palette.info["transparency"] = 3
    deep = (rgb.astype(np.uint16) * 257)[..., ::-1].copy()  # OpenCV writes BGR
    return {
        "rgb8-exif-icc.png": pil(im, "PNG", exif=exif_bytes, icc_profile=icc),
        "gray8.png": pil(g, "PNG"),
        "gray16.png": ocv(".png", gray.astype(np.uint16) * 257),
        "rgb16.png": ocv(".png", deep),
        "palette-transparent.png": pil(palette, "PNG", transparency=3),
        "rgba8.png": pil(rgba, "PNG"),
        "baseline-exif-icc.jpg": pil(im, "JPEG", quality=80, exif=exif_bytes, icc_profile=icc),
        "progressive.jpg": pil(im, "JPEG", quality=60, progressive=True),
        "gray.jpg": pil(g, "JPEG", quality=70),
        "cmyk.jpg": pil(im.convert("CMYK"), "JPEG", quality=80),
        "raw-exif.tif": pil(im, "TIFF", exif=exif_bytes),
        "deflate-icc.tif": pil(im, "TIFF", compression="tiff_adobe_deflate", icc_profile=icc),
        "lzw-gray.tif": pil(g, "TIFF", compression="tiff_lzw"),
        "rgb16.tif": ocv(".tif", deep),
        "lossless.webp": pil(im, "WEBP", lossless=True),
        "lossy-alpha.webp": pil(rgba, "WEBP", quality=70),
        "rgb.bmp": pil(im, "BMP"),
        "palette.bmp": pil(im.quantize(16), "BMP"),
        "animated.gif": pil(im.quantize(16), "GIF"),
    }


# ----------------------------------------------------------------------------------------------- PNG chunks


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """``[(type, data), ...]`` of a PNG file, or ``None`` when it is not one whose chunks all parse."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    chunks, at = [], len(PNG_SIGNATURE)
    while at + 12 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if at + 12 + length > len(data):
            return None
        chunks.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks if chunks and at == len(data) else None


def png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG file of these chunks, each with its length and a correct CRC."""
    parts = [PNG_SIGNATURE]
    for kind, body in chunks:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        parts.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc))
    return b"".join(parts)


def _fix_png(data: bytes) -> bytes:
    """The same PNG with every CRC correct again (data unchanged when its chunks do not parse)."""
    chunks = png_chunks(data)
    return png_bytes(chunks) if chunks is not None else data


# ------------------------------------------------------------------------------------------------ mutations

# Values a field is set to: the edges of its width, and small ones.
_EDGES = st.sampled_from([0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 4096, 32767, 65535, 2**31 - 1, 2**32 - 1])
_U32 = _EDGES | st.integers(0, 2**32 - 1) | st.integers(0, 64)


@st.composite
def flip_bytes(draw: Callable, data: bytes) -> bytes:
    """One to eight bytes XOR-ed with a non-zero value."""
    if not data:
        return data
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
    return bytes(out)


@st.composite
def truncate(draw: Callable, data: bytes) -> bytes:
    """The file cut short, anywhere from its first byte to its last."""
    return data[: draw(st.integers(1, max(1, len(data) - 1)))]


@st.composite
def splice(draw: Callable, data: bytes) -> bytes:
    """Bytes inserted somewhere: random ones, or a copy of a stretch of the file."""
    at = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        extra = draw(st.binary(min_size=1, max_size=64))
    else:
        start = draw(st.integers(0, max(0, len(data) - 1)))
        extra = data[start : start + draw(st.integers(1, 256))]
    return data[:at] + extra + data[at:]


@st.composite
def png_chunk_data(draw: Callable, data: bytes) -> bytes:
    """A PNG chunk's data flipped, cut short or lengthened; length and CRC fixed."""
    chunks = png_chunks(data)
    if chunks is None:
        return draw(flip_bytes(data))
    i = draw(st.integers(0, len(chunks) - 1))
    kind, body = chunks[i]
    change = draw(st.integers(0, 2))
    if change == 0 and body:
        body = draw(flip_bytes(body))
    elif change == 1:
        body = body[: draw(st.integers(0, len(body)))]
    else:
        body = body + draw(st.binary(min_size=1, max_size=32))
    chunks[i] = (kind, body)
    return png_bytes(chunks)


_CHUNK_TYPES = [b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"gAMA", b"sBIT", b"iCCP", b"eXIf", b"pHYs"]
_CHUNK_TYPES += [b"tEXt", b"zTXt", b"iTXt", b"acTL", b"fcTL", b"fdAT", b"cHRM", b"sRGB", b"bKGD", b"tIME"]


@st.composite
def png_chunk_order(draw: Callable, data: bytes) -> bytes:
    """A PNG chunk dropped, repeated, moved, or a new one (a real type, random data) inserted; CRCs fixed."""
    chunks = png_chunks(data)
    if chunks is None:
        return draw(splice(data))
    change = draw(st.integers(0, 3))
    i = draw(st.integers(0, len(chunks) - 1))
    if change == 0:
        del chunks[i]
    elif change == 1:
        chunks.insert(i, chunks[i])
    elif change == 2:
        chunks.insert(draw(st.integers(0, len(chunks))), chunks.pop(i))
    else:
        chunk = (draw(st.sampled_from(_CHUNK_TYPES)), draw(st.binary(max_size=48)))
        chunks.insert(draw(st.integers(0, len(chunks))), chunk)
    return png_bytes(chunks)


@st.composite
def png_ihdr(draw: Callable, data: bytes) -> bytes:
    """A field of the IHDR chunk (width, height, bit depth, colour type, compression, filter, interlace)
    set to another value; CRC fixed."""
    chunks = png_chunks(data)
    if chunks is None or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        return draw(flip_bytes(data))
    body = bytearray(chunks[0][1])
    field = draw(st.integers(0, 6))
    if field < 2:
        value = draw(_EDGES | st.integers(0, 4096))
        body[4 * field : 4 * field + 4] = struct.pack(">I", value)
    else:
        body[6 + field] = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 7, 8, 16, 255]) | st.integers(0, 255))
    chunks[0] = (b"IHDR", bytes(body))
    return png_bytes(chunks)


@st.composite
def png_idat_short(draw: Callable, data: bytes) -> bytes:
    """The image data (IDAT) decompressed, cut short or lengthened, compressed again (or its zlib stream
    cut), in one chunk; CRC fixed."""
    chunks = png_chunks(data)
    if chunks is None or not any(k == b"IDAT" for k, _ in chunks):
        return draw(truncate(data))
    first = next(i for i, (k, _) in enumerate(chunks) if k == b"IDAT")
    stream = b"".join(b for k, b in chunks if k == b"IDAT")
    try:
        raw = zlib.decompress(stream)
    except zlib.error:
        raw = stream
    change = draw(st.integers(0, 2))
    if change == 0:
        stream = zlib.compress(raw[: draw(st.integers(0, max(0, len(raw) - 1)))])
    elif change == 1:
        stream = stream[: draw(st.integers(0, max(0, len(stream) - 1)))]
    else:
        stream = zlib.compress(raw + draw(st.binary(min_size=1, max_size=256)))
    rest = [c for c in chunks if c[0] != b"IDAT"]
    rest.insert(first, (b"IDAT", stream))
    return png_bytes(rest)


def _tiff_header(data: bytes) -> int | None:
    """Offset of a TIFF header (a TIFF file, or the EXIF block of a JPEG, PNG, WebP or TIFF), or None."""
    found = [i for i in (data.find(b"II*\x00"), data.find(b"MM\x00*")) if i >= 0]
    return min(found) if found else None


@st.composite
def ifd_field(draw: Callable, data: bytes) -> bytes:
    """A field of an IFD entry (tag, type, count or value/offset) of a TIFF file or an EXIF block, or the
    entry count or the IFD offset, set to another value; PNG CRCs fixed."""
    base = _tiff_header(data)
    if base is None or base + 8 > len(data):
        return draw(flip_bytes(data))
    order = "<" if data[base : base + 2] == b"II" else ">"
    out = bytearray(data)
    (ifd,) = struct.unpack(order + "I", data[base + 4 : base + 8])
    at = base + ifd
    if at + 2 > len(data) or draw(st.integers(0, 9)) == 0:
        out[base + 4 : base + 8] = struct.pack(order + "I", draw(_U32))
        return _fix_png(bytes(out))
    (count,) = struct.unpack(order + "H", data[at : at + 2])
    entries = max(0, min(count, (len(data) - at - 2) // 12))
    if entries == 0 or draw(st.integers(0, 9)) == 0:
        out[at : at + 2] = struct.pack(order + "H", draw(_EDGES) & 0xFFFF)
        return _fix_png(bytes(out))
    entry = at + 2 + 12 * draw(st.integers(0, entries - 1))
    field = draw(st.sampled_from([(0, "H"), (2, "H"), (4, "I"), (8, "I")]))
    offset, fmt = field
    value = draw(_U32) & (0xFFFF if fmt == "H" else 0xFFFFFFFF)
    out[entry + offset : entry + offset + struct.calcsize(fmt)] = struct.pack(order + fmt, value)
    return _fix_png(bytes(out))


# ICC header fields (offset, size): profile size, version, class, colour space, PCS, the tag count.
_ICC_FIELDS = [(0, 4), (8, 4), (12, 4), (16, 4), (20, 4), (36, 4), (128, 4)]


def _mutate_icc(draw: Callable, profile: bytes) -> bytes:
    out = bytearray(profile)
    if len(out) < 132:
        return draw(flip_bytes(profile))
    if draw(st.booleans()):
        offset, size = draw(st.sampled_from(_ICC_FIELDS))
    else:  # a tag table entry: signature, offset or size
        (count,) = struct.unpack(">I", profile[128:132])
        tags = max(1, min(count, (len(profile) - 132) // 12))
        offset, size = 132 + 12 * draw(st.integers(0, tags - 1)) + 4 * draw(st.integers(0, 2)), 4
    out[offset : offset + size] = struct.pack(">I", draw(_U32))
    return bytes(out)


@st.composite
def icc_field(draw: Callable, data: bytes) -> bytes:
    """A field of the embedded ICC profile's header or tag table set to another value: inside PNG's
    compressed iCCP chunk (recompressed, CRC fixed), or in place in JPEG, TIFF and WebP files."""
    chunks = png_chunks(data)
    if chunks is not None:
        for i, (kind, body) in enumerate(chunks):
            if kind == b"iCCP" and b"\x00" in body:
                name, rest = body.split(b"\x00", 1)
                try:
                    profile = zlib.decompress(rest[1:])
                except zlib.error:
                    break
                chunks[i] = (kind, name + b"\x00" + rest[:1] + zlib.compress(_mutate_icc(draw, profile)))
                return png_bytes(chunks)
        return draw(png_chunk_data(data))
    at = data.find(b"acsp")  # the profile's signature, 36 bytes into it
    if at < 36:
        return draw(flip_bytes(data))
    start = at - 36
    (size,) = struct.unpack(">I", data[start : start + 4])
    end = start + min(size, len(data) - start)
    return data[:start] + _mutate_icc(draw, data[start:end]) + data[end:]


MUTATIONS: tuple[Callable[[bytes], st.SearchStrategy[bytes]], ...] = (
    flip_bytes,
    truncate,
    splice,
    png_chunk_data,
    png_chunk_order,
    png_ihdr,
    png_idat_short,
    ifd_field,
    icc_field,
)
"""The mutations a case draws from (one to three of them, in turn)."""
