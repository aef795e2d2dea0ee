"""Hashes of training patches, one line per corruption (tools/spotcheck.sh): a refactor of the degradation
recipes must keep every patch bit-identical (same draws, same order).

Usage: python tools/spotcheck_patches.py   (prints "<corruption> <sha256>" lines)
"""

import hashlib
import sys

import torch
from skimage import data

from rednet.data import Corruption, Levels, PatchDataset

CORRUPTIONS = [
    Corruption("denoise", Levels.parse("0-75")),
    Corruption("sr", Levels.parse("2,3,4")),
    Corruption("jpeg", Levels.parse("5-95")),
    Corruption("deblur", Levels.parse("0-2.55"), kernel="gaussian"),
    Corruption("deblur", Levels.parse("0-2.55"), kernel="disk"),
    Corruption("deblur", Levels.parse("0-2.55"), kernel="gaussian-family", blur_sigma=Levels.parse("0.5-3")),
    Corruption("inpaint", Levels(values=(0.0,)), damage="text"),
    Corruption("inpaint", Levels(values=(0.0,)), damage="strokes", with_mask=True),
    Corruption("inpaint", Levels(values=(0.0,)), damage="decoys"),
    Corruption("inpaint", Levels.parse("0-0.8"), damage="rate", with_mask=True),
]


def main() -> int:
    images = [torch.from_numpy(data.astronaut()).permute(2, 0, 1).contiguous()]
    for corruption in CORRUPTIONS:
        dataset = PatchDataset(images, [corruption], patch_size=24, seed=1, color_jitter=True)
        digest = hashlib.sha256()
        for index in range(12):
            degraded, clean = dataset[index]
            digest.update(degraded.numpy().tobytes() + clean.numpy().tobytes())
        name = f"{corruption.task}:{corruption.kernel or corruption.damage}:{corruption.with_mask}"
        sys.stdout.write(f"{name} {digest.hexdigest()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
