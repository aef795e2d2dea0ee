from __future__ import annotations

import dataclasses

import pytest
import torch

from rednet.model import (
    RED10,
    RED20,
    RED30,
    REDNet,
    REDNetConfig,
    convert_channels,
    fill_missing,
    parameter_count,
    receptive_field,
)

PRESETS = {"RED10": RED10, "RED20": RED20, "RED30": RED30}


def small(config: REDNetConfig, **changes) -> REDNetConfig:
    return dataclasses.replace(config, width=8, **changes)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("skips", [True, False])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("channels", [1, 3])
def test_forward_keeps_the_input_shape_for_any_size(name, skips, stride, channels):
    config = small(PRESETS[name], skip_every=2 if skips else 0, stride=stride, channels=channels)
    model = REDNet(config).eval()
    for h, w in [(1, 1), (37, 53), (64, 64)]:
        x = torch.rand(2, channels, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            y = model(x)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (RED10, 296_641),
        (RED20, 665_921),
        (RED30, 1_035_201),
        (dataclasses.replace(RED30, channels=3), 1_037_507),
        (dataclasses.replace(RED30, width=128), 4_134_785),
        (dataclasses.replace(RED30, width=128, channels=3), 4_139_395),
    ],
)
def test_parameter_count_matches_the_formula_and_paper_table(config, expected):
    model = REDNet(config)
    assert sum(p.numel() for p in model.parameters()) == expected == parameter_count(config)


def measured_receptive_field(model: REDNet, size: int = 161) -> int:
    """Side of the input region that the centre output pixel depends on (gradient probe)."""
    reach = torch.zeros(size, size)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(
            1, model.config.channels, size, size, generator=g, dtype=torch.float64, requires_grad=True
        )
        model(x)[0, :, size // 2, size // 2].sum().backward()
        reach += x.grad.abs().sum(dim=(0, 1))
    rows = torch.nonzero(reach.sum(dim=1)).flatten()
    cols = torch.nonzero(reach.sum(dim=0)).flatten()
    return max(int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)


@pytest.mark.parametrize(("name", "expected"), [("RED10", 21), ("RED20", 41), ("RED30", 61)])
def test_receptive_field_measured_by_gradient_probe(name, expected):
    torch.manual_seed(0)
    config = small(PRESETS[name])
    # The residual path alone would make the centre pixel see itself; the probe measures the network body.
    model = REDNet(dataclasses.replace(config, residual=False)).double()
    assert measured_receptive_field(model) == expected == receptive_field(config)


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_strided_receptive_field_is_within_the_documented_bound(stride):
    torch.manual_seed(0)
    config = small(RED10, stride=stride, residual=False)
    measured = measured_receptive_field(REDNet(config).double(), size=201)
    assert 21 < measured <= receptive_field(config)


def test_skips_follow_the_released_prototxt_wiring():
    # REDNet_ch1.prototxt: conv output c_2k is added to deconv output d_(15-2k), k = 1..7.
    model = REDNet(RED30)
    assert model.skip_from == {13: 2, 11: 4, 9: 6, 7: 8, 5: 10, 3: 12, 1: 14}
    assert REDNet(RED10).skip_from == {}
    assert REDNet(dataclasses.replace(RED20, skip_every=4)).skip_from == {6: 4, 2: 8}


def test_residual_output_is_input_plus_body_without_clamp():
    config = small(RED10)
    with_res = REDNet(config)
    without = REDNet(dataclasses.replace(config, residual=False))
    without.load_state_dict(with_res.state_dict())
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(with_res(x), x + without(x))
    # Zeroing the last layer leaves exactly the input: the residual is not passed through a ReLU.
    for p in with_res.deconvs[-1].parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 1, 16, 16) - 0.5
    torch.testing.assert_close(with_res(x), x)


def test_skip_connections_change_the_output():
    torch.manual_seed(0)
    a = REDNet(small(RED20))
    b = REDNet(small(RED20, skip_every=0))
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 1, 24, 24)
    assert not torch.allclose(a(x), b(x))


def test_strided_variant_works_on_fewer_hidden_pixels():
    model = REDNet(small(RED10, stride=2))
    seen = []
    model.convs[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.rand(1, 1, 37, 53))
    assert seen[0][-2:] == (19, 27)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"depth": 7},
        {"depth": 0},
        {"width": 0},
        {"channels": 2},
        {"skip_every": -1},
        {"stride": 0},
        {"output": "edges"},
    ],
)
def test_invalid_config_is_refused_with_a_message(kwargs):
    with pytest.raises(ValueError, match="must"):
        REDNetConfig(**kwargs)


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"x must be \(N, 1, H, W\), got \(1, 3, 8, 8\)"):
        REDNet(small(RED10))(torch.rand(1, 3, 8, 8))


