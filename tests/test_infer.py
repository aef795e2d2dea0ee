from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from rednet.cli import main
from rednet.infer import DIHEDRAL, restore, self_ensemble, tiled
from rednet.model import RED10, RED30, REDNet
from rednet.train import train
from rednet.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def random_model(config=RED10, **changes) -> REDNet:
    torch.manual_seed(0)
    return REDNet(dataclasses.replace(config, width=8, **changes)).eval()


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(37, 53), (64, 64), (101, 29), (3, 200), (250, 5)])
def test_tiled_output_equals_whole_image_output(stride, channels, size):
    model = random_model(RED30 if stride == 1 else RED10, stride=stride, channels=channels)
    x = torch.rand(1, channels, *size, generator=torch.Generator().manual_seed(1))
    whole = restore(model, x, tile=None)
    for tile in (16, 25):
        assert (restore(model, x, tile=tile) - whole).abs().max() < 1e-4


def test_tiled_of_a_whole_image_function_needs_the_margin():
    # A 5x5 box filter needs 2 px of context: with margin 2 tiling is exact, with margin 0 it is not.
    def box(t):
        return torch.nn.functional.avg_pool2d(t, 5, stride=1, padding=2, count_include_pad=True)

    x = torch.rand(1, 1, 30, 41)
    assert torch.allclose(tiled(box, x, tile=8, margin=2), box(x), atol=1e-6)
    assert not torch.allclose(tiled(box, x, tile=8, margin=0), box(x), atol=1e-3)


class _CountedError(Exception):
    """Raised by on_tile once the tile count is known, so that nothing is computed."""


@pytest.mark.parametrize(
    ("size", "tiles"), [((3, 100_000), 2), ((100_000, 3), 2), ((1, 600_000), 3), ((1024, 1024), 4)]
)
def test_auto_tiles_follow_pixels_so_a_strip_is_cut_into_few_long_tiles(size, tiles):
    """Tiles are chosen by area: a 3 x 100000 strip is 300000 pixels, 2 tiles of at most 512 x 512 pixels,
    not 196 tiles of 3 x 512 (each computed from 3 x 634 input pixels), which took 89 s."""
    counts = []

    def count(done: int, total: int) -> None:
        counts.append(total)
        raise _CountedError

    with pytest.raises(_CountedError):
        restore(random_model(RED10), torch.zeros(1, 1, *size), on_tile=count)
    assert counts == [tiles]


def test_the_tiles_of_a_strip_hold_at_most_the_area_of_a_square_tile():
    blocks: list[tuple[int, int]] = []
    x = torch.rand(1, 1, 3, 100_000)

    def identity(t: torch.Tensor) -> torch.Tensor:
        blocks.append(tuple(t.shape[-2:]))
        return t

    assert torch.equal(tiled(identity, x, tile=512, margin=61), x)
    assert len(blocks) == 2 and all(h * w <= 512 * 512 + 2 * 61 * 3 for h, w in blocks)


def test_self_ensemble_uses_8_distinct_invertible_transforms():
    x = torch.rand(1, 1, 6, 9)
    assert len(set(DIHEDRAL)) == 8
    assert torch.allclose(self_ensemble(lambda t: t, x), x)

    # A function that is not rotation-invariant gets averaged over all 8 orientations.
    def shift(t):
        return torch.roll(t, 1, dims=-1)

    averaged = self_ensemble(shift, x)
    assert not torch.allclose(averaged, shift(x))


def test_ensemble_changes_a_random_model_output_and_keeps_the_shape():
    model = random_model()
    x = torch.rand(1, 1, 23, 31)
    plain, ens = restore(model, x), restore(model, x, ensemble=True)
    assert ens.shape == x.shape and not torch.allclose(plain, ens)
    assert (restore(model, x, ensemble=True, tile=8) - ens).abs().max() < 1e-4


def zero_body(model: REDNet) -> REDNet:
    """With the last layer zeroed the network is the identity (residual learning)."""
    for p in model.deconvs[-1].parameters():
        torch.nn.init.zeros_(p)
    return model


def test_colour_image_with_a_gray_model_is_restored_on_y_and_keeps_cbcr():
    model = zero_body(random_model())
    x = torch.rand(1, 3, 20, 20)
    assert (restore(model, x) - x).abs().max() < 1e-5  # identity on Y, CbCr untouched
    model.deconvs[-1].bias.data.fill_(0.05)  # brighten Y only
    y = restore(model, x * 0.5)
    from rednet.metrics import rgb_to_ycbcr

    delta = rgb_to_ycbcr(y) - rgb_to_ycbcr(x * 0.5)
    assert torch.allclose(delta[:, 0], torch.full_like(delta[:, 0], 0.05), atol=1e-5)
    assert delta[:, 1:].abs().max() < 1e-5


