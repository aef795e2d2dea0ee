from __future__ import annotations

import numpy as np
import pytest
import torch

import rednet
from rednet.cli import main
from rednet.zoo import WEIGHTS, WEIGHTS_DIR, load


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_every_shipped_model_loads_with_its_card_and_denoises(name):
    model = rednet.load(name)
    assert model.card["task"].startswith(WEIGHTS[name].task)
    assert model.config.channels == WEIGHTS[name].channels
    assert (WEIGHTS_DIR / WEIGHTS[name].file).with_suffix(".json").is_file()
    g = torch.Generator().manual_seed(0)
    clean = torch.full((1, model.config.channels, 48, 48), 0.5)
    noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=g)
    restored = rednet.restore(model, noisy)
    assert (restored - clean).pow(2).mean() < (noisy - clean).pow(2).mean() / 4


def test_truncated_weights_give_a_one_line_error(tmp_path):
    name = next(iter(WEIGHTS))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((WEIGHTS_DIR / WEIGHTS[name].file).read_bytes()[:1000])
    with pytest.raises(ValueError, match="bad.safetensors: not a readable safetensors file") as info:
        load(bad)
    assert "\n" not in str(info.value)


def test_unknown_name_lists_the_shipped_models():
    with pytest.raises(ValueError, match="not a shipped model"):
        load("denoise-purple")


def _rewrite(tmp_path, change):
    """A copy of the first shipped weights file with its tensors changed by ``change(dict) -> dict``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    name = next(iter(WEIGHTS))
    with safe_open(str(WEIGHTS_DIR / WEIGHTS[name].file), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    path = tmp_path / "changed.safetensors"
    save_file(change(tensors), str(path), metadata=metadata)
    return path


def test_weights_of_the_wrong_shape_give_a_one_line_error(tmp_path):
    path = _rewrite(tmp_path, lambda t: {**t, "convs.1.weight": t["convs.1.weight"][:, :8].contiguous()})
    with pytest.raises(ValueError, match="do not match the architecture.*convs.1.weight") as info:
        load(path)
    assert "\n" not in str(info.value)


def test_weights_of_the_wrong_dtype_give_a_one_line_error(tmp_path):
    path = _rewrite(tmp_path, lambda t: {k: (v * 1000).to(torch.int16) for k, v in t.items()})
    with pytest.raises(ValueError, match="is torch.int16, not floating point") as info:
        load(path)
    assert "\n" not in str(info.value)


def test_the_cli_reports_a_damaged_model_in_one_line(tmp_path, capsys):

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\\x00" * 100)
    src = tmp_path / "in.png"
    from PIL import Image

    Image.new("L", (16, 16), 128).save(src)
    assert (
        main(
            ["restore", str(src), "-o", str(tmp_path / "out.png"), "--task", "denoise", "--weights", str(bad)]
        )
        != 0
    )
    err = capsys.readouterr().err.strip()
    assert "bad.safetensors" in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def _noisy_crop(color: bool) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) 64x64 crops of a real photo in [0, 1], noise sigma 25 on the 0-255 scale."""
    from skimage import data

    image = data.astronaut()[160:224, 180:244] / 255.0
    if not color:
        image = image @ np.array([0.299, 0.587, 0.114])
    noisy = image + 25 / 255 * np.random.default_rng(0).standard_normal(image.shape)
    return image, np.clip(noisy, 0, 1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a - b) ** 2)))


def test_shipped_denoiser_keeps_16_bit_depth_and_improves_a_noisy_16_bit_png(tmp_path, capsys):
    import json

    import cv2

    clean, noisy = _noisy_crop(color=False)
    src, out = tmp_path / "deep.png", tmp_path / "out.png"
    cv2.imwrite(str(src), np.round(noisy * 65535).astype(np.uint16))
    assert main(["restore", "--task", "denoise", "--sigma", "25", str(src), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sigma"] == 25 and summary["sigma_used"] is False  # blind: for information only
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint16 and result.shape == (64, 64)
    assert _psnr(result / 65535, clean) > _psnr(noisy, clean) + 5


def test_shipped_denoiser_keeps_alpha_and_improves_a_noisy_rgba_png(tmp_path):
    from PIL import Image

    clean, noisy = _noisy_crop(color=True)
    alpha = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    rgba = np.dstack([np.round(noisy * 255).astype(np.uint8), alpha])
    src, out = tmp_path / "rgba.png", tmp_path / "out.png"
    Image.fromarray(rgba, "RGBA").save(src)
    assert main(["restore", "--task", "denoise", str(src), "-o", str(out)]) == 0
    result = Image.open(out)
    assert result.mode == "RGBA" and result.size == (64, 64)
    restored = np.asarray(result)
    np.testing.assert_array_equal(restored[..., 3], alpha)
    assert _psnr(restored[..., :3] / 255, clean) > _psnr(rgba[..., :3] / 255, clean) + 5
