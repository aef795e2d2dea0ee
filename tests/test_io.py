"""Tests for rednet.io: every image is generated in tmp_path; nothing is read from the repository."""

from __future__ import annotations

import hashlib
import io as _io
import os
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from conftest import png16_with_a_bad_idat_crc, tiff16_truncated
from rednet import io as rio

cv2 = pytest.importorskip("cv2")

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def noise(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    """Random samples covering the dtype's whole range."""
    high = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, high, size=shape, endpoint=True, dtype=dtype)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def as_uint(x: torch.Tensor, peak: int) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) integers, exactly as stored in a file with this peak value."""
    return np.rint(x[0].permute(1, 2, 0).numpy().astype(np.float64) * peak).astype(np.int64)


def write_bgr16(path: Path, rgb: np.ndarray) -> None:
    """Write (H, W, 3|4) uint16 RGB(A) with OpenCV, the independent 16-bit writer."""
    order = [2, 1, 0, 3][: rgb.shape[2]]
    assert cv2.imwrite(str(path), rgb[:, :, order])


def read_rgb16(path: Path) -> np.ndarray:
    """Read a file with OpenCV, the independent reader, as RGB(A) in file order, any dtype."""
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert a is not None
    if a.ndim == 3:
        a = a[:, :, [2, 1, 0, 3][: a.shape[2]]]
    return a


def png_declaring_size(path: Path, width: int, height: int) -> None:
    """A tiny, valid-looking PNG whose IHDR declares width x height (CRC fixed), for bomb tests."""
    Image.new("L", (8, 8), 0).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def assert_one_line_naming(error: pytest.ExceptionInfo[BaseException], path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# --------------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "channels"),
    [((13, 17), 1), ((13, 17, 3), 3)],
    ids=["gray", "rgb"],
)
@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_8bit_round_trip_is_exact(tmp_path: Path, shape: tuple[int, ...], channels: int, suffix: str) -> None:
    a = noise(shape)
    src = tmp_path / f"in{suffix}"
    Image.fromarray(a).save(src)
    x, info = rio.read_image(src)
    assert x.shape == (1, channels, 13, 17) and x.dtype == torch.float32
    assert (info.bit_depth, info.channels, info.alpha) == (8, channels, None)
    np.testing.assert_array_equal(as_uint(x, 255), a.reshape(13, 17, channels))

    out = rio.write_image(tmp_path / f"out{suffix}", x, info)
    with Image.open(out) as im:
        assert im.mode == Image.fromarray(a).mode
        np.testing.assert_array_equal(np.asarray(im), a)


def test_8bit_rgba_png_round_trip_keeps_alpha_exactly(tmp_path: Path) -> None:
    a = noise((9, 11, 4), seed=1)
    Image.fromarray(a).save(tmp_path / "in.png")
    x, info = rio.read_image(tmp_path / "in.png")
    assert x.shape == (1, 3, 9, 11)
    assert info.alpha is not None and info.alpha.shape == (1, 1, 9, 11) and info.alpha.dtype == torch.float32
    np.testing.assert_array_equal(as_uint(x, 255), a[:, :, :3])
    np.testing.assert_array_equal(as_uint(info.alpha, 255)[:, :, 0], a[:, :, 3])

    rio.write_image(tmp_path / "out.png", x, info)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), a)


def test_8bit_gray_alpha_png_round_trip_is_exact(tmp_path: Path) -> None:
    a = noise((6, 7, 2), seed=2)
    Image.fromarray(a).save(tmp_path / "in.png")
    x, info = rio.read_image(tmp_path / "in.png")
    assert x.shape == (1, 1, 6, 7) and info.alpha is not None
    rio.write_image(tmp_path / "out.png", x, info)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "LA"
        np.testing.assert_array_equal(np.asarray(im), a)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_round_trip_is_exact_and_stays_16bit(tmp_path: Path, suffix: str) -> None:
    a = noise((10, 12), np.uint16, seed=3)
    assert a.max() > 255
    src = tmp_path / f"in{suffix}"
    assert cv2.imwrite(str(src), a)
    x, info = rio.read_image(src)
    assert x.shape == (1, 1, 10, 12) and info.bit_depth == 16
    np.testing.assert_array_equal(as_uint(x, 65535)[:, :, 0], a)

    out = rio.write_image(tmp_path / f"out{suffix}", x, info)
    back = read_rgb16(out)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, a)


@pytest.mark.parametrize("channels", [3, 4], ids=["rgb", "rgba"])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_round_trip_is_exact_and_stays_16bit(tmp_path: Path, suffix: str, channels: int) -> None:
    a = noise((10, 12, channels), np.uint16, seed=4)
    src = tmp_path / f"in{suffix}"
    write_bgr16(src, a)
    x, info = rio.read_image(src)
    assert x.shape == (1, 3, 10, 12) and info.bit_depth == 16
    np.testing.assert_array_equal(as_uint(x, 65535), a[:, :, :3])
    if channels == 4:
        assert info.alpha is not None
        np.testing.assert_array_equal(as_uint(info.alpha, 65535)[:, :, 0], a[:, :, 3])
    else:
        assert info.alpha is None

    out = rio.write_image(tmp_path / f"out{suffix}", x, info)
    back = read_rgb16(out)
    assert back.dtype == np.uint16 and back.shape == a.shape
    np.testing.assert_array_equal(back, a)
    y, info_back = rio.read_image(out)
    assert torch.equal(x, y) and info_back.bit_depth == 16


def test_16bit_colour_png_from_pillow_would_be_8bit_but_we_keep_16(tmp_path: Path) -> None:
    a = np.full((4, 4, 3), 300, np.uint16)  # 300/65535: Pillow alone would read 1/255
    write_bgr16(tmp_path / "in.png", a)
    with Image.open(tmp_path / "in.png") as im:
        assert im.mode == "RGB"  # Pillow's 8-bit view of it
    x, _ = rio.read_image(tmp_path / "in.png")
    assert x.unique().tolist() == [pytest.approx(300 / 65535)]


def test_16bit_gray_alpha_png_round_trip_stays_gray(tmp_path: Path) -> None:
    gray = torch.from_numpy(noise((1, 1, 5, 6), np.uint16, seed=5).astype(np.float32) / 65535)
    alpha = torch.from_numpy(noise((1, 1, 5, 6), np.uint16, seed=6).astype(np.float32) / 65535)
    rio.write_image(tmp_path / "ga.png", gray, rio.ImageInfo(bit_depth=16, channels=1, alpha=alpha))
    back = read_rgb16(tmp_path / "ga.png")  # OpenCV gives gray + alpha as RGBA
    assert back.dtype == np.uint16
    x, info = rio.read_image(tmp_path / "ga.png")
    assert x.shape == (1, 1, 5, 6) and info.bit_depth == 16 and info.alpha is not None
    assert torch.equal(x, gray) and torch.equal(info.alpha, alpha)


def test_16bit_gray_alpha_tiff_is_written_as_rgba_that_reads_back(tmp_path: Path) -> None:
    gray = torch.rand(1, 1, 5, 6, generator=torch.Generator().manual_seed(0))
    alpha = torch.rand(1, 1, 5, 6, generator=torch.Generator().manual_seed(1))
    rio.write_image(tmp_path / "ga.tif", gray, rio.ImageInfo(bit_depth=16, channels=1, alpha=alpha))
    x, info = rio.read_image(tmp_path / "ga.tif")
    assert x.shape == (1, 3, 5, 6) and info.bit_depth == 16 and info.alpha is not None
    assert (x - gray).abs().max() <= 0.5 / 65535 + 1e-7
    assert (info.alpha - alpha).abs().max() <= 0.5 / 65535 + 1e-7


def test_palette_png_with_transparency_reads_as_rgba(tmp_path: Path) -> None:
    im = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    im.save(tmp_path / "p.png", transparency=1)
    x, info = rio.read_image(tmp_path / "p.png")
    assert info.mode == "P" and x.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(as_uint(x, 255)[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(as_uint(x, 255)[1, 0], [0, 0, 255])
    assert info.alpha is not None
    np.testing.assert_array_equal(info.alpha[0, 0].numpy(), [[1, 0], [1, 0]])


def test_palette_png_without_transparency_reads_as_rgb(tmp_path: Path) -> None:
    im = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    im.putpalette([10, 20, 30, 40, 50, 60])
    im.save(tmp_path / "p.png")
    x, info = rio.read_image(tmp_path / "p.png")
    assert x.shape == (1, 3, 1, 2) and info.alpha is None
    np.testing.assert_array_equal(as_uint(x, 255)[0], [[10, 20, 30], [40, 50, 60]])


def test_rgb_png_with_colour_key_gets_alpha(tmp_path: Path) -> None:
    a = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8)
    Image.fromarray(a).save(tmp_path / "k.png", transparency=(4, 5, 6))
    x, info = rio.read_image(tmp_path / "k.png")
    assert x.shape == (1, 3, 1, 2) and info.alpha is not None
    np.testing.assert_array_equal(info.alpha.flatten().numpy(), [1, 0])


def test_bilevel_image_reads_as_zeros_and_ones(tmp_path: Path) -> None:
    bits = np.array([[0, 1, 1], [1, 0, 0]], bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as im:
        assert im.mode == "1"
    x, info = rio.read_image(tmp_path / "b.png")
    assert x.shape == (1, 1, 2, 3) and info.mode == "1" and info.bit_depth == 8
    np.testing.assert_array_equal(x[0, 0].numpy(), bits.astype(np.float32))


def test_lossless_webp_round_trip_is_exact_and_stays_lossless(tmp_path: Path) -> None:
    a = noise((8, 9, 3), seed=7)
    Image.fromarray(a).save(tmp_path / "in.webp", lossless=True)
    x, info = rio.read_image(tmp_path / "in.webp")
    assert info.format == "WEBP" and info.lossless
    np.testing.assert_array_equal(as_uint(x, 255), a)
    rio.write_image(tmp_path / "out.webp", x, info)
    with Image.open(tmp_path / "out.webp") as im:
        np.testing.assert_array_equal(np.asarray(im), a)


def test_lossy_webp_is_recognised_as_lossy(tmp_path: Path) -> None:
    Image.fromarray(noise((8, 8, 3))).save(tmp_path / "in.webp", quality=80)
    _, info = rio.read_image(tmp_path / "in.webp")
    assert not info.lossless


def test_webp_keeps_alpha(tmp_path: Path) -> None:
    a = noise((5, 5, 4), seed=8)
    Image.fromarray(a).save(tmp_path / "in.webp", lossless=True)
    x, info = rio.read_image(tmp_path / "in.webp")
    rio.write_image(tmp_path / "out.webp", x, info)
    with Image.open(tmp_path / "out.webp") as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), a)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:32, 0:32]
    a = np.stack([xx * 8, yy * 8, (xx + yy) * 4], axis=2).astype(np.uint8)  # smooth: JPEG-friendly
    Image.fromarray(a).save(tmp_path / "in.jpg", quality=95)
    x, info = rio.read_image(tmp_path / "in.jpg")
    assert info.format == "JPEG" and not info.lossless and x.shape == (1, 3, 32, 32)
    assert np.abs(as_uint(x, 255) - a).mean() < 3
    rio.write_image(tmp_path / "out.jpg", x, info)
    y, _ = rio.read_image(tmp_path / "out.jpg")
    assert (x - y).abs().mean() < 2 / 255


def test_jpeg_and_bmp_drop_alpha(tmp_path: Path) -> None:
    a = noise((4, 4, 4))
    Image.fromarray(a).save(tmp_path / "in.png")
    x, info = rio.read_image(tmp_path / "in.png")
    for name in ("out.jpg", "out.bmp"):
        rio.write_image(tmp_path / name, x, info)
        with Image.open(tmp_path / name) as im:
            assert im.mode == "RGB"


def test_16bit_source_written_as_jpeg_becomes_8bit(tmp_path: Path) -> None:
    x = torch.full((1, 3, 4, 4), 0.5)
    rio.write_image(tmp_path / "o.jpg", x, rio.ImageInfo(bit_depth=16))
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.mode == "RGB"
    with pytest.raises(ValueError, match="16-bit"):
        rio.write_image(tmp_path / "p.jpg", x, bit_depth=16)


def test_explicit_bit_depth_16_writes_16bit_png(tmp_path: Path) -> None:
    x = torch.full((1, 3, 2, 2), 1000 / 65535)
    rio.write_image(tmp_path / "o.png", x, bit_depth=16)
    back = read_rgb16(tmp_path / "o.png")
    assert back.dtype == np.uint16 and (back == 1000).all()


def test_one_pixel_image_reads(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1), (7, 8, 9)).save(tmp_path / "one.png")
    x, _ = rio.read_image(tmp_path / "one.png")
    assert x.shape == (1, 3, 1, 1)
    assert as_uint(x, 255).flatten().tolist() == [7, 8, 9]


def test_write_accepts_chw_and_clips_and_rounds(tmp_path: Path) -> None:
    x = torch.tensor([[[-0.5, 0.0, 0.5 / 255, 1.49 / 255, 1.0, 2.0]]])  # (1, 1, 6) as (C, H, W)
    rio.write_image(tmp_path / "o.png", x)
    with Image.open(tmp_path / "o.png") as im:
        assert np.asarray(im).tolist() == [[0, 0, 0, 1, 255, 255]]
    assert x[0, 0, 0] == -0.5  # not modified


# --------------------------------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------------------------------


def test_auto_keeps_gray_content_rgb_as_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((3, 3, 3), 77, np.uint8)).save(tmp_path / "g.png")
    x, info = rio.read_image(tmp_path / "g.png")
    assert x.shape[1] == 3 and info.channels == 3


def test_mode_rgb_repeats_gray(tmp_path: Path) -> None:
    a = noise((3, 4))
    Image.fromarray(a).save(tmp_path / "g.png")
    x, info = rio.read_image(tmp_path / "g.png", mode="rgb")
    assert x.shape == (1, 3, 3, 4) and info.channels == 3
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_mode_gray_uses_bt601_luma_like_pillow(tmp_path: Path) -> None:
    a = noise((16, 16, 3), seed=9)
    Image.fromarray(a).save(tmp_path / "c.png")
    x, info = rio.read_image(tmp_path / "c.png", mode="gray")
    assert x.shape == (1, 1, 16, 16) and info.channels == 1
    pillow = np.asarray(Image.fromarray(a).convert("L")).astype(np.float64)
    assert np.abs(x[0, 0].numpy() * 255 - pillow).max() <= 0.51  # we do not round to 8 bits


def test_invalid_mode_raises_value_error(tmp_path: Path) -> None:
    Image.new("L", (2, 2)).save(tmp_path / "g.png")
    with pytest.raises(ValueError, match="mode must be"):
        rio.read_image(tmp_path / "g.png", mode="RGB")  # type: ignore[arg-type]


def test_cmyk_jpeg_reads_as_rgb_with_sensible_values(tmp_path: Path) -> None:
    cmyk = np.zeros((8, 16, 4), np.uint8)
    cmyk[:, :8, 0] = 255  # left half pure cyan, right half white (no ink)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=100)
    x, info = rio.read_image(tmp_path / "c.jpg")
    assert info.mode == "CMYK" and x.shape == (1, 3, 8, 16) and info.icc_profile is None
    rgb = as_uint(x, 255)
    assert np.abs(rgb[:, :4].mean(axis=(0, 1)) - [0, 255, 255]).max() < 8
    assert np.abs(rgb[:, 12:].mean(axis=(0, 1)) - [255, 255, 255]).max() < 8


def test_float_tiff_is_clipped_to_unit_range(tmp_path: Path) -> None:
    a = np.array([[-0.5, 0.25, 0.5, 2.0]], np.float32)
    Image.fromarray(a, mode="F").save(tmp_path / "f.tif")
    x, info = rio.read_image(tmp_path / "f.tif")
    assert info.mode == "F" and info.bit_depth == 16
    assert x.flatten().tolist() == [0.0, 0.25, 0.5, 1.0]


def test_int32_tiff_is_divided_by_65535(tmp_path: Path) -> None:
    a = np.array([[0, 65535, 70000]], np.int32)
    Image.fromarray(a, mode="I").save(tmp_path / "i.tif")
    x, info = rio.read_image(tmp_path / "i.tif")
    assert info.mode == "I" and x.flatten().tolist() == [0.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------------------
# orientation and metadata
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path: Path, orientation: int) -> None:
    a = noise((3, 5, 3), seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(tmp_path / "o.png", exif=exif)
    x, info = rio.read_image(tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as im:
        upright = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(as_uint(x, 255), upright)
    assert info.exif is not None
    reloaded = Image.Exif()
    reloaded.load(info.exif)
    assert reloaded[0x0112] == 1


def test_jpeg_orientation_6_reads_transposed_and_is_written_as_1(tmp_path: Path) -> None:
    a = np.zeros((16, 32, 3), np.uint8)
    a[:, :16] = 255  # stored: white left half, 16 high x 32 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    exif[0x010F] = "TestCam"
    Image.fromarray(a).save(tmp_path / "in.jpg", exif=exif, quality=95)
    x, info = rio.read_image(tmp_path / "in.jpg")
    assert x.shape == (1, 3, 32, 16)  # upright: 32 high x 16 wide
    assert x[0, :, :12].mean() > 0.9 and x[0, :, 20:].mean() < 0.1  # white on top after rotating clockwise

    rio.write_image(tmp_path / "out.jpg", x, info)
    with Image.open(tmp_path / "out.jpg") as im:
        assert im.size == (16, 32)
        assert im.getexif().get(0x0112, 1) == 1
        assert im.getexif()[0x010F] == "TestCam"


PILLOW_ORIENTATION = {  # as PIL.ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright_by_pillow(a: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) samples as Pillow would show them with this EXIF orientation (any dtype)."""
    height, width = a.shape[:2]
    index = Image.fromarray(np.arange(height * width, dtype=np.int32).reshape(height, width), mode="I")
    if orientation in PILLOW_ORIENTATION:
        index = index.transpose(PILLOW_ORIENTATION[orientation])
    return a.reshape(height * width, -1)[np.asarray(index)]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("suffix", "bit_depth"), [(".png", 8), (".tif", 8), (".png", 16), (".tif", 16)])
