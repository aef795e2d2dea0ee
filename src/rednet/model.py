"""RED-Net: very deep convolutional encoder-decoder with symmetric skip connections.

Mao, Shen and Yang, "Image Restoration Using Very Deep Convolutional Encoder-Decoder Networks with
Symmetric Skip Connections", NIPS 2016 (arXiv:1603.09056).

From the paper: an encoder of 3x3 convolutions and a mirrored decoder of 3x3 transposed convolutions, a ReLU
after every layer, no pooling, skip connections every two layers from a convolution to its mirrored
deconvolution (element-wise sum, then ReLU), residual learning, and (§2.1.1) a faster variant whose encoder
down-samples with strided convolutions while the mirrored deconvolutions up-sample.

From the released Caffe model (``REDNet_ch1.prototxt``, ``REDNet_ch3.prototxt``, ``netforward.m``):
padding 1, the last deconvolution is linear (no ReLU), conv output ``c_2k`` is added to deconv output
``d_(L-2k)`` and the input-to-output skip is ``output = input + net(input)`` with no ReLU and no clipping.
The released models are 128 wide; the paper's text says 64, our default.

Not in either source (our choices): where the strided variant down-samples (we stride the first convolution
and the last deconvolution, so every skip joins maps of the same size) and the kernel of the strided layers
(``max(3, stride)``, so a stride-4 layer still sees every pixel).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

__all__ = [
    "RED10",
    "RED20",
    "RED30",
    "REDNet",
    "REDNetConfig",
    "convert_channels",
    "fill_missing",
    "parameter_count",
    "receptive_field",
]


@dataclass(frozen=True)
class REDNetConfig:
    """Architecture of one RED-Net.

    Attributes:
        depth: conv + deconv layers, even; the paper's RED30 = 15 conv + 15 deconv.
        width: hidden channels: 64 in the paper's text, 128 in the released Caffe models.
        channels: image channels in and out: 1 = gray / Y, 3 = RGB.
        skip_every: a mirrored skip every this many layers (the paper: 2); 0 = no skips (the paper's RED10).
        residual: output = input + network output (the released code); False = the network output alone.
        stride: 1 = the paper's model; > 1 = the fast variant: the first convolution down-samples by
            ``stride`` and the last deconvolution up-samples by it, so the hidden layers see ``stride**2``
            fewer pixels.
        stride_layers: how many of the first convolutions (and, mirrored, of the last deconvolutions)
            down-sample (up-sample) by ``stride``; 1 = the fast variant above. The paper's Fig. 3a bottleneck
            is ``depth=10, stride=3, stride_layers=5`` on 243x243 inputs (the encoder ends in one pixel).
        he_blocks: He et al.'s residual blocks instead of the mirrored skips (the paper's Fig. 3c
            comparison; not a released model): the 2L layers form one chain and every ``skip_every`` of them
            is a block whose input is added to its output (then ReLU), from layer 1 on; the last layer and
            the input-to-output residual stay as in RED-Net.
        mask_input: the input has one more channel, a mask (1 = pixel known, 0 = pixel to fill), for
            inpainting where the damage is known (our addition, not in the paper): the missing pixels are
            first filled by :func:`fill_missing`, the network learns the residual of that fill, and the
            known pixels pass through unchanged. The output has ``channels`` channels.
        output: "image" = the restored image (the paper's model); "damage" = where the image is damaged,
            for blind inpainting (our addition): (N, 1, H, W), the probability in [0, 1] that each pixel
            was overwritten (sigmoid of the last layer; no residual), which a mask-aware model then fills.
    """

    depth: int = 30
    width: int = 64
    channels: int = 1
    skip_every: int = 2
    residual: bool = True
    stride: int = 1
    mask_input: bool = False
    output: str = "image"
    stride_layers: int = 1
    he_blocks: bool = False

    def __post_init__(self) -> None:
        if self.depth < 2 or self.depth % 2:
            raise ValueError(f"depth must be an even number >= 2 (conv + deconv layers), got {self.depth}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (gray / Y) or 3 (RGB), got {self.channels}")
        if self.skip_every < 0:
            raise ValueError(f"skip_every must be >= 0 (0 = no skips), got {self.skip_every}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if not 1 <= self.stride_layers <= self.layers:
            raise ValueError(f"stride_layers must be 1..{self.layers}, got {self.stride_layers}")
        if self.he_blocks and (self.stride_layers > 1 or not self.skip_every):
            raise ValueError("he_blocks needs skip_every >= 1 (the block span) and stride_layers 1")
        if self.output not in ("image", "damage"):
            raise ValueError(f"output must be 'image' or 'damage', got {self.output!r}")
        if self.output == "damage" and self.mask_input:
            raise ValueError("a damage model finds the mask itself: it takes no mask input")

    @property
    def layers(self) -> int:
        """Number of convolutions (= number of deconvolutions), L in the paper's notation."""
        return self.depth // 2

    @property
    def in_channels(self) -> int:
        """Input channels: the image's, plus one for the mask of a mask-aware model."""
        return self.channels + int(self.mask_input)

    @property
    def out_channels(self) -> int:
        """Output channels: the image's, or 1 for a damage model (``output="damage"``)."""
        return 1 if self.output == "damage" else self.channels


RED10 = REDNetConfig(depth=10, skip_every=0)
"""The paper's RED10: 5 conv + 5 deconv, no skip connections (residual output kept)."""
RED20 = REDNetConfig(depth=20)
"""The paper's RED20: 10 conv + 10 deconv, skips every 2 layers."""
RED30 = REDNetConfig(depth=30)
"""The paper's RED30: 15 conv + 15 deconv, skips every 2 layers; ``width=128`` = the released model."""


def _strided_geometry(stride: int) -> tuple[int, int, int]:
    """(kernel, padding, output_padding) of a layer that maps H -> H / stride and back exactly."""
    kernel = max(3, stride)
    padding = (kernel - stride + 1) // 2
    return kernel, padding, stride + 2 * padding - kernel


class REDNet(nn.Module):
    """RED-Net on images (N, C, H, W), float32 in [0, 1], any H and W (1x1 included).

    ``forward`` returns ``x + body(x)`` (or ``body(x)`` without residual learning): no clamp, no rounding;
    that is the caller's job. A mask-aware model (``config.mask_input``) takes (N, C + 1, H, W), the image
    and a known-pixel channel (1 = known, 0 = to fill: ``1 - mask``), and returns (N, C, H, W) with the known
    pixels of the input kept as they are.
    For the strided variant the input is padded (replicate) to a multiple of the stride inside
    ``forward`` and the output cropped back, so any size works.
    """

    def __init__(self, config: REDNetConfig = RED30) -> None:
        super().__init__()
        self.config = config
        c, w, n, s = config.out_channels, config.width, config.layers, config.stride
        k, p, op = _strided_geometry(s)
        strided = config.stride_layers
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(config.in_channels if i == 0 else w, w, k, stride=s, padding=p)
                if i < strided
                else nn.Conv2d(w, w, 3, padding=1)
                for i in range(n)
            ]
        )
        self.deconvs = nn.ModuleList(
            [
                nn.ConvTranspose2d(w, c if j == n - 1 else w, k, stride=s, padding=p, output_padding=op)
                if j >= n - strided
                else nn.ConvTranspose2d(w, w, 3, padding=1)
                for j in range(n)
            ]
        )
        # conv output c_i (i = 1..L) is added to deconv output d_(L-i) when i is a multiple of skip_every;
        # i = 0 (the input) <-> d_L is the residual connection, handled in forward.
        every = config.skip_every
        self.skip_from = {n - i: i for i in range(1, n) if every and i % every == 0 and not config.he_blocks}
        # When training, run the stride-1 deconvolutions as the convolutions they equal (see _deconv): same
        # values, and a bf16 training step about 20 % faster with oneDNN, whose transposed-convolution
        # backward is the slower kernel. Inference is as fast either way and keeps the plain layers (ONNX).
        self.deconv_as_conv = True

    def forward(self, x: Tensor) -> Tensor:
        """Restore a batch.

        Args:
            x: (N, C, H, W) float images in [0, 1], C = ``config.channels``; a mask-aware model takes
                (N, C + 1, H, W), the known-pixel channel (1 = known, 0 = to fill: ``1 - mask``) last.

        Returns:
            (N, C, H, W) restored images, same dtype; not clamped. A damage model returns (N, 1, H, W), the
            probability in [0, 1] that each pixel is damaged.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"x must be (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if self.config.mask_input:
            known = x[:, self.config.channels :]
            x = torch.cat([fill_missing(x[:, : self.config.channels], known), known], dim=1)
        h, w = x.shape[-2:]
        s = self.config.stride**self.config.stride_layers
        pad_h, pad_w = (-h) % s, (-w) % s
        y = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
        y = self._he_chain(y) if self.config.he_blocks else self._mirrored(y)
        y = y[..., :h, :w]
        if self.config.output == "damage":
            return torch.sigmoid(y)
        if not self.config.mask_input:
            return x + y if self.config.residual else y
        c = self.config.channels
        image, known = x[:, :c], x[:, c:]
        y = image + y if self.config.residual else y
        return known * image + (1 - known) * y

    def _mirrored(self, y: Tensor) -> Tensor:
        """The layers with RED-Net's mirrored skips (all but the input-to-output residual)."""
        # Keep only the conv outputs that a skip reads: memory for big tiles.
        sources = set(self.skip_from.values())
        # ReLUs run in place on fresh conv outputs (autograd allows it); without autograd the skip sums are
        # in place too. Same values either way, about a third faster on CPU.
        no_grad = not torch.is_grad_enabled()
        feats = {}
        for i, conv in enumerate(self.convs, start=1):
            y = F.relu(conv(y), inplace=True)
            if i in sources:
                feats[i] = y
        n = self.config.layers
        for j, deconv in enumerate(self.deconvs, start=1):
            y = _deconv(deconv, y) if self.deconv_as_conv and torch.is_grad_enabled() else deconv(y)
            if j == n:
                break
            y = F.relu(y, inplace=True)
            if j in self.skip_from:
                skip = feats[self.skip_from[j]]
                y = F.relu(y.add_(skip) if no_grad else y + skip, inplace=True)
        return y

    def _he_chain(self, y: Tensor) -> Tensor:
        """The layers with He et al.'s residual blocks (``config.he_blocks``): layer m's output (after its
        ReLU) gets layer ``m - span``'s added, then a ReLU, for m = 1 + span, 1 + 2 span, ... < 2L."""
        span, layers = self.config.skip_every, [*self.convs, *self.deconvs]
        block_in = None
        for m, layer in enumerate(layers, start=1):
            if isinstance(layer, nn.ConvTranspose2d) and self.deconv_as_conv and torch.is_grad_enabled():
                y = _deconv(layer, y)
            else:
                y = layer(y)
            if m == len(layers):
                break
            y = F.relu(y)
            if m > 1 and (m - 1) % span == 0:
                y = F.relu(y + block_in)
            if (m - 1) % span == 0:
                block_in = y
        return y

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


