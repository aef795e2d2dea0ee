"""Denoising batches made on the training device (rednet.device_patches), checked on the CPU."""

from __future__ import annotations

import pytest
import torch
from skimage import data

from rednet.data import Levels
from rednet.device_patches import DevicePatches, dihedral_maps
from rednet.train import load_checkpoint, train
from rednet.train_config import TrainConfig


def _photo(channels: int = 3) -> torch.Tensor:
    photo = torch.from_numpy(data.astronaut()[:96, 100:180]).permute(2, 0, 1).contiguous()
    return photo if channels == 3 else photo.float().mean(0, keepdim=True).round().to(torch.uint8)


def test_the_index_maps_turn_a_patch_as_the_loader_processes_do():
    patch = torch.rand(1, 3, 7, 7)
    rows, cols = dihedral_maps(7)
    for k in range(4):
        for flip in (0, 1):
            turned = torch.rot90(patch, k, dims=(2, 3))
            turned = turned.flip(3) if flip else turned
            assert torch.equal(patch[:, :, rows[2 * k + flip], cols[2 * k + flip]], turned)


def test_every_clean_patch_is_a_crop_of_a_training_image_and_the_noise_has_the_drawn_level():
    photo = _photo()
    make = DevicePatches(
        [photo], Levels.parse("25"), batch_size=32, patch_size=16, seed=0, device=torch.device("cpu"),
        augment=False,
    )  # fmt: skip
    noisy, clean = make(3)
    assert noisy.shape == clean.shape == (32, 3, 16, 16) and noisy.dtype == torch.float32
    crops = photo.float().div(255).unfold(1, 16, 1).unfold(2, 16, 1)  # (3, 81, 65, 16, 16)
    crops = crops.permute(1, 2, 0, 3, 4).reshape(-1, 3, 16, 16)
    for patch in clean:
        assert (crops - patch).abs().amax(dim=(1, 2, 3)).min() == 0
    assert abs(float((noisy - clean).std()) * 255 - 25) < 0.5


def test_batches_are_a_pure_function_of_seed_and_step_and_levels_cover_the_range():
    cpu = torch.device("cpu")
    make = DevicePatches([_photo(1)], Levels.parse("0-75"), batch_size=64, patch_size=24, seed=5, device=cpu)
    a, b, c = make(7), make(7), make(8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    sigmas = ((a[0] - a[1]).std(dim=(1, 2, 3)) * 255).sort().values
    assert sigmas[0] < 10 and sigmas[-1] > 65


def test_colour_jitter_on_the_device_gives_new_hues():
    cpu = torch.device("cpu")
    plain, jittered = (
        DevicePatches([_photo()], Levels.parse("0"), batch_size=64, patch_size=24, seed=1, device=cpu,
                      color_jitter=j)(0)[1]
        for j in (False, True)
    )  # fmt: skip
    orders = {tuple(p.mean(dim=(1, 2)).argsort().tolist()) for p in jittered}
    assert len(orders) >= 4 and torch.equal(torch.round(jittered * 255), jittered * 255)
    assert not torch.equal(plain, jittered)


def test_a_run_with_patches_on_the_device_trains_and_resumes_bit_for_bit(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(_photo().permute(1, 2, 0).numpy()).save(folder / "a.png")
    config = TrainConfig(
        data=str(folder), depth=10, width=16, steps=6, batch_size=4, patch_size=24, val_set="",
        dtype="fp32", log_every=1, ckpt_every=100, patches_on_device=True,
    )  # fmt: skip
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "cut", stop_at=3, progress=False)
    train(TrainConfig(), tmp_path / "cut", resume=True, progress=False)
    a, b = (load_checkpoint(tmp_path / r / "last.pt")["model"] for r in ("straight", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="patches_on_device"):
        TrainConfig(task="sr", patches_on_device=True)