def test_orientation_is_applied_exactly_once(
    tmp_path: Path, suffix: str, bit_depth: int, orientation: int
) -> None:
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    peak = np.iinfo(dtype).max
    a = noise((3, 5, 4), dtype, seed=orientation)  # RGBA: alpha must turn with the colour
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = torch.from_numpy(a.astype(np.float32) / peak).permute(2, 0, 1)[None]
    info = rio.ImageInfo(bit_depth=bit_depth, exif=exif.tobytes(), alpha=stored[:, 3:])
    rio.write_image(tmp_path / f"o{suffix}", stored[:, :3], info)  # stores the tag, does not turn

    x, back = rio.read_image(tmp_path / f"o{suffix}")
    expected = upright_by_pillow(a, orientation)
    assert back.bit_depth == bit_depth and back.alpha is not None
    np.testing.assert_array_equal(as_uint(x, peak), expected[:, :, :3])
    np.testing.assert_array_equal(as_uint(back.alpha, peak)[:, :, 0], expected[:, :, 3])
    if back.exif is not None:
        tags = Image.Exif()
        tags.load(back.exif)
        assert tags.get(0x0112, 1) == 1


@pytest.mark.parametrize(
    ("suffix", "bit_depth"), [(".png", 8), (".jpg", 8), (".tif", 8), (".webp", 8), (".png", 16), (".tif", 16)]
)
def test_icc_profile_exif_and_dpi_are_preserved(tmp_path: Path, suffix: str, bit_depth: int) -> None:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    info = rio.ImageInfo(bit_depth=bit_depth, icc_profile=SRGB_ICC, exif=exif.tobytes(), dpi=(300.0, 300.0))
    x = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    out = rio.write_image(tmp_path / f"o{suffix}", x, info)

    y, back = rio.read_image(out)
    assert back.bit_depth == bit_depth
    assert back.icc_profile == SRGB_ICC
    assert back.exif is not None
    tags = Image.Exif()
    tags.load(back.exif)
    assert tags[0x010F] == "TestCam"
    assert tags.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05"
    if suffix != ".webp":
        assert back.dpi is not None and back.dpi == pytest.approx((300, 300), abs=0.01)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_tiff_compression_is_kept_or_made_lossless(tmp_path: Path, bit_depth: int) -> None:
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for source, written in [
        ("raw", "raw"),
        ("tiff_adobe_deflate", "tiff_adobe_deflate"),
        ("jpeg", "tiff_adobe_deflate"),
    ]:
        info = rio.ImageInfo(format="TIFF", bit_depth=bit_depth, compression=source)
        out = rio.write_image(tmp_path / f"{source}.tif", x, info)
        y, back = rio.read_image(out)
        assert back.compression == written
        assert (y - x).abs().max() <= 0.5 / (2**bit_depth - 1) + 1e-6


