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
