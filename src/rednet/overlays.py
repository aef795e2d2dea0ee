"""Inpainting's corruptions: pixels lost at random, and text and scratches drawn over an image.

As in :mod:`rednet.degrade`: images are ``(N, C, H, W)`` float32 tensors in [0, 1], functions return new
tensors, and randomness comes only from the ``generator`` argument. Each returns the damaged image with its
mask, (N, 1, H, W) float32, 1 = pixel damaged (lost or drawn over), 0 = kept: the library's one meaning of
"mask", as ``rednet degrade --save-mask`` writes it (white = damaged).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from rednet.degrade import RandomGenerator, check_image, numpy_rng, uniform_like
from rednet.extras import require

__all__ = [
    "content_text",
    "drop_pixels",
    "frame_lines",
    "scratches_and_text",
    "text_over",
    "text_overlay",
]


def drop_pixels(x: Tensor, rate: float, *, generator: RandomGenerator = None) -> tuple[Tensor, Tensor]:
    """Lose each pixel (all channels together) independently with probability ``rate``.

    Args:
        x: images, (N, C, H, W) float32 in [0, 1].
        rate: probability in [0, 1] that a pixel is lost (protocol: 0.5 and 0.8).
        generator: a ``torch.Generator`` (``torch.rand``), a ``numpy.random.Generator``
            (``generator.random((N, 1, H, W))``) or ``None``.

    Returns:
        ``(degraded, mask)``: ``degraded = x * (1 - mask)``, (N, C, H, W) float32; ``mask`` (N, 1, H, W)
        float32, 1 = pixel lost (set to 0 in ``degraded``), 0 = kept.
    """
    check_image(x)
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    n, _, h, w = x.shape
    u = uniform_like((n, 1, h, w), generator, x)
    known = (u >= rate).to(torch.float32)
    return x.to(torch.float32) * known, 1 - known


_WORD_LIST = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua image restore network encoder decoder photo copyright sample text hello world "
    "RED Net 2016 winter summer river mountain city night day light shadow Paris Tokyo signal noise"
)
_WORDS = tuple(_WORD_LIST.split())
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@functools.lru_cache(maxsize=512)
def _font(size: int, name: str = "DejaVuSans.ttf") -> ImageFont.FreeTypeFont:
    """A font bundled with matplotlib (default DejaVu Sans) at ``size`` pixels."""
    matplotlib = require("matplotlib", "plot", "the text corruption (matplotlib's fonts)")

    path = f"{matplotlib.get_data_path()}/fonts/ttf/{name}"
    return ImageFont.truetype(path, size)


def _random_string(rng: np.random.Generator) -> str:
    """A few random words, or a run of random letters/digits."""
    if rng.random() < 0.7:
        k = int(rng.integers(1, 4))
        return " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), size=k))
    k = int(rng.integers(3, 11))
    return "".join(_LETTERS[int(i)] for i in rng.integers(0, len(_LETTERS), size=k))


def _draw_random_string(
    rng: np.random.Generator, h: int, w: int, font: ImageFont.FreeTypeFont, *, antialias: bool
) -> np.ndarray:
    """(H, W) uint8 coverage (255 = glyph) of one random string at a random position, with or without
    antialiasing."""
    text = _random_string(rng)
    left, top, right, bottom = font.getbbox(text)
    tw, th = right - left, bottom - top
    x0 = int(rng.integers(min(0, w - tw), max(0, w - tw) + 1)) - left
    y0 = int(rng.integers(min(0, h - th), max(0, h - th) + 1)) - top
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    draw.fontmode = "L" if antialias else "1"  # "1": every pixel is either text or not
    draw.text((x0, y0), text, fill=255, font=font)
    return np.asarray(layer)


def _render_string(rng: np.random.Generator, h: int, w: int, font_sizes: tuple[int, int]) -> np.ndarray:
    """Binary (H, W) bool layer with one random string at a random position and size, in DejaVu Sans."""
    size = int(rng.integers(font_sizes[0], font_sizes[1] + 1))
    return _draw_random_string(rng, h, w, _font(size), antialias=False) > 0


def text_overlay(
    x: Tensor,
    *,
    generator: RandomGenerator = None,
    font_sizes: tuple[int, int] = (12, 40),
    n_strings: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Overlay random text (the inpainting task's "text" corruption).

    Random strings (words or letter runs) are drawn with Pillow in DejaVu Sans (bundled with
    matplotlib), without antialiasing, at random positions and sizes in ``font_sizes`` (pixels),
    each string in white or black. Pixels under text take the text colour in every channel.
    Unless ``n_strings`` is given, strings are added until a coverage drawn uniformly in
    [5 %, 15 %] is reached, and a string that would push coverage above 20 % is redrawn (tiny
    images, where one string covers more, may end below the target). Deterministic for a given
    generator state; each image of the batch gets its own text.

    Args:
        x: images, (N, C, H, W) float32 in [0, 1].
        generator: a ``torch.Generator`` (one integer is drawn from it to seed a numpy
            generator), a ``numpy.random.Generator`` (used directly) or ``None``.
        font_sizes: (min, max) font size in pixels, inclusive.
        n_strings: exact number of strings per image instead of the coverage rule.

    Returns:
        ``(degraded, mask)``: (N, C, H, W) float32 images with the text; mask (N, 1, H, W)
        float32, 1 = covered by text, 0 = kept.
    """
    check_image(x)
    lo, hi = (int(v) for v in font_sizes)
    if not 1 <= lo <= hi:
        raise ValueError(f"font_sizes must be (min, max) with 1 <= min <= max, got {font_sizes}")
    if n_strings is not None and n_strings < 0:
        raise ValueError(f"n_strings must be >= 0, got {n_strings}")
    rng = numpy_rng(generator)
    n, _, h, w = x.shape
    covered = np.zeros((n, h, w), dtype=bool)
    colour = np.zeros((n, h, w), dtype=np.float32)
    for i in range(n):
        if n_strings is not None:
            for _ in range(n_strings):
                layer = _render_string(rng, h, w, (lo, hi))
                covered[i] |= layer
                colour[i][layer] = float(rng.integers(0, 2))
            continue
        target = rng.uniform(0.05, 0.15)
        for _ in range(200):
            if covered[i].mean() >= target:
                break
            layer = _render_string(rng, h, w, (lo, hi))
            value = float(rng.integers(0, 2))
            if (covered[i] | layer).mean() > 0.20:
                continue
            covered[i] |= layer
            colour[i][layer] = value
    known = torch.from_numpy(~covered).to(torch.float32)[:, None].to(x.device)
    fill = torch.from_numpy(colour)[:, None].to(x.device)
    degraded = x.to(torch.float32) * known + fill * (1 - known)
    return degraded, 1 - known