def test_rgb_icc_profile_is_dropped_for_gray_output(tmp_path: Path) -> None:
    Image.fromarray(noise((4, 4, 3))).save(tmp_path / "c.png", icc_profile=SRGB_ICC)
    x, info = rio.read_image(tmp_path / "c.png", mode="gray")
    assert info.icc_profile == SRGB_ICC
    rio.write_image(tmp_path / "g.png", x, info)
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L" and "icc_profile" not in im.info


def test_alpha_of_other_size_raises_value_error(tmp_path: Path) -> None:
    info = rio.ImageInfo(alpha=torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="resize the alpha"):
        rio.write_image(tmp_path / "o.png", torch.zeros(1, 3, 8, 8), info)
    assert not (tmp_path / "o.png").exists()


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


def _truncated_png(path: Path) -> None:
    Image.fromarray(noise((64, 64, 3))).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _text_png(path: Path) -> None:
    path.write_text("these are my notes, not an image\n")


def _empty_png(path: Path) -> None:
    path.write_bytes(b"")


def _gif_named_png(path: Path) -> None:
    Image.new("P", (4, 4)).save(path, format="GIF")


def _truncated_16bit_colour_png(path: Path) -> None:
    write_bgr16(path, noise((64, 64, 3), np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_idat(path: Path) -> None:
    png_declaring_size(path, 3000, 3000)  # below the limit: decoding runs out of data


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_truncated_png, "truncated or corrupt image file ("),
        (_truncated_16bit_colour_png, "truncated or corrupt image file ("),
        (_text_png, "not an image (cannot identify image file)"),
        (_empty_png, "empty file (0 bytes)"),
        (_gif_named_png, "unsupported image format GIF"),
        (_corrupt_idat, "truncated or corrupt image file ("),
    ],
    ids=["truncated", "truncated-16bit-colour", "text", "empty", "gif", "declares-more-than-it-has"],
)
def test_bad_file_raises_one_line_image_error_and_is_left_unchanged(
    tmp_path: Path, make, expected: str
) -> None:
    path = tmp_path / "bad.png"
    make(path)
    before = sha256(path)
    with pytest.raises(rio.ImageError) as error:
        rio.read_image(path)
    assert expected in assert_one_line_naming(error, path)
    assert isinstance(error.value, ValueError)
    assert sha256(path) == before


