from __future__ import annotations

import pytest
import torch

from rednet.infer import restore
from rednet.model import REDNet, REDNetConfig
from rednet.onnx import OnnxModel, export_onnx, restore_onnx

# RED10 width 16 and RED30 width 8, stride 1 and 2, 1 and 3 channels: four exports cover every pair of
# choices (each export takes a few seconds, so not all eight combinations)
CONFIGS = [
    REDNetConfig(depth=10, width=16, skip_every=0, channels=1, stride=1),
    REDNetConfig(depth=10, width=16, skip_every=0, channels=3, stride=2),
    REDNetConfig(depth=30, width=8, channels=3, stride=1),
    REDNetConfig(depth=30, width=8, channels=1, stride=2),
]


def _name(config: REDNetConfig) -> str:
    return f"red{config.depth}-w{config.width}-c{config.channels}-s{config.stride}"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a busy machine, threads waiting on each other make tiny models 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=CONFIGS, ids=_name)
def exported(request, tmp_path_factory, one_thread) -> tuple[REDNet, OnnxModel]:
    torch.manual_seed(0)
    model = REDNet(request.param).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", card={"name": "test"})
    return model, OnnxModel(path)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 37, 53), (1, 64, 64)], ids=lambda s: "x".join(map(str, s)))
def test_onnx_output_matches_pytorch_for_any_batch_and_size(exported, shape, generator):
    model, onnx_model = exported
    n, h, w = shape
    x = torch.rand(n, model.config.channels, h, w, generator=generator)
    with torch.no_grad():
        expected = model(x)
    got = onnx_model(x)
    if (
        h * w > 1
    ):  # the network's own output varies far more than the tolerance: the comparison means something
        assert (expected - x).std().item() > 1e-3
    assert got.dtype == torch.float32
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4


def test_tiled_restore_onnx_equals_whole_image_and_pytorch_restore(exported, generator):
    model, onnx_model = exported
    x = torch.rand(1, model.config.channels, 101, 75, generator=generator)
    whole = restore_onnx(onnx_model, x)
    blocks = restore_onnx(onnx_model, x, tile=32)
    assert (blocks - whole).abs().max().item() < 1e-4
    assert (whole - restore(model, x, tile=None)).abs().max().item() < 1e-4
    assert whole.min() >= 0 and whole.max() <= 1


def test_restore_onnx_ensemble_matches_pytorch_ensemble(exported, generator):
    model, onnx_model = exported
    x = torch.rand(1, model.config.channels, 9, 14, generator=generator)
    got = restore_onnx(onnx_model, x, ensemble=True)
    assert (got - restore(model, x, ensemble=True, tile=None)).abs().max().item() < 1e-4


def test_metadata_round_trip_gives_config_card_and_dynamic_axes(exported):
    model, onnx_model = exported
    assert onnx_model.config == model.config
    assert onnx_model.card == {"name": "test"}
    (inp,), (out,) = onnx_model.session.get_inputs(), onnx_model.session.get_outputs()
    assert (inp.name, out.name) == ("image", "restored")
    assert inp.shape[1] == out.shape[1] == model.config.channels
    assert all(isinstance(inp.shape[i], str) for i in (0, 2, 3)), inp.shape


def test_restore_onnx_rejects_other_channel_counts(exported):
    model, onnx_model = exported
    x = torch.rand(1, 4 - model.config.channels, 8, 8)
    with pytest.raises(ValueError, match="ONNX model"):
        restore_onnx(onnx_model, x)


def test_export_is_atomic_and_checks_the_suffix(tmp_path):
    model = REDNet(REDNetConfig(depth=2, width=4))
    with pytest.raises(ValueError, match=r"model\.pt: ONNX files must end in \.onnx"):
        export_onnx(model, tmp_path / "model.pt")
    export_onnx(model, tmp_path / "a" / "m.onnx")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["m.onnx"]


def test_missing_file_is_file_not_found_naming_it(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(FileNotFoundError, match="absent.onnx: ONNX file not found"):
        OnnxModel(path)


def test_corrupt_file_is_a_one_line_value_error_naming_it(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    with pytest.raises(ValueError, match="broken.onnx: not a readable ONNX model") as info:
        OnnxModel(path)
    assert "\n" not in str(info.value)


def test_onnx_file_without_rednet_metadata_is_rejected(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["restored"])],
        "identity",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("restored", TensorProto.FLOAT, [1, 1, 4, 4])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(ValueError, match="plain.onnx: no rednet model config"):
        OnnxModel(path)


def test_a_mask_aware_model_exports_and_matches_pytorch_given_image_and_mask(tmp_path):
    torch.manual_seed(0)
    model = REDNet(REDNetConfig(depth=10, width=8, channels=3, mask_input=True)).eval()
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "mask.onnx", card={"name": "test"}))
    assert onnx_model.config.mask_input
    x = torch.rand(1, 3, 29, 31)
    known = (torch.rand(1, 1, 29, 31) > 0.5).float()
    with torch.no_grad():
        expected = model(torch.cat([x, known], 1))
    torch.testing.assert_close(onnx_model(torch.cat([x, known], 1)), expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="does not take a mask"):
        restore_onnx(onnx_model, x)


def test_a_damage_model_exports_and_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    model = REDNet(REDNetConfig(depth=10, width=8, channels=3, output="damage")).eval()
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "damage.onnx", card={"name": "test"}))
    assert onnx_model.config.output == "damage"
    x = torch.rand(1, 3, 29, 31)
    with torch.no_grad():
        expected = model(x)
    assert expected.shape == (1, 1, 29, 31)
    torch.testing.assert_close(onnx_model(x), expected, atol=1e-4, rtol=1e-4)
