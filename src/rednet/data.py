"""Image sets: the benchmark sets of ``../shared/datasets`` by name, any folder of images, and the training
patches that are cut from clean images and degraded on the fly.

The data root is, in order: the ``root`` argument (CLI ``--data-root``), the ``REDNET_DATA`` environment
variable, ``../shared/datasets`` relative to the working directory, then ``../shared/datasets`` beside the
repository this package was installed from (editable installs). Files are taken in sorted name order, which is
also the order that fixes each image's seed (``protocol.md`` §1).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rednet import degrade
from rednet.io import is_image_file, read_image
from rednet.metrics import rgb_to_y
from rednet.tasks import OVERLAY_DAMAGES, Blur, Corrupted, kernel_by_name, task_named

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Corruption",
    "Levels",
    "PatchDataset",
    "data_root",
    "jitter_colours",
    "list_images",
    "load_training_images",
    "resolve_dataset",
]

ENV_VAR = "REDNET_DATA"


@dataclass(frozen=True)
class Benchmark:
    """One named test set: its folder under the data root and how the protocol reads it.

    Attributes:
        folder: path relative to the data root.
        color: True for colour images (read as RGB), False for gray sets (read as 1 channel).
        task: the task the set is a benchmark for (informational).
    """

    folder: str
    color: bool
    task: str


BENCHMARKS: dict[str, Benchmark] = {
    "Set12": Benchmark("Set12", color=False, task="denoise"),
    "BSD68": Benchmark("BSD68", color=False, task="denoise"),
    "CBSD68": Benchmark("CBSD68", color=True, task="denoise"),
    "Set5": Benchmark("Set5", color=True, task="sr"),
    "Set14": Benchmark("Set14", color=True, task="sr"),
    "B100": Benchmark("B100", color=True, task="sr"),
    "LIVE1": Benchmark("LIVE1", color=True, task="jpeg"),
    "Classic5": Benchmark("Classic5", color=False, task="jpeg"),
}


def _candidates(root: str | Path | None) -> list[tuple[Path, str]]:
    if root is not None:
        return [(Path(root), "--data-root")]
    if os.environ.get(ENV_VAR):
        return [(Path(os.environ[ENV_VAR]), ENV_VAR)]
    repo = Path(__file__).resolve().parents[2]
    return [
        (Path("..") / "shared" / "datasets", "the default ../shared/datasets"),
        (repo.parent / "shared" / "datasets", "the default ../shared/datasets beside the repository"),
    ]


def data_root(root: str | Path | None = None) -> Path:
    """The folder that holds the benchmark sets.

    Raises:
        FileNotFoundError: with a message naming the path tried and how to set it.
    """
    candidates = _candidates(root)
    for path, _ in candidates:
        if path.is_dir():
            return path.resolve()
    path, source = candidates[0]
    raise FileNotFoundError(
        f"data root {path.resolve()} (from {source}) does not exist; "
        f"pass --data-root DIR or set {ENV_VAR}=DIR to the folder that holds Set12, BSD68, ..."
    )


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (the protocol's order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        raise FileNotFoundError(f"{folder}: no image files in this folder")
    return files


def resolve_dataset(
    name_or_dir: str | Path, root: str | Path | None = None
) -> tuple[list[Path], bool | None]:
    """Files of a named benchmark set or of a folder, and whether the set is colour.

    Args:
        name_or_dir: a name from :data:`BENCHMARKS` (case-insensitive) or a folder of images.
        root: data root for named sets (see :func:`data_root`).

    Returns:
        (files sorted by name, colour flag: True/False for named sets, None for a plain folder, whose images
        keep their own mode).
    """
    by_lower = {k.lower(): k for k in BENCHMARKS}
    key = by_lower.get(str(name_or_dir).lower())
    if key is not None and not Path(name_or_dir).is_dir():
        bench = BENCHMARKS[key]
        return list_images(data_root(root) / bench.folder), bench.color
    if Path(name_or_dir).is_dir():
        return list_images(name_or_dir), None
    raise FileNotFoundError(
        f"{name_or_dir}: not a folder and not a benchmark name (one of {', '.join(BENCHMARKS)})"
    )


# ---------------------------------------------------------------------------------------------------------
# Training patches


@dataclass(frozen=True)
class Levels:
    """Corruption levels to draw from: a closed range ``"0-75"`` (uniform) or a list ``"10,30,50"``.

    Attributes:
        low, high: the range's ends (range form).
        values: the list (list form; a single level is a list of one).
    """

    low: float = 0.0
    high: float = 0.0
    values: tuple[float, ...] = ()

    @classmethod
    def parse(cls, spec: str | float) -> Levels:
        """``"0-75"`` -> range; ``"10,30,50"`` or ``"25"`` or ``25`` -> list."""
        text = str(spec).strip()
        try:
            if "-" in text.lstrip("-") and "," not in text:
                low, high = (float(v) for v in text.split("-", 1))
                if low > high:
                    raise ValueError
                return cls(low=low, high=high)
            return cls(values=tuple(float(v) for v in text.split(",")))
        except ValueError:
            raise ValueError(f"levels must look like '0-75' or '10,30,50', got {spec!r}") from None

    def draw(self, rng: np.random.Generator, *, integer: bool = False) -> float:
        """One level: uniform over the range (integers inclusive when ``integer``) or one of the list."""
        if self.values:
            return float(self.values[rng.integers(len(self.values))])
        if integer:
            return float(rng.integers(round(self.low), round(self.high) + 1))
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class Corruption:
    """One training task and the levels its patches are drawn from.

    Attributes:
        task: "denoise", "sr", "jpeg", "deblur" or "inpaint".
        levels: sigma (denoise, 0-255 scale), scale (sr), quality (jpeg), added noise sigma (deblur) or
            pixel-loss rate (inpaint "rate").
        kernel: deblur: the blur kernel's name, "gaussian", "disk" or "gaussian-family" (a Gaussian
            25 x 25 whose sigma is drawn from ``blur_sigma``); "" for the other tasks.
        damage: inpaint: the kind of damage, "text" (the test's white/black text), "strokes" (text and
            scratches in random colours), "decoys" (the test's text over an image given text and clipped
            areas of its own, which belong to the clean image), "framed" (the test's text over an image given
            a frame of its own, likewise) or "rate" (random pixel loss at a rate
            drawn from ``levels``); "" for the other tasks.
        blur_sigma: the range of the "gaussian-family" kernel's sigma, in pixels.
        then: a second corruption applied to this one's output (a mix that real photos carry: noise then
            JPEG, blur then JPEG); it must keep the size and leave no mask (denoise, jpeg, deblur), and the
            clean image stays this one's. None = this corruption alone.
        with_mask: append the mask to the degraded patch as one more channel (inpaint), as a mask-aware
            model takes it: 1 = known, 0 = damaged (``1 - mask``).
    """

    task: str
    levels: Levels
    kernel: str = ""
    damage: str = ""
    blur_sigma: Levels = Levels(0.5, 3.0)
    with_mask: bool = False
    then: Corruption | None = None

    def __post_init__(self) -> None:
        if self.then is not None:
            second = task_named(self.then.task)
            if second.enlarges or second.masks:
                raise ValueError(f"{self.task} can be followed by denoise, jpeg or deblur, not {second.name}")

    def margin(self) -> int:
        """Pixels cut around each patch before degrading it, so that no patch edge shows in the patch:
        the bicubic support for SR, the JPEG block grid (16 phases for 4:2:0), the blur kernel."""
        own = task_named(self.task).margin
        return own if self.then is None else max(own, self.then.margin())

    def draw(self, rng: np.random.Generator) -> Any:
        """The level of one patch, as ``Task.degrade`` takes it: a number, a :class:`rednet.tasks.Blur`
        (deblur: its kernel, then its noise) or the inpainting damage (one of
        :data:`rednet.tasks.OVERLAY_DAMAGES` or a drawn pixel-loss rate)."""
        task = task_named(self.task)
        if task.uses_kernel:
            if self.kernel == "gaussian-family":
                kernel = degrade.gaussian_kernel(25, self.blur_sigma.draw(rng))
            else:
                kernel = kernel_by_name(self.kernel)
            return Blur(kernel, self.levels.draw(rng))
        if task.masks:
            return self.damage if self.damage in OVERLAY_DAMAGES else self.levels.draw(rng)
        if task.integer_levels:
            return int(self.levels.draw(rng, integer=True))
        return self.levels.draw(rng)

    def apply(self, region: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """Degrade one clean region (1, C, R, R) in [0, 1]; returns (clean, degraded), both (1, C, R', R')
        (the degraded one (1, C + 1, R', R') ``with_mask``)."""
        c = task_named(self.task).degrade(region, self.draw(rng), generator=rng)
        if self.then is not None:
            after = self.then.apply(c.degraded, rng)[1]
            c = Corrupted(c.clean, after, c.mask)
        if self.with_mask and c.mask is not None:
            return c.clean, torch.cat([c.degraded, 1 - c.mask], dim=1)
        return c.clean, c.degraded


SATURATION_RANGE = (0.5, 2.0)
"""The saturation factors of :func:`jitter_colours`, drawn log-uniformly."""


def jitter_colours(region: Tensor, order: Tensor, factor: Tensor) -> Tensor:
    """New colours for clean RGB patches: channels reordered, saturation scaled.

    BSDS photos are muted and mostly brown, green and blue; a colour model trained on them alone meets
    saturated colours it has never seen. Each patch's channels are put in a new order (6 hues for every
    colour) and each pixel is moved away from (factor > 1) or toward (< 1) its gray, the mean of its
    channels; the result is clipped to [0, 1] and rounded to 8 bits, like the images it stands for.

    Args:
        region: (N, 3, H, W) float in [0, 1].
        order: (N, 3) int64, a permutation of (0, 1, 2) per patch.
        factor: (N,) saturation factors (training draws them log-uniformly from :data:`SATURATION_RANGE`).

    Returns:
        (N, 3, H, W) float32 in [0, 1], multiples of 1/255.
    """
    x = region.gather(1, order[:, :, None, None].expand(-1, -1, *region.shape[-2:]))
    gray = x.mean(dim=1, keepdim=True)
    scaled = gray + factor.to(x.dtype).view(-1, 1, 1, 1) * (x - gray)
    return torch.round(scaled.clamp(0, 1) * 255) / 255


def load_training_images(folders: Sequence[str | Path], channel: str) -> list[Tensor]:
    """Read every image under ``folders`` (recursively, sorted) once, as uint8 tensors (C, H, W).

    Args:
        folders: folders of clean training images.
        channel: "gray" (Pillow's luma), "y" (BT.601 Y as MATLAB ``rgb2ycbcr``) or "rgb".

    Returns:
        One uint8 tensor per image, C = 1 for gray/y, 3 for rgb (gray files are replicated).
    """
    if channel not in ("gray", "y", "rgb"):
        raise ValueError(f"channel must be gray, y or rgb, got {channel!r}")
    images = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: training folder not found")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise FileNotFoundError(f"{folder}: no image files in this folder")
        for path in files:
            x, _ = read_image(path, mode="gray" if channel == "gray" else "rgb")
            if channel == "y":
                x = rgb_to_y(x)
            images.append(torch.round(x[0] * 255).to(torch.uint8))
    return images


class PatchDataset(torch.utils.data.Dataset):
    """Random degraded patches, a pure function of (seed, index).

    Sample ``index`` is drawn with ``numpy.random.default_rng([seed, index])``: which image, where, which
    flip/rotation, which corruption and level, and the corruption's own randomness. So a batch is the same
    whatever the number of DataLoader workers or DDP ranks, and a resumed run sees exactly the patches that
    an uninterrupted run would (the trainer asks for indices ``step * batch + i``).

    Args:
        images: clean images, uint8 (C, H, W), all with the same C.
        corruptions: the tasks to mix; each sample picks one uniformly.
        patch_size: side of the patches (the paper: 50).
        seed: base seed.
        patch_stride: 0 = patches at any position; s > 0 = only at positions on a grid of step s.
        augment: random flips and 90-degree rotations (the 8 dihedral transforms).
        color_jitter: give RGB patches new colours before they are degraded (:func:`jitter_colours`).

    Each item is ``(degraded, clean)``, float32 (C, patch_size, patch_size), clean in [0, 1].
    """

    def __init__(
        self,
        images: Sequence[Tensor],
        corruptions: Sequence[Corruption],
        *,
        patch_size: int = 50,
        seed: int = 0,
        patch_stride: int = 0,
        augment: bool = True,
        color_jitter: bool = False,
    ) -> None:
        if not corruptions:
            raise ValueError("at least one corruption is needed")
        self.corruptions = list(corruptions)
        self.patch_size = patch_size
        self.seed = seed
        self.patch_stride = patch_stride
        self.augment = augment
        self.color_jitter = color_jitter
        region = self.region_size(max(self.corruptions, key=lambda c: c.margin()))
        self.images = [im for im in images if min(im.shape[-2:]) >= region]
        if not self.images:
            raise ValueError(f"no training image is at least {region}x{region} pixels")

    def region_size(self, corruption: Corruption) -> int:
        """Side of the clean region cut for one patch: the patch plus margins, a multiple of every scale."""
        side = self.patch_size + 2 * corruption.margin()
        return math.ceil(side / 12) * 12 if task_named(corruption.task).enlarges else side

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        corruption = self.corruptions[rng.integers(len(self.corruptions))]
        image = self.images[rng.integers(len(self.images))]
        side = self.region_size(corruption)
        h, w = image.shape[-2:]
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        if self.patch_stride:
            top, left = top - top % self.patch_stride, left - left % self.patch_stride
        region = image[:, top : top + side, left : left + side].float().div(255)[None]
        if self.augment:
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            region = torch.rot90(region, k, dims=(2, 3))
            region = region.flip(3) if flip else region
        if self.color_jitter and region.shape[1] == 3:
            order = torch.from_numpy(rng.permutation(3))[None]
            factor = math.exp(rng.uniform(*(math.log(v) for v in SATURATION_RANGE)))
            region = jitter_colours(region, order, torch.tensor([factor]))
        clean, degraded = corruption.apply(region.contiguous(), rng)
        # Cut the patch out of the degraded region at a random offset inside the margin, so every phase of
        # the JPEG block grid / bicubic sampling grid is seen, and no region edge is in the patch.
        m, p = corruption.margin(), self.patch_size
        dy, dx = (int(rng.integers(m // 2, m // 2 + m)) if m else 0 for _ in range(2))
        crop = (..., slice(dy, dy + p), slice(dx, dx + p))
        return degraded[crop][0].float(), clean[crop][0].float()
