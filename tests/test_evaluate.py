from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from rednet.evaluate import EvalConfig, evaluate


@pytest.fixture
def folder(tmp_path):
    """A small folder of real images: two gray, written as PNG."""
    Image.fromarray(data.camera()[100:196, 150:246]).save(tmp_path / "a.png")
    Image.fromarray(data.moon()[200:264, 200:280]).save(tmp_path / "b.png")
    return tmp_path


def test_denoise_inputs_are_seeded_per_image_and_reproducible(folder):
    config = EvalConfig(task="denoise", dataset=str(folder), sigma=25)
    first, second = evaluate(config), evaluate(config)
    assert [r["psnr"] for r in first["images"]] == [r["psnr"] for r in second["images"]]
    other = evaluate(EvalConfig(task="denoise", dataset=str(folder), sigma=25, seed=5))
    assert other["images"][0]["psnr"] != first["images"][0]["psnr"]
    # sigma = 25 on the 0-255 scale gives about 20.2 dB of noise (a bit more after clipping and rounding).
    assert 20.0 < first["mean"]["psnr"] < 21.5


def test_bm3d_improves_on_the_noisy_input(folder):
    noisy = evaluate(EvalConfig(task="denoise", dataset=str(folder), sigma=25))
    bm3d = evaluate(EvalConfig(task="denoise", dataset=str(folder), sigma=25, method="bm3d"))
    assert bm3d["mean"]["psnr"] > noisy["mean"]["psnr"] + 5
    assert bm3d["mean"]["ssim"] > noisy["mean"]["ssim"]


def test_result_records_the_protocol(folder):
    result = evaluate(EvalConfig(task="sr", dataset=str(folder), scale=3))
    proto = result["protocol"]
    assert proto["shave"] == 3 and proto["quantized"] is True and proto["channel"] == "gray"
    assert proto["images"] == 2 and len(result["images"]) == 2
    assert set(result["mean"]) == {"psnr", "ssim", "seconds", "psnr_shave0"}  # SR: also the whole image
    unshaved = evaluate(EvalConfig(task="sr", dataset=str(folder), scale=3, shave=0))
    assert unshaved["protocol"]["shave"] == 0 and set(unshaved["mean"]) == {"psnr", "ssim", "seconds"}
    assert unshaved["mean"]["psnr"] == pytest.approx(result["mean"]["psnr_shave0"])


@pytest.mark.parametrize(
    ("kwargs", "method"),
    [({"kernel": "gaussian"}, "wiener"), ({"kernel": "disk"}, "richardson-lucy")],
)
def test_deconvolution_baselines_improve_on_the_blurred_input(folder, kwargs, method):
    # On the detailed camera crop (the smooth moon crop gains little from deconvolution).
    blurred = evaluate(EvalConfig(task="deblur", dataset=str(folder), limit=1, **kwargs))
    restored = evaluate(EvalConfig(task="deblur", dataset=str(folder), method=method, limit=1, **kwargs))
    assert restored["mean"]["psnr"] > blurred["mean"]["psnr"]


@pytest.mark.parametrize("damage", ["text", "0.5"])
@pytest.mark.parametrize("method", ["telea", "biharmonic"])
def test_inpainting_baselines_improve_on_the_damaged_input(folder, damage, method):
    damaged = evaluate(EvalConfig(task="inpaint", dataset=str(folder), damage=damage))
    restored = evaluate(EvalConfig(task="inpaint", dataset=str(folder), damage=damage, method=method))
    assert restored["mean"]["psnr"] > damaged["mean"]["psnr"] + 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "denoise"}, "needs --sigma"),
        ({"task": "sr", "scale": 5}, "scale must be 2, 3 or 4"),
        ({"task": "jpeg", "quality": 0}, "quality must be 1..100"),
        ({"task": "deblur", "kernel": "box"}, "kernel must be one of"),
        ({"task": "inpaint", "damage": "1.5"}, "rate must be in"),
        ({"task": "denoise", "sigma": 25, "method": "bicubic"}, "does not do task"),
        ({"task": "denoise", "sigma": 25, "method": "magic"}, "method must be one of"),
    ],
)
def test_bad_config_is_a_one_line_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvalConfig(dataset=".", **kwargs)


# --- the published baselines (protocol.md §3): these pin the whole protocol, on the real test sets ---


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [("LIVE1", [27.77, 30.07, 31.41, 32.35]), ("Classic5", [27.82, 30.12, 31.48, 32.43])],
)
def test_jpeg_input_matches_published_baselines(data_root, dataset, expected):
    for quality, published in zip([10, 20, 30, 40], expected, strict=True):
        config = EvalConfig(task="jpeg", dataset=dataset, quality=quality, data_root=str(data_root))
        assert evaluate(config)["mean"]["psnr"] == pytest.approx(published, abs=0.01)


