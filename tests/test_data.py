from __future__ import annotations

import pytest
import torch

from rednet.data import BENCHMARKS, data_root, list_images, resolve_dataset


def test_missing_root_error_names_the_path_and_the_variable(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("REDNET_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match=r"nowhere.*REDNET_DATA"):
        data_root()
    with pytest.raises(FileNotFoundError, match=r"nowhere.*--data-root"):
        data_root(missing)


def test_env_variable_sets_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv("REDNET_DATA", str(tmp_path))
    assert data_root() == tmp_path.resolve()


def test_folder_lists_images_sorted_and_skips_other_files(tmp_path):
    for name in ["b.png", "a.jpg", "c.txt", "SOURCE.txt", "d.BMP"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png", "d.BMP"]
    files, color = resolve_dataset(tmp_path)
    assert len(files) == 3 and color is None


def test_empty_folder_and_unknown_name_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a benchmark name"):
        resolve_dataset("Set99", tmp_path)


@pytest.mark.parametrize(
    ("name", "count", "color"),
    [
        ("Set12", 12, False),
        ("BSD68", 68, False),
        ("CBSD68", 68, True),
        ("Set5", 5, True),
        ("Set14", 14, True),
        ("B100", 100, True),
        ("LIVE1", 29, True),
        ("Classic5", 5, False),
    ],
)
def test_named_benchmarks_resolve_with_their_image_counts(data_root, name, count, color):
    files, is_color = resolve_dataset(name.lower(), data_root)
    assert len(files) == count
    assert is_color is color is BENCHMARKS[name].color
    assert files == sorted(files)


def test_colour_jitter_gives_rgb_patches_new_hues_and_saturations_and_leaves_gray_ones_alone():
    from skimage import data as samples

    from rednet.data import Corruption, Levels, PatchDataset

    photo = torch.from_numpy(samples.astronaut()[100:300, 100:300]).permute(2, 0, 1).contiguous()
    denoise = [Corruption("denoise", Levels.parse("0"))]
    plain, jittered = (PatchDataset([photo], denoise, seed=3, color_jitter=j) for j in (False, True))
    orders, spreads = set(), []
    for i in range(60):
        a, b = plain[i][1], jittered[i][1]
        assert b.min() >= 0 and b.max() <= 1 and torch.equal(torch.round(b * 255), b * 255)
        orders.add(tuple(b.mean(dim=(1, 2)).argsort().tolist()))
        spreads.append(float((b - b.mean(0)).std() / (a - a.mean(0)).std()))
    assert len(orders) >= 4  # the channel order changes the hue of every colour
    assert min(spreads) < 0.75 and max(spreads) > 1.3  # less and more saturated than the photo
    gray = photo.float().mean(0, keepdim=True).round().to(torch.uint8)
    plain, jittered = (PatchDataset([gray], denoise, seed=3, color_jitter=j) for j in (False, True))
    assert all(torch.equal(plain[i][1], jittered[i][1]) for i in range(5))
