"""rednet: image restoration with RED-Net (Mao, Shen and Yang, NIPS 2016).

Images are (N, C, H, W) float32 tensors in [0, 1], RGB or single-channel; ``rednet.io`` converts files at the
boundary.
"""

from __future__ import annotations

from rednet.model import RED10, RED20, RED30, REDNet, REDNetConfig

__version__ = "0.1.0"

__all__ = ["RED10", "RED20", "RED30", "REDNet", "REDNetConfig", "__version__"]