def test_directory_raises_image_error(tmp_path: Path) -> None:
    with pytest.raises(rio.ImageError) as error:
        rio.read_image(tmp_path)
    assert assert_one_line_naming(error, tmp_path) == f"{tmp_path}: is a directory, not an image file"


def test_missing_file_raises_image_error(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    with pytest.raises(rio.ImageError) as error:
        rio.read_image(path)
    assert assert_one_line_naming(error, path) == f"{path}: file not found"


@pytest.mark.parametrize("side", [12_000, 50_000], ids=["above-our-limit", "above-pillows-limit"])
def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path, side: int) -> None:
    path = tmp_path / "bomb.png"
    png_declaring_size(path, side, side)
    before = sha256(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not leak
        with pytest.raises(rio.ImageError) as error:
            rio.read_image(path)
    message = assert_one_line_naming(error, path)
    assert message == (
        f"{path}: {side * side} pixels exceeds the limit of 100000000 "
        "(set REDNET_MAX_PIXELS or max_pixels= to raise it)"
    )
    assert sha256(path) == before


def test_pillows_own_limit_is_reported_when_ours_is_higher(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    png_declaring_size(path, 50_000, 50_000)
    with pytest.raises(rio.ImageError) as error:
        rio.read_image(path, max_pixels=10**10)
    assert "Pillow's own limit" in assert_one_line_naming(error, path)
    assert Image.MAX_IMAGE_PIXELS is not None  # untouched


def test_max_pixels_argument_refuses_larger_images(tmp_path: Path) -> None:
    Image.new("L", (10, 10)).save(tmp_path / "a.png")
    assert rio.read_image(tmp_path / "a.png", max_pixels=100)[0].shape == (1, 1, 10, 10)
    with pytest.raises(rio.ImageError, match="100 pixels exceeds the limit of 99 "):
        rio.read_image(tmp_path / "a.png", max_pixels=99)


def test_env_var_sets_limit_and_argument_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("L", (10, 10)).save(tmp_path / "a.png")
    monkeypatch.setenv("REDNET_MAX_PIXELS", "50")
    assert rio.max_pixels() == 50
    with pytest.raises(rio.ImageError, match="exceeds the limit of 50 "):
        rio.read_image(tmp_path / "a.png")
    assert rio.max_pixels(1000) == 1000
    assert rio.read_image(tmp_path / "a.png", max_pixels=1000)[0].shape == (1, 1, 10, 10)
    monkeypatch.delenv("REDNET_MAX_PIXELS")
    assert rio.max_pixels() == rio.DEFAULT_MAX_PIXELS == 100_000_000


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_invalid_env_limit_raises_value_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("REDNET_MAX_PIXELS", value)
    with pytest.raises(ValueError, match="REDNET_MAX_PIXELS must be a positive integer"):
        rio.max_pixels()


# --------------------------------------------------------------------------------------------------
# safe writing
# --------------------------------------------------------------------------------------------------


def test_write_leaves_no_temp_files_and_creates_parents(tmp_path: Path) -> None:
    out = rio.write_image(tmp_path / "a" / "b" / "o.png", torch.zeros(1, 1, 2, 2))
    assert out == tmp_path / "a" / "b" / "o.png"
    assert os.listdir(out.parent) == ["o.png"]


def test_written_file_has_normal_permissions(tmp_path: Path) -> None:
    rio.write_image(tmp_path / "o.png", torch.zeros(1, 1, 2, 2))
    (tmp_path / "plain").write_bytes(b"")  # created the ordinary way, under the same umask
    assert (tmp_path / "o.png").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_failed_write_keeps_target_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "o.png"
    rio.write_image(target, torch.zeros(1, 3, 4, 4))
    before = sha256(target)

    def failing_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        rio.write_image(target, torch.ones(1, 3, 4, 4), overwrite=True)
    assert sha256(target) == before
    assert os.listdir(tmp_path) == ["o.png"]


def test_refuses_to_overwrite_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "o.png"
    rio.write_image(target, torch.zeros(1, 1, 2, 2))
    before = sha256(target)
    with pytest.raises(FileExistsError) as error:
        rio.write_image(target, torch.ones(1, 1, 2, 2))
    assert assert_one_line_naming(error, target).endswith("already exists; pass overwrite=True to replace it")
    assert sha256(target) == before
    assert os.listdir(tmp_path) == ["o.png"]


def test_overwrite_true_replaces_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "o.png"
    rio.write_image(target, torch.zeros(1, 1, 2, 2))
    rio.write_image(target, torch.ones(1, 1, 2, 2), overwrite=True)
    with Image.open(target) as im:
        assert np.asarray(im).tolist() == [[255, 255], [255, 255]]


def test_refuses_to_write_onto_protected_input_even_with_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("L", (2, 2), 9).save(src)
    before = sha256(src)
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.png"
    link.symlink_to(src)
    hard = tmp_path / "sub" / "hard.png"
    os.link(src, hard)  # another name for the same file (same st_dev and st_ino)
    x = torch.ones(1, 1, 2, 2)
    for spelling in (src, tmp_path / "sub" / ".." / "in.png", link, hard):
        for overwrite in (False, True):
            with pytest.raises(FileExistsError) as error:
                rio.write_image(spelling, x, protect=[src], overwrite=overwrite)
            assert "is an input file" in assert_one_line_naming(error, spelling)
    assert sha256(src) == before and sha256(hard) == before


def test_a_write_killed_mid_way_leaves_a_temp_file_that_is_no_image_and_is_removed_later(
    tmp_path: Path,
) -> None:
    """kill -9 inside write_image skips every cleanup: what it leaves must not pass for an input, and
    remove_stale_temps clears it, and only it."""
    import subprocess
    import sys

    out = tmp_path / "o.png"
    killed = (
        "import os, signal, sys, torch\n"
        "from PIL import Image\n"
        "from rednet import io\n"
        "def save(self, fp, *args, **kwargs):\n"
        "    fp.write(b'partial')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "Image.Image.save = save\n"
        "io.write_image(sys.argv[1], torch.zeros(1, 3, 4, 4))\n"
    )
    done = subprocess.run([sys.executable, "-c", killed, str(out)], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr
    (left,) = tmp_path.iterdir()
    assert not out.exists() and left.name.startswith(".o.png.")
    assert not rio.is_image_file(left)
    Image.new("L", (2, 2)).save(tmp_path / "kept.png")
    others = [tmp_path / ".other.png.0123abcd.rednet-tmp", tmp_path / "notes.rednet-tmp"]
    for other in others:
        other.write_bytes(b"")
    from rednet.data import list_images

    assert list_images(tmp_path) == [tmp_path / "kept.png"]
    assert rio.remove_stale_temps([out]) == [left]
    assert sorted(tmp_path.iterdir()) == sorted([tmp_path / "kept.png", *others])


@pytest.mark.parametrize("make", [png16_with_a_bad_idat_crc, tiff16_truncated], ids=["png", "tiff"])
def test_native_decoder_messages_go_to_the_debug_log_not_to_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, make
) -> None:
    path = make(tmp_path)
    with caplog.at_level("DEBUG", logger="rednet.io"), pytest.raises(rio.ImageError) as error:
        rio.read_image(path)
    assert "truncated or corrupt image file" in assert_one_line_naming(error, path)
    assert capfd.readouterr().err == ""  # file descriptor 2 included: capfd sees what C code prints
    assert any(r.levelname == "DEBUG" and str(path) in r.getMessage() for r in caplog.records)
    print("stderr still works", file=sys.stderr)  # and descriptor 2 is back where it was
    os.write(2, b"fd 2 too\n")
    assert capfd.readouterr().err == "stderr still works\nfd 2 too\n"


def test_rejects_unknown_suffix_and_bad_tensors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot write .gif"):
        rio.write_image(tmp_path / "o.gif", torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\) channels"):
        rio.write_image(tmp_path / "o.png", torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="one image"):
        rio.write_image(tmp_path / "o.png", torch.zeros(2, 3, 2, 2))
    with pytest.raises(ValueError, match="NaN"):
        rio.write_image(tmp_path / "o.png", torch.full((1, 1, 2, 2), float("nan")))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------------------


def test_array_to_tensor_scales_by_dtype() -> None:
    assert rio.array_to_tensor(np.array([[255]], np.uint8)).tolist() == [[[[1.0]]]]
    assert rio.array_to_tensor(np.array([[65535]], np.uint16)).tolist() == [[[[1.0]]]]
    assert rio.array_to_tensor(np.array([[0.25]], np.float64)).tolist() == [[[[0.25]]]]
    x = rio.array_to_tensor(np.zeros((4, 5, 3), np.uint8))
    assert x.shape == (1, 3, 4, 5) and x.dtype == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        rio.array_to_tensor(np.zeros((2, 2), np.int64))


def test_uint_conversions_round_trip() -> None:
    a8 = noise((5, 6, 3))
    assert np.array_equal(rio.tensor_to_uint8(rio.array_to_tensor(a8)), a8)
    a16 = noise((5, 6), np.uint16)
    back = rio.tensor_to_uint16(rio.array_to_tensor(a16))
    assert back.dtype == np.uint16 and back.shape == (5, 6) and np.array_equal(back, a16)
    x = torch.rand(1, 3, 4, 4)
    assert np.array_equal(rio.tensor_to_array(x), x[0].permute(1, 2, 0).numpy())


def test_is_image_file_goes_by_suffix() -> None:
    assert rio.is_image_file("a/B.PNG") and rio.is_image_file(Path("x.tiff")) and rio.is_image_file("y.JPeG")
    assert not rio.is_image_file("notes.txt") and not rio.is_image_file("png")
    assert set(rio.IMAGE_SUFFIXES) == {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp"}


def test_read_mask_takes_white_as_damage_and_refuses_colour_alpha_and_a_wrong_size(tmp_path):
    a = np.zeros((6, 8), np.uint8)
    a[2:4, 3:6] = 255
    Image.fromarray(a).save(tmp_path / "m.png")
    Image.fromarray(a > 0).save(tmp_path / "bits.png")  # a 1-bit mask
    for name in ("m.png", "bits.png"):
        mask = rio.read_mask(tmp_path / name, size=(6, 8))
        assert mask.shape == (1, 1, 6, 8) and mask.dtype == torch.float32
        assert torch.equal(mask[0, 0], torch.from_numpy(a == 255).float())  # 1 = damaged, 0 = known
    Image.fromarray(np.stack([a] * 3, axis=-1)).save(tmp_path / "rgb.png")
    with pytest.raises(rio.ImageError, match=r"rgb.png: a mask must be black and white.*colour \(RGB\)"):
        rio.read_mask(tmp_path / "rgb.png")
    Image.fromarray(np.stack([a, a], axis=-1), mode="LA").save(tmp_path / "la.png")
    with pytest.raises(rio.ImageError, match="alpha"):
        rio.read_mask(tmp_path / "la.png")
    with pytest.raises(rio.ImageError, match=r"m.png: the mask is 8x6 pixels but the image is 9x6"):
        rio.read_mask(tmp_path / "m.png", size=(6, 9))


def test_a_tiff_whose_second_page_is_corrupt_reads_its_first_page(tmp_path: Path) -> None:
    """Found by rednet fuzz: counting the pages of a TIFF whose next IFD has no width raised TypeError."""
    buf = _io.BytesIO()
    a = np.zeros((8, 8, 3), np.uint8)
    Image.fromarray(a).save(buf, "TIFF", save_all=True, append_images=[Image.fromarray(a + 9)])
    data = bytearray(buf.getvalue())
    first = struct.unpack("<I", data[4:8])[0]
    entries = struct.unpack("<H", data[first : first + 2])[0]
    second = struct.unpack("<I", data[first + 2 + 12 * entries : first + 6 + 12 * entries])[0]
    for i in range(struct.unpack("<H", data[second : second + 2])[0]):
        entry = second + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 256:  # ImageWidth: now an unknown tag
            data[entry : entry + 2] = struct.pack("<H", 0x7FFF)
    path = tmp_path / "two-pages.tif"
    path.write_bytes(bytes(data))
    x, _ = rio.read_image(path)
    assert x.shape == (1, 3, 8, 8) and float(x.max()) == 0.0


def _read_in_a_fresh_process(path: Path) -> str:
    """What reading ``path`` prints on standard error in a Python without pytest's warning and log capture."""
    import subprocess

    script = "import sys\nfrom rednet import io\ntry:\n    io.read_image(sys.argv[1])\n"
    script += "except io.ImageError:\n    pass\n"
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_reading_a_png_with_corrupt_exif_prints_nothing(tmp_path: Path) -> None:
    """Found by rednet fuzz: Pillow's "Truncated File Read" warning, raised reading EXIF, was printed."""
    from rednet.fuzz_corpus import png_bytes, png_chunks

    buf = _io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "a camera maker"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "PNG", exif=exif.tobytes())
    chunks = png_chunks(buf.getvalue())
    i = next(i for i, (kind, _) in enumerate(chunks) if kind == b"eXIf")
    body = bytearray(chunks[i][1])
    order = "<" if body[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", body[4:8])[0]
    body[ifd + 10 : ifd + 14] = struct.pack(order + "I", 10_000)  # the maker's text lies past the end
    chunks[i] = (b"eXIf", bytes(body))
    path = tmp_path / "exif.png"
    path.write_bytes(png_bytes(chunks))
    x, _ = rio.read_image(path)
    assert x.shape == (1, 3, 8, 8)
    assert _read_in_a_fresh_process(path) == ""


def test_a_tiff_with_too_many_samples_per_pixel_is_refused_printing_nothing(tmp_path: Path) -> None:
    """Found by rednet fuzz: Pillow logs "More samples per pixel than can be decoded" with logger.error, which
    Python's last-resort handler printed before rednet's own one-line error."""
    buf = _io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    first = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[first : first + 2])[0]):
        entry = first + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 277:  # SamplesPerPixel
            data[entry + 8 : entry + 10] = struct.pack("<H", 2048)
    path = tmp_path / "samples.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(rio.ImageError, match="samples.tif: not an image"):
        rio.read_image(path)
    assert _read_in_a_fresh_process(path) == ""


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_a_one_pixel_image_with_an_exif_orientation_reads(tmp_path: Path, orientation: int) -> None:
    """Found by rednet fuzz: a flipped 1 x 1 array has a negative stride that torch.from_numpy refused."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "dot.png"
    Image.fromarray(np.full((1, 1, 4), 200, np.uint8)).save(path, exif=exif.tobytes())
    x, info = rio.read_image(path)
    assert x.shape == (1, 3, 1, 1) and info.alpha is not None and info.alpha.shape == (1, 1, 1, 1)