def _render_scratch(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Binary (H, W) bool layer with one scratch: a polyline of 2-5 random points, 1-6 px wide."""
    points = [
        (float(rng.uniform(-0.1, 1.1) * w), float(rng.uniform(-0.1, 1.1) * h))
        for _ in range(int(rng.integers(2, 6)))
    ]
    layer = Image.new("L", (w, h), 0)
    ImageDraw.Draw(layer).line(points, fill=255, width=int(rng.integers(1, 7)), joint="curve")
    return np.asarray(layer) > 0


def scratches_and_text(
    x: Tensor,
    *,
    generator: RandomGenerator = None,
    font_sizes: tuple[int, int] = (12, 40),
    max_coverage: float = 0.3,
) -> tuple[Tensor, Tensor]:
    """Overlay random text and scratches in random colours: the training damage of the inpainting models.

    A superset of :func:`text_overlay` (the test corruption): strings as there (same font, sizes and
    words), plus scratches (random polylines 1-6 px wide), 7 elements in 10 being text; each string or
    scratch is white or black (half the time) or a uniformly random colour. Elements are added until a
    coverage drawn uniformly in [2 %, ``max_coverage``] is reached; one that would exceed
    ``max_coverage`` is skipped.

    Args:
        x: images, (N, C, H, W) float32 in [0, 1]; for C = 1 a colour becomes its mean.
        generator: as in :func:`text_overlay`.
        font_sizes: (min, max) font size in pixels, inclusive.
        max_coverage: the largest fraction of pixels covered.

    Returns:
        ``(degraded, mask)``: (N, C, H, W) float32; mask (N, 1, H, W) float32, 1 = covered, 0 = kept.
    """
    check_image(x)
    rng = numpy_rng(generator)
    n, c, h, w = x.shape
    covered = np.zeros((n, h, w), dtype=bool)
    fill = np.zeros((n, c, h, w), dtype=np.float32)
    for i in range(n):
        target = rng.uniform(0.02, max_coverage)
        for _ in range(50):
            if covered[i].mean() >= target:
                break
            if rng.random() < 0.7:
                layer = _render_string(rng, h, w, font_sizes)
            else:
                layer = _render_scratch(rng, h, w)
            colour = np.full(3, float(rng.integers(0, 2))) if rng.random() < 0.5 else rng.random(3)
            if (covered[i] | layer).mean() > max_coverage:
                continue
            covered[i] |= layer
            value = colour if c == 3 else colour.mean(keepdims=True)
            fill[i][:, layer] = value.astype(np.float32)[:, None]
    known = torch.from_numpy(~covered).to(torch.float32)[:, None].to(x.device)
    paint = torch.from_numpy(fill).to(x.device)
    return x.to(torch.float32) * known + paint * (1 - known), 1 - known


_CONTENT_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
)


def _render_soft_string(rng: np.random.Generator, h: int, w: int, font_sizes: tuple[int, int]) -> np.ndarray:
    """Antialiased (H, W) float32 coverage in [0, 1] of one random string, in a random bundled font."""
    size = int(rng.integers(font_sizes[0], font_sizes[1] + 1))
    font = _font(size, _CONTENT_FONTS[int(rng.integers(len(_CONTENT_FONTS)))])
    return _draw_random_string(rng, h, w, font, antialias=True).astype(np.float32) / 255


def _own_colour(rng: np.random.Generator, channels: int) -> np.ndarray:
    """The colour of something that belongs to an image: near-black (0-15 on the 0-255 scale), near-white
    (240-255) or a random colour, one in three each; (C,) float32, for C = 1 the colour's mean."""
    low, high = ((0, 15 / 255), (240 / 255, 1), (0, 1))[int(rng.integers(3))]
    colour = rng.uniform(low, high, 3)
    return (colour if channels == 3 else colour.mean(keepdims=True)).astype(np.float32)


def content_text(
    x: Tensor,
    *,
    generator: RandomGenerator = None,
    font_sizes: tuple[int, int] = (12, 60),
    n_strings: tuple[int, int] = (1, 4),
) -> Tensor:
    """Paint text and clipped areas that belong to the image: what a damage model must leave alone.

    Overlaid damage (:func:`text_overlay`, :func:`scratches_and_text`) is pixel-exact: one colour, hard
    edges. Text that is part of a photo or a scanned page (a sign, a book cover) is not: its edges are
    antialiased or blurred and its colour is noisy. Here each image gets ``n_strings`` strings (a number
    drawn in that inclusive range) drawn antialiased in one of six DejaVu fonts bundled with matplotlib, at
    sizes in ``font_sizes`` pixels, each near-black (0-15 on the 0-255 scale), near-white (240-255) or
    a random colour, with Gaussian noise of sigma 0.5-3 (0-255 scale) on the painted pixels; half of
    the images also get their shadows or highlights clipped to flat 0 or 1 areas (as in an over-exposed
    photo), by a level stretch whose cut is drawn in [2 %, 20 %]. The result is rounded to 8 bits.

    Args:
        x: images, (N, C, H, W) float32 in [0, 1]; for C = 1 a colour becomes its mean.
        generator: as in :func:`text_overlay`.
        font_sizes: (min, max) font size in pixels, inclusive.
        n_strings: (min, max) strings per image, inclusive.

    Returns:
        (N, C, H, W) float32 in [0, 1], multiples of 1/255: the new clean image.
    """
    check_image(x)
    rng = numpy_rng(generator)
    n, c, h, w = x.shape
    out = x.detach().to(torch.float32).cpu().numpy().copy()
    for i in range(n):
        if rng.random() < 0.5:  # clipped shadows or highlights
            cut = rng.uniform(0.02, 0.2)
            if rng.random() < 0.5:
                out[i] = np.clip((out[i] - cut) / (1 - cut), 0, 1)
            else:
                out[i] = np.clip(out[i] / (1 - cut), 0, 1)
        for _ in range(int(rng.integers(n_strings[0], n_strings[1] + 1))):
            alpha = _render_soft_string(rng, h, w, font_sizes)
            value = _own_colour(rng, c)
            painted = alpha > 0
            noise = rng.normal(0, rng.uniform(0.5, 3) / 255, size=(c, int(painted.sum()))).astype(np.float32)
            blended = out[i][:, painted] * (1 - alpha[painted]) + value[:, None] * alpha[painted]
            out[i][:, painted] = np.clip(blended + noise, 0, 1)
    return torch.from_numpy(np.round(out * 255) / 255).to(x.device)


def frame_lines(x: Tensor, *, generator: RandomGenerator = None, widths: tuple[int, int] = (1, 3)) -> Tensor:
    """Give each image a frame of its own: lines along its edges that belong to it, as scanned photos,
    screenshots and some test sets (LIVE1's one-pixel black border) have, which a damage model must
    leave alone.

    Each of the four edges, independently with probability 0.8, gets a line ``widths`` pixels wide (drawn
    per image in that inclusive range) in near-black (0-15 on the 0-255 scale), near-white (240-255) or a
    random colour, the same for the whole frame; half the images get a second, one-pixel line just inside
    it in another such colour (a mat, or the bright line inside the black border of some LIVE1 photos).
    The result is rounded to 8 bits.

    Args:
        x: images, (N, C, H, W) float32 in [0, 1]; for C = 1 a colour becomes its mean.
        generator: as in :func:`text_overlay`.
        widths: (min, max) width of the outer line in pixels, inclusive.

    Returns:
        (N, C, H, W) float32 in [0, 1], multiples of 1/255: the new clean image.
    """
    check_image(x)
    rng = numpy_rng(generator)
    n, c, h, w = x.shape
    out = x.detach().to(torch.float32).cpu().numpy().copy()
    for i in range(n):
        sides = rng.random(4) < 0.8  # top, bottom, left, right
        lines = [(0, int(rng.integers(widths[0], widths[1] + 1)), _own_colour(rng, c)[:, None, None])]
        if rng.random() < 0.5:
            lines.append((lines[0][1], lines[0][1] + 1, _own_colour(rng, c)[:, None, None]))
        for start, stop, value in lines:
            stop_h, stop_w = min(stop, h), min(stop, w)
            if sides[0]:
                out[i][:, start:stop_h, :] = value
            if sides[1]:
                out[i][:, h - stop_h : h - start, :] = value
            if sides[2]:
                out[i][:, :, start:stop_w] = value
            if sides[3]:
                out[i][:, :, w - stop_w : w - start] = value
    return torch.from_numpy(np.round(out * 255) / 255).to(x.device)


def text_over(
    x: Tensor, own: Callable[..., Tensor], *, generator: RandomGenerator = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The test's white/black text (:func:`text_overlay`) over an image given something of its own by
    ``own`` (:func:`content_text`: text and clipped areas; :func:`frame_lines`: a frame): a blind
    inpainter must remove the one and keep the other.

    Args:
        x: images, (N, C, H, W) float32 in [0, 1].
        own: ``own(x, generator=...)`` returns the images with what belongs to them, the ground truth.
        generator: as in :func:`text_overlay`.

    Returns:
        ``(clean, degraded, mask)``: the image with what is its own (the ground truth), the same with the
        overlay, both (N, C, H, W) float32; mask (N, 1, H, W) float32, 1 = overlaid, 0 = kept.
    """
    rng = numpy_rng(generator)
    clean = own(x, generator=rng)
    degraded, mask = text_overlay(clean, generator=rng)
    return clean, degraded, mask
