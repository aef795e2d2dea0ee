from __future__ import annotations

import json
import time

import pytest
import torch

from rednet.bench import macs_per_pixel, paired_rounds
from rednet.bench_infer import INFER_VARIANTS, bench_infer, bench_memory
from rednet.model import REDNetConfig

SMALL_PEAK = {"peak_size": 256, "peak_seconds": 0.01}  # a small matmul: tests time behaviour, not the machine


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a busy machine, threads waiting on each other make tiny models 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_bench_infer_reports_speed_peak_fraction_and_psnr_per_variant():
    variants = ["fp32", "strided-fp32", "ensemble-fp32", "onnx-fp32"]
    result = bench_infer(
        model="red10", width=8, size=64, seconds=0.2, bm3d=False, variants=variants, **SMALL_PEAK
    )
    json.dumps(result)  # JSON-ready
    assert result["benchmark"] == "infer"
    assert result["tile"] is None  # "auto": one pass up to 512 x 512
    assert "random weights" in result["note"]
    assert result["bf16_psnr_change_db"] is None  # no bf16 variant ran
    assert [v["name"] for v in result["variants"]] == variants
    for v in result["variants"]:
        assert "skipped" not in v, v
        for key in (
            "seconds_per_image",
            "megapixels_per_s",
            "gflops",
            "peak_gflops",
            "peak_fraction",
            "psnr_db",
        ):
            assert v[key] > 0, (v["name"], key)
        assert v["rounds"] >= 3
        low, high = v["peak_fraction_range"]
        assert low <= v["peak_fraction"] <= high
        assert v["peak_fraction_of_max"] == pytest.approx(v["gflops"] / result["peak_gflops_max"]["fp32"])
        assert v["megapixels_per_s"] == pytest.approx(64 * 64 / 1e6 / v["seconds_per_image"])
    fp32, strided, ensemble, onnx = result["variants"]
    assert strided["stride"] == 2 and ensemble["ensemble"]
    passes = 8 * macs_per_pixel(REDNetConfig(depth=10, width=8, skip_every=0))
    assert ensemble["gflops"] == pytest.approx(2 * passes * 64 * 64 / ensemble["seconds_per_image"] / 1e9)
    assert onnx["psnr_db"] == pytest.approx(fp32["psnr_db"], abs=1e-3)  # same weights, same image
    assert set(result["peak_gflops"]) == set(result["peak_gflops_max"]) == {"fp32"}  # peaks per dtype
    assert result["peak_gflops"]["fp32"] <= result["peak_gflops_max"]["fp32"]


def test_peak_fraction_is_the_median_of_ratios_paired_round_by_round():
    # A machine that runs at full speed, then at half speed: each round's workload is compared with the
    # peak measured in the same round, so the fraction stays 0.5 while either median alone would mislead.
    speeds = iter([1.0, 1.0, 0.5, 0.5, 0.5])
    clock = {"speed": 1.0}

    def peak() -> float:
        clock["speed"] = next(speeds)
        return 100e9 * clock["speed"]

    def run() -> None:
        time.sleep(0.02 / clock["speed"])  # 1 GFLOP of work at 50 GFLOP/s x speed

    rounds, _ = paired_rounds(run, peak, torch.device("cpu"), seconds=0, min_rounds=5)
    figures = rounds.summary(1e9 * 0.02 * 50)
    assert figures["rounds"] == 5
    assert figures["peak_fraction"] == pytest.approx(0.5, rel=0.1)
    assert figures["peak_gflops"] == pytest.approx(50)
    low, high = figures["peak_fraction_range"]
    assert low <= figures["peak_fraction"] <= high


def test_bench_infer_compares_bf16_with_fp32_and_skips_a_slow_compile():
    result = bench_infer(
        model="red10",
        width=8,
        channels=3,
        size=48,
        seconds=0.1,
        bm3d=False,
        variants=["fp32", "bf16", "fp32-compile"],
        compile_timeout=0.01,
        **SMALL_PEAK,
    )
    fp32, bf16, compiled = result["variants"]
    assert bf16["psnr_change_vs_fp32_db"] == pytest.approx(bf16["psnr_db"] - fp32["psnr_db"])
    assert result["bf16_psnr_change_db"] == bf16["psnr_change_vs_fp32_db"]
    assert set(result["peak_gflops"]) == {"fp32", "bf16"}
    assert "longer than 0.01 s" in compiled["skipped"]


def test_bench_infer_rejects_unknown_variants():
    with pytest.raises(ValueError, match="unknown variant 'fp64'"):
        bench_infer(variants=["fp64"])
    assert "fp32" in INFER_VARIANTS


def test_bench_memory_measures_the_peak_rss_of_a_child_process():
    result = bench_memory(megapixels=0.2, tile=128, model="red10", width=8, channels=1, threads=1)
    assert result["path"] == "Y channel"
    assert result["megapixels"] == pytest.approx(0.2, rel=0.01)
    assert result["peak_rss_mib"] >= result["rss_image_mib"] >= result["rss_model_mib"] > 10
    assert result["seconds"] > 0 and result["megapixels_per_s"] > 0


def test_bench_infer_with_weights_uses_their_config_and_flags_random_strided_weights(tmp_path):
    from rednet.model import REDNet
    from rednet.zoo import save_weights

    config = REDNetConfig(depth=10, width=8, skip_every=0)
    path = save_weights(tmp_path / "w.safetensors", REDNet(config), {"name": "test"})
    result = bench_infer(
        model="red30",
        size=32,
        seconds=0.05,
        bm3d=False,
        variants=["fp32", "strided-fp32"],
        weights=path,
        **SMALL_PEAK,
    )
    assert (result["model"], result["depth"], result["width"]) == ("red10", 10, 8)
    fp32, strided = result["variants"]
    assert fp32["weights"] == str(path) and strided["weights"] is None
    assert "strided variants use random weights" in result["note"]


def test_report_infer_renders_a_saved_bench_json_as_a_table(tmp_path, capsys):
    from rednet.cli import main

    result = bench_infer(
        model="red10",
        width=8,
        size=32,
        seconds=0.05,
        bm3d=False,
        variants=["fp32", "strided-fp32", "fp32-compile"],
        compile_timeout=0.01,
        **SMALL_PEAK,
    )
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(result))
    assert main(["report", "infer", str(saved)]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [v["name"] for v in result["variants"]]
    fp32, strided, compiled = (next(x for x in lines if x.startswith(f"| {n} |")) for n in names)
    speedup = result["variants"][1]["megapixels_per_s"] / result["variants"][0]["megapixels_per_s"]
    assert f"({speedup:.2f}× fp32)" in strided
    assert f"{result['variants'][0]['peak_fraction']:.3f}" in fp32
    assert "(random weights)" in fp32  # no weights given: PSNR means nothing
    assert "skipped: torch.compile took longer" in compiled
    (tmp_path / "bad.json").write_text("{}")
    assert main(["report", "infer", str(tmp_path / "bad.json")]) == 1
    assert "not the JSON of rednet bench infer" in capsys.readouterr().err