def _deconv(layer: nn.ConvTranspose2d, x: Tensor) -> Tensor:
    """``layer(x)``; a stride-1 transposed convolution runs as the convolution it equals: in and out channels
    of the kernel swapped, the kernel turned by 180 degrees, padding ``k - 1 - p``. The parameters (and so
    the weights files) keep the transposed layout of the paper's Caffe model."""
    if (
        layer.stride != (1, 1)
        or layer.output_padding != (0, 0)
        or layer.groups != 1
        or layer.dilation != (1, 1)
    ):
        return layer(x)
    k, p = layer.kernel_size, layer.padding
    weight = layer.weight.transpose(0, 1).flip(2, 3)
    return F.conv2d(x, weight, layer.bias, padding=(k[0] - 1 - p[0], k[1] - 1 - p[1]))


FILL_WINDOWS = (3, 5, 9, 17, 33, 65)
"""Window sides of :func:`fill_missing`, smallest first."""


def fill_missing(image: Tensor, known: Tensor) -> Tensor:
    """A first guess for missing pixels: the mean of the known pixels in the smallest window around each.

    Normalised box filtering (by cumulative sums) at the sides of :data:`FILL_WINDOWS`: a missing pixel
    takes the mean of the known pixels in the smallest window that holds any; known pixels are kept; a
    pixel with no known pixel within the largest window is 0. This is what a mask-aware RED-Net refines
    (residual learning).

    Args:
        image: (N, C, H, W) float, any values at missing pixels.
        known: (N, 1, H, W) float, 1 = known, 0 = missing.

    Returns:
        (N, C, H, W) in ``image``'s dtype.
    """
    dtype = image.dtype
    image, known = image.float(), known.float()

    filled, done = image * known, known
    for k in FILL_WINDOWS:
        total, weight = _box_sum(image * known, k), _box_sum(known, k)
        fresh = (done < 0.5) & (weight > 0)
        filled = torch.where(fresh, total / weight.clamp_min(1e-12), filled)
        done = torch.where(fresh, torch.ones_like(done), done)
    return filled.to(dtype)


