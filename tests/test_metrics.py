from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import as_tensor
from rednet.metrics import psnr, rgb_to_y, ssim


def noisy_pair(image: np.ndarray, sigma: float = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    noisy = np.clip(np.round(image + sigma * rng.standard_normal(image.shape)), 0, 255).astype(np.uint8)
    return image, noisy


@pytest.mark.parametrize("name", ["camera", "astronaut", "coffee"])
def test_psnr_matches_skimage_on_real_images(name):
    clean, noisy = noisy_pair(getattr(data, name)())
    ours = psnr(as_tensor(noisy), as_tensor(clean))
    assert ours.shape == (1,)
    assert ours.item() == pytest.approx(peak_signal_noise_ratio(clean, noisy, data_range=255), abs=1e-6)


@pytest.mark.parametrize("name", ["camera", "astronaut", "coffee"])
def test_ssim_matches_skimage_matlab_settings_on_real_images(name):
    clean, noisy = noisy_pair(getattr(data, name)())
    expected = structural_similarity(
        clean.astype(np.float64),
        noisy.astype(np.float64),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1 if clean.ndim == 3 else None,
    )
    assert ssim(as_tensor(noisy), as_tensor(clean)).item() == pytest.approx(expected, abs=1e-4)


def test_ssim_matches_skimage_on_a_benchmark_image(data_root):
    from PIL import Image

    clean = np.asarray(Image.open(sorted((data_root / "BSD68").glob("*.png"))[0]))
    clean, noisy = noisy_pair(clean, sigma=30, seed=3)
    expected = structural_similarity(
        clean, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(as_tensor(noisy), as_tensor(clean)).item() == pytest.approx(expected, abs=1e-4)


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    x = as_tensor(data.camera())
    assert math.isinf(psnr(x, x).item())
    assert ssim(x, x).item() == pytest.approx(1.0)


def test_metrics_are_per_image_not_batch_averaged():
    clean = as_tensor(data.camera()[:128, :128]).repeat(2, 1, 1, 1)
    noisy = clean.clone()
    noisy[0] += 0.01
    noisy[1] += 0.1
    values = psnr(noisy, clean)
    assert values.shape == (2,)
    assert values[0].item() == pytest.approx(40.0, abs=1e-4)
    assert values[1].item() == pytest.approx(20.0, abs=1e-4)


def test_psnr_of_rgb_averages_mse_over_all_channels():
    clean = torch.zeros(1, 3, 8, 8)
    noisy = clean.clone()
    noisy[:, 0] = 0.1  # MSE 0.01 on one channel of three
    assert psnr(noisy, clean).item() == pytest.approx(10 * math.log10(3 / 0.01), abs=1e-6)


def test_shave_removes_border_pixels_before_scoring():
    clean = torch.zeros(1, 1, 20, 20)
    noisy = clean.clone()
    noisy[..., :2, :] = 1.0  # damage only the top two rows
    assert math.isinf(psnr(noisy, clean, shave=2).item())
    assert not math.isinf(psnr(noisy, clean, shave=1).item())
    with pytest.raises(ValueError, match="shave"):
        psnr(noisy, clean, shave=10)


def test_rgb_to_y_matches_matlab_rgb2ycbcr_values():
    # MATLAB: rgb2ycbcr(uint8([255 255 255; 0 0 0; 255 0 0; 0 255 0; 0 0 255])) Y = 235, 16, 81, 145, 41.
    rgb = torch.tensor([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]).float() / 255
    x = rgb.T.reshape(1, 3, 1, 5)
    assert (rgb_to_y(x) * 255).round().flatten().tolist() == [235, 16, 81, 145, 41]
    assert rgb_to_y(x).shape == (1, 1, 1, 5)


def test_rgb_to_y_is_identity_on_gray_and_rounds_to_8_bits():
    gray = torch.rand(1, 1, 4, 4)
    assert rgb_to_y(gray) is gray
    y = rgb_to_y(torch.rand(1, 3, 4, 4)) * 255
    torch.testing.assert_close(y, y.round(), atol=1e-4, rtol=0)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"x must be \(N, C, H, W\), got \(3, 8, 8\)"):
        psnr(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
