from __future__ import annotations

import pytest
import torch

import rednet
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
    from rednet.cli import main

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