def test_gray_weights_start_an_rgb_model_that_acts_as_gray_model_on_the_mean():
    torch.manual_seed(0)
    gray = REDNet(REDNetConfig(depth=10, width=16, channels=1)).eval()
    rgb = REDNet(REDNetConfig(depth=10, width=16, channels=3)).eval()
    rgb.load_state_dict(convert_channels(gray.state_dict(), 3))
    x = torch.rand(1, 3, 23, 31)
    with torch.no_grad():
        residual = gray(x.mean(dim=1, keepdim=True)) - x.mean(dim=1, keepdim=True)
        expected = x + residual  # the same correction on R, G and B
        torch.testing.assert_close(rgb(x), expected, atol=1e-5, rtol=1e-5)


def test_rgb_weights_start_a_gray_model_that_matches_on_gray_images():
    torch.manual_seed(0)
    rgb = REDNet(REDNetConfig(depth=10, width=16, channels=3)).eval()
    gray = REDNet(REDNetConfig(depth=10, width=16, channels=1)).eval()
    gray.load_state_dict(convert_channels(rgb.state_dict(), 1))
    x = torch.rand(1, 1, 23, 31)
    with torch.no_grad():
        torch.testing.assert_close(
            gray(x), rgb(x.expand(1, 3, 23, 31)).mean(dim=1, keepdim=True), atol=1e-5, rtol=1e-5
        )


def test_convert_channels_refuses_other_counts_and_keeps_the_source():
    state = REDNet(REDNetConfig(depth=10, width=16, channels=1)).state_dict()
    before = state["convs.0.weight"].clone()
    with pytest.raises(ValueError, match="1 and 3"):
        convert_channels(state, 4)
    convert_channels(state, 3)
    assert torch.equal(state["convs.0.weight"], before)


@pytest.mark.parametrize("stride", [1, 2])
def test_training_path_of_the_deconvolutions_gives_the_same_output_and_gradients(stride):
    torch.manual_seed(0)
    model = REDNet(REDNetConfig(depth=10, width=16, channels=3, stride=stride))
    x = torch.rand(2, 3, 21, 26)
    results = []
    for as_conv in (True, False):
        model.deconv_as_conv = as_conv
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_a, grads_a), (out_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_mask_aware_model_keeps_known_pixels_and_returns_the_image_channels():
    torch.manual_seed(0)
    model = REDNet(REDNetConfig(depth=10, width=8, channels=3, mask_input=True)).eval()
    image = torch.rand(2, 3, 19, 23)
    known = (torch.rand(2, 1, 19, 23) > 0.5).float()
    with torch.no_grad():
        out = model(torch.cat([image, known], dim=1))
    assert out.shape == (2, 3, 19, 23)
    assert torch.equal(out * known, image * known)  # known pixels pass through
    assert not torch.allclose(out * (1 - known), image * (1 - known))  # the others are filled
    assert parameter_count(model.config) == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match=r"x must be \(N, 4, H, W\)"):
        model(image)


def test_an_rgb_model_starts_a_mask_aware_one_that_first_ignores_the_mask():
    torch.manual_seed(0)
    rgb = REDNet(REDNetConfig(depth=10, width=16, channels=3)).eval()
    masked = REDNet(REDNetConfig(depth=10, width=16, channels=3, mask_input=True)).eval()
    masked.load_state_dict(convert_channels(rgb.state_dict(), 3, mask_input=True))
    image, known = torch.rand(1, 3, 17, 21), (torch.rand(1, 1, 17, 21) > 0.3).float()
    with torch.no_grad():
        expected = known * image + (1 - known) * rgb(fill_missing(image, known))
        torch.testing.assert_close(masked(torch.cat([image, known], 1)), expected, atol=1e-5, rtol=1e-5)
    # and back: dropping the mask channel gives the RGB model's first layer again
    back = convert_channels(masked.state_dict(), 3, mask_input=False)
    assert torch.equal(back["convs.0.weight"], rgb.state_dict()["convs.0.weight"])