@pytest.mark.parametrize(
    ("dataset", "expected", "tolerance"),
    [
        ("Set5", [33.66, 30.39, 28.42], 0.03),
        ("Set14", [30.24, 27.55, 26.00], 0.05),
        ("B100", [29.56, 27.21, 25.96], 0.03),
    ],
)
def test_bicubic_sr_matches_published_baselines(data_root, dataset, expected, tolerance):
    for scale, published in zip([2, 3, 4], expected, strict=True):
        config = EvalConfig(
            task="sr", dataset=dataset, scale=scale, method="bicubic", data_root=str(data_root)
        )
        assert evaluate(config)["mean"]["psnr"] == pytest.approx(published, abs=tolerance)


def test_bm3d_on_bsd68_is_near_the_published_value(data_root):
    # Published BM3D, BSD68 sigma 25: 28.57 dB over all 68 images; on the first 4 we only check the
    # ballpark (the full-set figure is a benchmark: rednet eval ... --dataset BSD68 --method bm3d).
    common = {"task": "denoise", "dataset": "BSD68", "sigma": 25, "data_root": str(data_root), "limit": 4}
    result = evaluate(EvalConfig(method="bm3d", **common))
    noisy = evaluate(EvalConfig(**common))
    assert 27.0 < result["mean"]["psnr"] < 31.0
    assert result["mean"]["psnr"] > noisy["mean"]["psnr"] + 7
    assert np.isfinite(result["mean"]["seconds"])


def test_gaussian_kernels_of_any_sigma_up_to_4_are_named_gaussian_dash_sigma():
    from rednet import degrade
    from rednet.evaluate import kernel_by_name

    assert torch.equal(kernel_by_name("gaussian-2.4"), degrade.gaussian_kernel(25, 2.4))
    assert torch.equal(kernel_by_name("gaussian"), degrade.gaussian_kernel(25, 1.6))
    for bad in ("gaussian-0", "gaussian-5", "gaussian-x", "box"):
        with pytest.raises(ValueError, match="gaussian-S"):
            kernel_by_name(bad)
    with pytest.raises(ValueError, match="gaussian-S"):
        EvalConfig(task="deblur", dataset="Set14", method="identity", kernel="gaussian-9")


def test_a_detector_is_only_for_the_rednet_method_on_inpainting():
    with pytest.raises(ValueError, match="--detector is for --task inpaint --method rednet"):
        EvalConfig(task="inpaint", dataset="Set14", method="telea", damage="text", detector="inpaint-detect")
    with pytest.raises(ValueError, match="--detector is for"):
        EvalConfig(task="denoise", dataset="Set14", method="rednet", sigma=25, model="m", detector="d")


def test_decoys_and_framed_score_against_the_image_with_its_own_text_or_frame():
    from rednet.evaluate import corrupt

    clean = torch.from_numpy(data.astronaut()[::4, ::4]).permute(2, 0, 1)[None].float() / 255
    c = corrupt(clean, EvalConfig(task="inpaint", dataset=".", damage="decoys"), seed=0)
    assert not torch.equal(c.clean, clean) and c.mask is not None
    kept = c.mask.expand_as(c.clean) == 0
    assert torch.equal(c.degraded[kept], c.clean[kept]) and (c.mask == 1).any()
    plain = corrupt(clean, EvalConfig(task="inpaint", dataset=".", damage="text"), seed=0)
    assert torch.equal(plain.clean, clean)
    framed = corrupt(clean, EvalConfig(task="inpaint", dataset=".", damage="framed"), seed=0)
    assert torch.equal(framed.clean[..., 5:-5, 5:-5], clean[..., 5:-5, 5:-5])
    assert not torch.equal(framed.clean, clean)  # its frame is in the ground truth


def test_blind_inpainting_eval_keeps_a_black_border_unless_told_not_to(tmp_path):
    photo = data.astronaut()[60:252, 120:312].copy()
    photo[[0, -1], :] = 0  # a one-pixel black border, as 9 of LIVE1's 29 photos have
    photo[:, [0, -1]] = 0
    Image.fromarray(photo).save(tmp_path / "framed.png")
    blind = {"task": "inpaint", "dataset": str(tmp_path), "damage": "text", "method": "rednet"}
    blind |= {"model": "inpaint-mask", "detector": "inpaint-detect", "damage_ensemble": False}
    kept = evaluate(EvalConfig(**blind))["mean"]["psnr"]
    painted_over = evaluate(EvalConfig(**blind, damage_frame=0))["mean"]["psnr"]
    print(f"blind two-step, bordered photo: {kept:.2f} dB with its frame kept, {painted_over:.2f} without")
    assert kept > painted_over + 1