def test_gray_image_with_a_colour_model_gives_one_channel():
    model = zero_body(random_model(channels=3))
    x = torch.rand(1, 1, 9, 9)
    assert (restore(model, x) - x).abs().max() < 1e-6


_HEAP = """
import sys, torch
from rednet.infer import reuse_freed_memory
if sys.argv[1] == "on":
    assert reuse_freed_memory()
def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
def in_heap(address):
    with open("/proc/self/maps") as f:
        for line in f:
            start, end = (int(a, 16) for a in line.split()[0].split("-"))
            if start <= address < end:
                return line.rstrip().endswith("[heap]")
    return False
x = torch.ones(16 << 20)  # 64 MiB, touched: a layer's activation
heap = in_heap(x.data_ptr())
before = rss_kib()
del x
print(int(heap), before - rss_kib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_reuse_freed_memory_keeps_large_blocks_on_the_heap_after_they_are_freed():
    def heap_and_released_kib(mode: str) -> tuple[int, int]:
        command = [sys.executable, "-c", _HEAP, mode]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        heap, released = done.stdout.split()
        return int(heap), int(released)

    # glibc's default: a private mmap, handed back to the system when freed (the next one faults in anew)
    heap, released = heap_and_released_kib("off")
    assert not heap and released > 60_000
    # tuned: from the heap, kept by the process for the next activation
    heap, released = heap_and_released_kib("on")
    assert heap and released < 4_000


@pytest.mark.parametrize(("tile", "channels", "expected"), [(None, 1, 1), (16, 1, 9), (16, 3, 9), (64, 3, 1)])
def test_on_tile_reports_every_tile_in_order_and_leaves_the_result_unchanged(tile, channels, expected):
    model = random_model(RED10)  # 1-channel: a colour image goes through the Y path, which must report too
    x = torch.rand(1, channels, 40, 37, generator=torch.Generator().manual_seed(2))
    calls: list[tuple[int, int]] = []
    out = restore(model, x, tile=tile, on_tile=lambda done, total: calls.append((done, total)))
    assert calls == [(i, expected) for i in range(expected + 1)]
    assert torch.equal(out, restore(model, x, tile=tile))


def test_an_exception_from_on_tile_stops_the_restore():
    def stop(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    seen = []
    with pytest.raises(KeyboardInterrupt):
        restore(
            random_model(RED10),
            torch.rand(1, 1, 40, 40),
            tile=16,
            on_tile=lambda d, t: (seen.append(d), stop(d, t)),
        )
    assert seen == [0, 1, 2]


def test_restore_clamps_and_does_not_modify_its_input():
    model = random_model()
    x = torch.rand(1, 1, 16, 16) * 1.5 - 0.25
    before = x.clone()
    y = restore(model, x)
    assert torch.equal(x, before)
    assert y.min() >= 0 and y.max() <= 1


def test_bf16_restore_is_close_to_fp32():
    model = random_model(RED30)
    x = torch.rand(1, 1, 32, 32)
    assert (restore(model, x, bf16=True) - restore(model, x)).abs().max() < 0.05


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Briefly trained weights (RED10 width 8), exported as a user would."""
    folder = tmp_path_factory.mktemp("w")
    (folder / "img").mkdir()
    Image.fromarray(data.camera()).save(folder / "img" / "camera.png")
    config = TrainConfig(
        data=str(folder / "img"),
        depth=10,
        width=8,
        steps=2,
        batch_size=2,
        patch_size=16,
        val_set="",
        dtype="fp32",
    )
    train(config, folder / "run", progress=False)
    assert main(["export", str(folder / "run"), "-o", str(folder / "w.safetensors")]) == 0
    return folder / "w.safetensors"


def test_restore_cli_keeps_16_bit_depth_and_alpha(weights, tmp_path):
    import cv2

    rgba = (np.random.default_rng(0).random((30, 40, 4)) * 65535).astype(np.uint16)
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), rgba)
    before = src.read_bytes()
    out = tmp_path / "out.png"
    assert main(["restore", "--task", "denoise", str(src), "-o", str(out), "--weights", str(weights)]) == 0
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint16 and result.shape == (30, 40, 4)
    np.testing.assert_array_equal(result[..., 3], rgba[..., 3])
    assert src.read_bytes() == before


