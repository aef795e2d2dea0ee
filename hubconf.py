"""torch.hub entry points: ``torch.hub.load(repo_dir, "red30", source="local")``.

Each entry builds a RED-Net; ``weights=NAME_OR_PATH`` loads shipped or exported weights instead (nothing is
downloaded).
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "safetensors"]

try:
    import rednet  # noqa: F401
except ModuleNotFoundError:  # a plain clone: use its src/ folder
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from rednet.model import RED10, RED20, RED30, REDNet  # noqa: E402
from rednet.zoo import load  # noqa: E402


def _build(preset, weights: str | None, **overrides) -> REDNet:
    import dataclasses

    if weights is not None:
        return load(weights)
    return REDNet(dataclasses.replace(preset, **overrides))


def red10(weights: str | None = None, **overrides) -> REDNet:
    """RED10 (5 conv + 5 deconv, no skips); ``overrides`` are REDNetConfig fields (width, channels, ...)."""
    return _build(RED10, weights, **overrides)


def red20(weights: str | None = None, **overrides) -> REDNet:
    """RED20 (10 conv + 10 deconv, skips every 2 layers)."""
    return _build(RED20, weights, **overrides)


def red30(weights: str | None = None, **overrides) -> REDNet:
    """RED30 (15 conv + 15 deconv, skips every 2 layers); width=128 is the released Caffe model's size."""
    return _build(RED30, weights, **overrides)