def _box_sum(t: Tensor, k: int) -> Tensor:
    """Sum over the k x k window centred on each pixel (clipped at the borders), by cumulative sums."""
    for dim in (-2, -1):
        n = t.shape[dim]
        c = torch.cat([torch.zeros_like(t.narrow(dim, 0, 1)), t.cumsum(dim)], dim=dim)
        index = torch.arange(n, device=t.device)
        high, low = (index + k // 2 + 1).clamp(max=n), (index - k // 2).clamp(min=0)
        t = c.index_select(dim, high) - c.index_select(dim, low)
    return t


def parameter_count(config: REDNetConfig) -> int:
    """Weights + biases of a stride-1 RED-Net: ``2(L-1)(9w^2+w) + (9cw+w) + (9wc+c)`` (paper.md §1.4);
    a mask-aware model's first layer has ``c + 1`` inputs, a damage model's last layer 1 output."""
    n, w, c = config.layers, config.width, config.out_channels
    return 2 * (n - 1) * (9 * w * w + w) + (9 * config.in_channels * w + w) + (9 * w * c + c)


def receptive_field(config: REDNetConfig) -> int:
    """Side in pixels of the receptive field: exact for stride 1, an upper bound for the strided variant.

    Stride 1: each 3x3 layer adds 2 px, so RED10/20/30 see 21/41/61 px. Strided: the first convolution sees
    ``k = max(3, stride)`` px, the 2(L-1) hidden 3x3 layers add 2 coarse px = ``2 * stride`` px each, and the
    last deconvolution spreads a coarse pixel over at most ``stride`` more px on each side.
    """
    fill = FILL_WINDOWS[-1] - 1 if config.mask_input else 0  # fill_missing looks this much further
    s = config.stride
    if s == 1:
        return 2 * config.depth + 1 + fill
    if config.stride_layers > 1:  # each layer adds (kernel - 1) of the pixels it sees, at their spacing
        k, jump, side = max(3, s), 1, 1
        for i in range(config.layers):
            side, jump = (
                (side + (k - 1) * jump, jump * s) if i < config.stride_layers else (side + 2 * jump, jump)
            )
        for j in range(config.layers):
            side, jump = (
                (side + (k - 1) * jump, jump // s)
                if j >= config.layers - config.stride_layers
                else (side + 2 * jump, jump)
            )
        return side + fill
    k = max(3, s)
    return k + 2 * (config.depth - 2) * s + 2 * s + fill


def convert_channels(
    state: dict[str, Tensor], channels: int, *, mask_input: bool | None = None
) -> dict[str, Tensor]:
    """Turn a gray (1-channel) model's weights into an RGB (3-channel) model's, or back, to warm-start one;
    and give a model a mask input channel (or take it away).

    Only the first convolution (input channels) and the last deconvolution (output channels) change; every
    other tensor is shared. Gray to RGB: the first layer sees the mean of R, G and B and the residual is
    added to all three, so the RGB model starts as the gray model applied to the mean. RGB to gray: the first
    layer's weights are summed over colours (a gray image is R = G = B); the output is the mean of the three.
    An added mask channel starts with zero weights (the model first ignores the mask); a removed one is
    dropped.

    Args:
        state: a REDNet state dict (as from ``model.state_dict()`` or :func:`rednet.zoo.read_weights`).
        channels: the image channels wanted, 1 or 3.
        mask_input: whether the result takes a mask channel; None = as ``state`` does.

    Returns:
        A new state dict; ``state`` itself is not changed. Unchanged if it already has that layout.
    """
    first = "convs.0.weight"
    if first not in state or not any(k.startswith("deconvs.") for k in state):
        return dict(state)  # not a REDNet state dict; loading it will say what is wrong
    last_index = max(int(k.split(".")[1]) for k in state if k.startswith("deconvs."))
    last_w, last_b = f"deconvs.{last_index}.weight", f"deconvs.{last_index}.bias"
    have = state[last_w].shape[1]
    has_mask = state[first].shape[1] == have + 1
    mask_input = has_mask if mask_input is None else mask_input
    out = dict(state)
    image_w, mask_w = state[first][:, :have], state[first][:, have:]
    if have != channels:
        if {have, channels} != {1, 3}:
            raise ValueError(f"can only convert between 1 and 3 channels, not {have} to {channels}")
        if channels == 3:
            image_w = image_w.repeat(1, 3, 1, 1) / 3
            out[last_w] = state[last_w].repeat(1, 3, 1, 1)
            out[last_b] = state[last_b].repeat(3)
        else:
            image_w = image_w.sum(dim=1, keepdim=True)
            out[last_w] = state[last_w].mean(dim=1, keepdim=True)
            out[last_b] = state[last_b].mean().reshape(1)
    if mask_input and not has_mask:
        mask_w = torch.zeros_like(image_w[:, :1])
    elif not mask_input:
        mask_w = image_w[:, :0]
    out[first] = torch.cat([image_w, mask_w], dim=1)
    return out