def test_fill_missing_takes_the_mean_of_the_nearest_known_pixels_and_keeps_the_known_ones():
    image = torch.zeros(1, 1, 9, 9)
    known = torch.zeros(1, 1, 9, 9)
    image[..., 4, 3], image[..., 4, 5] = 0.2, 0.6
    known[..., 4, 3] = known[..., 4, 5] = 1
    filled = fill_missing(image, known)
    assert filled[0, 0, 4, 3] == pytest.approx(0.2) and filled[0, 0, 4, 5] == pytest.approx(0.6)
    assert filled[0, 0, 4, 4] == pytest.approx(0.4)  # both in its 3 x 3 window
    assert filled[0, 0, 4, 2] == pytest.approx(0.2)  # only the left one in its 3 x 3 window
    assert filled[0, 0, 0, 8] == pytest.approx(0.6)  # far corner: its 9 x 9 window holds the right one
    assert filled[0, 0, 0, 4] == pytest.approx(0.4)  # top middle: its 9 x 9 window holds both
    nothing = fill_missing(torch.rand(1, 3, 5, 5), torch.zeros(1, 1, 5, 5))
    assert torch.equal(nothing, torch.zeros(1, 3, 5, 5))  # no known pixel: 0


def test_the_receptive_field_of_a_mask_aware_model_includes_the_fill():
    config = REDNetConfig(depth=10, width=8, channels=3, mask_input=True)
    assert receptive_field(config) == 21 + 64
    torch.manual_seed(0)
    model = REDNet(config).eval()
    image, known = torch.rand(1, 3, 101, 101), torch.zeros(1, 1, 101, 101)
    known[..., 50 + 32, 50] = 1  # the only known pixel, 32 rows below the centre
    x = torch.cat([image, known], 1).requires_grad_(True)
    model(x)[0, :, 50, 50].sum().backward()
    assert x.grad[0, :3, 50 + 32, 50].abs().sum() > 0  # the centre sees it through the fill


def test_a_damage_model_returns_one_probability_per_pixel_and_takes_no_mask():
    config = REDNetConfig(depth=6, width=8, channels=3, output="damage")
    model = REDNet(config)
    with torch.no_grad():
        y = model(torch.rand(2, 3, 17, 23))
    assert y.shape == (2, 1, 17, 23) and float(y.min()) >= 0 and float(y.max()) <= 1
    assert sum(p.numel() for p in model.parameters()) == parameter_count(config)
    with pytest.raises(ValueError, match="takes no mask input"):
        REDNetConfig(channels=3, mask_input=True, output="damage")


def test_a_bottleneck_of_strided_layers_ends_in_one_pixel_and_keeps_any_size():
    config = REDNetConfig(depth=10, width=4, stride=3, stride_layers=5, skip_every=1, residual=False)
    model = REDNet(config)
    sizes = []
    model.convs[-1].register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    with torch.no_grad():
        assert model(torch.rand(1, 1, 243, 243)).shape == (1, 1, 243, 243)
        assert model(torch.rand(1, 1, 50, 61)).shape == (1, 1, 50, 61)  # padded to 243, cropped back
    assert sizes == [(1, 1), (1, 1)]
    with pytest.raises(ValueError, match="stride_layers"):
        REDNetConfig(depth=10, stride_layers=6)


def test_he_blocks_replace_the_mirrored_skips_and_train_as_they_infer():
    torch.manual_seed(0)
    he = REDNet(REDNetConfig(depth=8, width=4, he_blocks=True))
    red = REDNet(REDNetConfig(depth=8, width=4))
    red.load_state_dict(he.state_dict())  # the same weights: only the shortcuts differ
    x = torch.rand(1, 1, 12, 12)
    y = he(x)  # with autograd: deconvolutions run as convolutions
    with torch.no_grad():
        assert torch.allclose(y, he(x), atol=1e-5)
        assert not torch.allclose(he(x), red(x), atol=1e-4)
    assert he.skip_from == {} and red.skip_from
    with pytest.raises(ValueError, match="he_blocks"):
        REDNetConfig(he_blocks=True, skip_every=0)


@pytest.mark.parametrize("stride_layers", [2, 3])
def test_the_receptive_field_bound_holds_for_several_strided_layers(stride_layers):
    config = REDNetConfig(depth=8, width=4, stride=2, stride_layers=stride_layers)
    torch.manual_seed(0)
    model = REDNet(config).eval()
    x = torch.rand(1, 1, 128, 128, requires_grad=True)
    model(x)[0, 0, 64, 64].backward()
    rows, cols = torch.nonzero(x.grad[0, 0], as_tuple=True)
    side = max(int(rows.max() - rows.min()), int(cols.max() - cols.min())) + 1
    assert 1 < side <= receptive_field(config)
