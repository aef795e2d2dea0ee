from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch


def _data_root() -> Path | None:
    env = os.environ.get("REDNET_DATA")
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[2] / "shared" / "datasets"]
    return next((p for p in candidates if p.is_dir()), None)


@pytest.fixture
def data_root() -> Path:
    """The benchmark data folder; tests that need it skip cleanly when it is absent."""
    root = _data_root()
    if root is None:
        pytest.skip("benchmark data not found (set REDNET_DATA)")
    return root


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) uint8 array -> (1, C, H, W) float32 in [0, 1]."""
    t = torch.from_numpy(np.array(a)).float() / 255
    return t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]


def png16_with_a_bad_idat_crc(folder: Path) -> Path:
    """folder/bad.png, a 16-bit colour PNG whose IDAT checksum is wrong: Pillow reads on, then OpenCV's
    libpng prints "libpng error: IDAT: CRC error" on file descriptor 2."""
    import cv2

    path = folder / "bad.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 65535, (8, 8, 3), dtype=np.uint16))
    data = bytearray(path.read_bytes())
    at = data.find(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4 : at])
    data[at + 4 + length] ^= 1
    path.write_bytes(bytes(data))
    return path


def tiff16_truncated(folder: Path) -> Path:
    """folder/bad.tif, a Deflate 16-bit colour TIFF cut short: libtiff (inside Pillow) prints
    "TIFFFillStrip: Read error on strip 0" on file descriptor 2."""
    from rednet import io

    path = folder / "bad.tif"
    io.write_image(
        path, torch.rand(1, 3, 16, 16), io.ImageInfo(bit_depth=16, compression="tiff_adobe_deflate")
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    return path