@pytest.mark.parametrize(("size", "expected"), [((1, 1), (3, 3)), ((53, 37), (159, 111))])
def test_restore_sr_writes_the_enlarged_image(weights, tmp_path, size, expected):
    src = tmp_path / "small.png"
    Image.new("RGB", size, (120, 30, 200)).save(src)
    out = tmp_path / "big.png"
    assert (
        main(["restore", "--task", "sr", "--scale", "3", str(src), "-o", str(out), "--weights", str(weights)])
        == 0
    )
    assert Image.open(out).size == expected


def test_restore_sr_of_a_16_bit_image_stays_16_bit(weights, tmp_path):
    import cv2

    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), (np.random.default_rng(1).random((10, 12)) * 65535).astype(np.uint16))
    out = tmp_path / "big.png"
    assert (
        main(["restore", "--task", "sr", "--scale", "3", str(src), "-o", str(out), "--weights", str(weights)])
        == 0
    )
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint16 and result.shape == (30, 36)


def test_restore_continues_past_a_bad_file_and_exits_1(weights, tmp_path, capsys):
    Image.fromarray(data.camera()[:40, :40]).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.fromarray(data.moon()[:40, :40]).save(tmp_path / "c.png")
    code = main(
        [
            "restore",
            "--task",
            "denoise",
            str(tmp_path / "*.png"),
            "-o",
            str(tmp_path / "out"),
            "--weights",
            str(weights),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 1 and summary["restored"] == 2 and summary["failed"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    assert "b.png" in captured.err


def test_restore_refuses_to_overwrite_its_input(weights, tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(data.camera()[:20, :20]).save(src)
    before = src.read_bytes()
    assert main(["restore", "--task", "denoise", str(src), "-o", str(src), "--weights", str(weights)]) == 1
    assert "is an input file" in capsys.readouterr().err and src.read_bytes() == before


def test_restore_without_a_shipped_model_says_what_to_do(tmp_path, capsys, monkeypatch):
    from rednet import zoo

    src = tmp_path / "a.png"
    Image.fromarray(data.camera()[:20, :20]).save(src)
    # Without the blind deblurrer, an unknown blur needs --kernel, or the user's own weights.
    monkeypatch.setattr(zoo, "WEIGHTS", {n: e for n, e in zoo.WEIGHTS.items() if n != "deblur"})
    assert main(["restore", "--task", "deblur", str(src), "-o", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err
    assert "--weights" in err and "give --kernel gaussian or disk" in err


def test_torchrun_shards_files_across_ranks_without_duplicates(weights, tmp_path):
    for i in range(5):
        Image.fromarray(data.camera()[i * 10 : i * 10 + 24, :24]).save(tmp_path / f"{i}.png")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "rednet",
        "restore",
        "--task",
        "denoise",
        str(tmp_path),
        "-o",
        str(tmp_path / "out"),
        "--weights",
        str(weights),
        "--device",
        "cpu",
        "--json",
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["processes"] == 2 and summary["restored"] == 5
    inputs = [r["input"] for r in summary["results"]]
    assert len(inputs) == len(set(inputs)) == 5
    assert {r["rank"] for r in summary["results"]} == {0, 1}


def test_python_api_and_torch_hub(weights):
    import rednet

    model = rednet.load(weights)
    assert model.card["steps"] == 2 and model.config.width == 8
    hub = torch.hub.load(str(ROOT), "red30", source="local", width=16)
    assert isinstance(hub, REDNet) and hub.config.depth == 30 and hub.config.width == 16
    loaded = torch.hub.load(str(ROOT), "red10", source="local", weights=str(weights))
    assert loaded.card["steps"] == 2


def test_export_onnx_cli_gives_a_graph_with_the_same_output(weights, tmp_path):
    from rednet.onnx import OnnxModel
    from rednet.zoo import load_weights

    out = tmp_path / "w.onnx"
    assert main(["export", "onnx", "--weights", str(weights), "-o", str(out)]) == 0
    assert main(["export", "onnx", "--weights", str(weights), "-o", str(out)]) == 1  # no silent overwrite
    model, _ = load_weights(weights)
    x = torch.rand(1, 1, 19, 23)
    with torch.no_grad():
        assert (OnnxModel(out)(x) - model(x)).abs().max() < 1e-4


def test_eval_scores_a_rednet_model_with_and_without_ensemble(weights, tmp_path, capsys):
    Image.fromarray(data.camera()[:48, :48]).save(tmp_path / "a.png")
    base = ["eval", "--task", "denoise", "--sigma", "25", "--dataset", str(tmp_path), "--json"]
    assert main([*base, "--method", "rednet", "--weights", str(weights)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*base, "--method", "rednet", "--weights", str(weights), "--ensemble"]) == 0
    ens = json.loads(capsys.readouterr().out)
    assert plain["config"]["model"] == str(weights) and ens["config"]["ensemble"] is True
    assert plain["mean"]["psnr"] != ens["mean"]["psnr"]
    assert main([*base, "--method", "rednet"]) == 1
    assert "needs --model NAME or --weights FILE" in capsys.readouterr().err


def test_a_mask_aware_model_needs_the_mask_keeps_known_pixels_and_tiles_exactly():
    model = random_model(RED10, channels=3, mask_input=True)
    x = torch.rand(1, 3, 41, 37, generator=torch.Generator().manual_seed(1))
    known = (torch.rand(1, 1, 41, 37, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    mask = 1 - known  # 1 = damaged
    whole = restore(model, x, tile=None, mask=mask)
    assert whole.shape == (1, 3, 41, 37)
    assert torch.equal(whole * known, x * known)
    # Exact tiling needs the fill's reach in the margin: big holes, and blocks smaller than the image.
    big = torch.rand(1, 3, 150, 130, generator=torch.Generator().manual_seed(3))
    holes = (torch.rand(1, 1, 150, 130, generator=torch.Generator().manual_seed(4)) <= 0.97).float()
    assert (
        restore(model, big, tile=40, mask=holes) - restore(model, big, tile=None, mask=holes)
    ).abs().max() < 1e-4
    ensemble = restore(model, x, tile=None, mask=mask, ensemble=True)
    assert torch.allclose(ensemble * known, x * known, atol=1e-6)
    gray = restore(model, x[:, :1], tile=None, mask=mask)  # a gray image through the colour model
    assert gray.shape == (1, 1, 41, 37)
    with pytest.raises(ValueError, match="needs a mask"):
        restore(model, x)
    with pytest.raises(ValueError, match=r"mask must be \(N, 1, 41, 37\)"):
        restore(model, x, mask=mask[..., :20])
    with pytest.raises(ValueError, match="takes no mask"):
        restore(random_model(RED10, channels=3), x, mask=mask)


def test_restore_deblur_without_a_kernel_uses_the_blind_model_and_with_one_the_kernels_model(
    tmp_path, capsys
):
    src = tmp_path / "a.png"
    Image.fromarray(data.astronaut()[:24, :24]).save(src)
    for flags, model in (([], "deblur"), (["--kernel", "disk"], "deblur-disk")):
        argv = ["restore", "--task", "deblur", *flags, str(src), "-o", str(tmp_path / f"{model}.png")]
        assert main([*argv, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["results"][0]["model"] == model


def _spot_detector() -> REDNet:
    """A damage model that finds exactly the pixels whose red channel is above 0.5 (hand-set weights)."""
    from rednet.model import REDNetConfig

    detector = REDNet(REDNetConfig(depth=2, width=1, channels=3, skip_every=0, output="damage"))
    with torch.no_grad():
        for layer in (detector.convs[0], detector.deconvs[0]):
            layer.weight.zero_()
        detector.convs[0].weight[0, 0, 1, 1] = 1.0
        detector.convs[0].bias.fill_(-0.5)
        detector.deconvs[0].weight[0, 0, 1, 1] = 200.0
        detector.deconvs[0].bias.fill_(-50.0)
    return detector


def test_find_damage_thresholds_the_damage_model_and_grows_the_mask():
    from rednet.inpaint import find_damage

    x = torch.zeros(1, 3, 9, 11)
    x[0, 0, 4, 5] = 1.0
    mask = find_damage(_spot_detector(), x, grow=0)  # 1 = damaged
    assert mask.shape == (1, 1, 9, 11) and float(mask.sum()) == 1 and mask[0, 0, 4, 5] == 1
    grown = find_damage(_spot_detector(), x, grow=1)
    assert float(grown.sum()) == 9 and float(grown[0, 0, 3:6, 4:7].sum()) == 9
    with pytest.raises(ValueError, match="needs a damage model"):
        find_damage(REDNet(RED10), x)


def test_keep_frame_drops_damage_on_one_colour_lines_along_the_edges_and_keeps_text_and_lost_pixels():
    from rednet.inpaint import FRAME_COVER, FRAME_RUN, keep_frame

    assert (FRAME_RUN, FRAME_COVER) == (32, 0.5)  # the lengths below are either side of them
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 40, 80, generator=g)  # texture: neighbours differ by far more than 8 levels
    damaged = torch.zeros(1, 1, 40, 80)
    x[..., 0, :], damaged[..., 0, :] = 0, 1  # a black frame line along the top, taken for damage
    x[..., 2, 10:60], damaged[..., 2, 10:60] = 1, 1  # a white line inside it, 50 of the 80 px
    x[..., :, 79], damaged[..., 5:25, 79] = 0.5, 1  # a gray line down the right edge, found in part
    x[..., 36:40, 20:26], damaged[..., 36:40, 20:26] = 1, 1  # a white letter cut by the bottom edge
    x[..., 37, 30:65], damaged[..., 37, 30:65] = 1, 1  # a white stroke along it, less than half the edge
    lost = torch.rand(30, 3, generator=g) < 0.8  # pixels lost along the left edge
    x[..., 5:35, 0:3] *= ~lost
    damaged[..., 5:35, 0:3] = lost.float()
    damaged[..., 20, 5:75] = 1  # a long scratch across the middle, away from the edges
    kept = keep_frame(damaged, x, 4)
    assert float(kept[..., 0, :].sum()) == 0 and float(kept[..., 2, :].sum()) == 0
    assert float(kept[..., :, 79].sum()) == 0
    assert torch.equal(kept[..., 36:40, 20:26], torch.ones(1, 1, 4, 6))
    assert torch.equal(kept[..., 37, 30:65], torch.ones(1, 1, 35))
    assert torch.equal(kept[..., 5:35, 0:3], damaged[..., 5:35, 0:3])
    assert torch.equal(kept[..., 20, 5:75], torch.ones(1, 1, 70))
    assert torch.equal(keep_frame(damaged, x, 2)[..., 2, 10:60], torch.ones(1, 1, 50))  # row 2 is past 2 px
    assert torch.equal(keep_frame(damaged, x, 0), damaged)
    assert float((kept * (1 - damaged)).sum()) == 0  # never adds damage


def test_find_damage_keeps_the_frame_by_default():
    from rednet.inpaint import find_damage

    x = torch.zeros(1, 3, 9, 40)
    x[0, 0, 0, :] = 1.0  # a red line along the top edge: the spot detector takes it for damage
    x[0, 0, 5, 5] = 1.0
    assert float(find_damage(_spot_detector(), x).sum()) == 1  # the frame stays, the spot is found
    assert float(find_damage(_spot_detector(), x, frame=0).sum()) == 41


def test_flat_colour_keeps_one_colour_strokes_and_drops_texture():
    from rednet.inpaint import flat_colour

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 40, 60, generator=g)  # texture: neighbours differ by far more than 8 levels
    damaged = torch.zeros(1, 1, 40, 60)
    damaged[..., 5:25, 5:25] = 1  # a damage model's false alarm on the texture
    x[..., 30:33, 10:50] = 1.0  # a white scratch, 3 px wide, ends included
    x[..., 30:33, 10:50] -= torch.randint(0, 4, (1, 1, 3, 40), generator=g) / 255  # re-encoding jitter
    damaged[..., 30:33, 10:50] = 1
    damaged[..., 20, 55] = 1  # an isolated speck of the texture
    kept = flat_colour(damaged, x, 8 / 255)
    assert torch.equal(kept[..., 30:33, 10:50], torch.ones(1, 1, 3, 40))  # the whole scratch
    assert float(kept[..., 5:25, 5:25].mean()) < 0.05 and kept[..., 20, 55] == 0
    assert float(kept.sum()) == float((kept * damaged).sum())  # never adds damage
    exact = flat_colour(damaged, x, 0.5 / 255)  # a tolerance under the jitter loses most of the scratch
    assert float(exact[..., 30:33, 10:50].mean()) < 0.9


def test_find_damage_filters_by_colour_when_given_a_tolerance():
    from rednet.inpaint import find_damage

    x = torch.zeros(1, 3, 9, 11)
    x[0, 0, 4, 5] = 1.0  # one isolated pixel: not a stroke
    assert float(find_damage(_spot_detector(), x, tolerance=8 / 255).sum()) == 0
    assert float(find_damage(_spot_detector(), x).sum()) == 1  # no filter by default
    x[0, :, 2:7, 5] = 1.0  # a white stroke 5 px long
    assert float(find_damage(_spot_detector(), x, tolerance=8 / 255).sum()) == 5
