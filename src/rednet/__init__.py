"""rednet: image restoration with RED-Net (Mao, Shen and Yang, NIPS 2016).

Images are (N, C, H, W) float32 tensors in [0, 1], RGB or single-channel; ``rednet.io`` converts files at the
boundary.

>>> import torch, rednet
>>> model = rednet.REDNet(rednet.REDNetConfig(depth=10, width=8))
>>> rednet.restore(model, torch.rand(1, 1, 5, 7)).shape
torch.Size([1, 1, 5, 7])
"""

from __future__ import annotations

from rednet.infer import restore
from rednet.model import RED10, RED20, RED30, REDNet, REDNetConfig
from rednet.version import __version__
from rednet.zoo import load

__all__ = ["RED10", "RED20", "RED30", "REDNet", "REDNetConfig", "__version__", "load", "restore"]
