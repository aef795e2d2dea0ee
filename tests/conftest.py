from __future__ import annotations

import os
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
