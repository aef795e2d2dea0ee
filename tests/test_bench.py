from __future__ import annotations

import json

import pytest
import torch

from rednet.bench import bench_data, macs_per_pixel
from rednet.cli import main
from rednet.model import RED30, REDNet


def test_macs_per_pixel_counts_one_mac_per_weight_of_a_stride_1_net():
    weights = sum(p.numel() for name, p in REDNet(RED30).named_parameters() if name.endswith("weight"))
    assert macs_per_pixel(RED30) == weights == 1_033_344  # paper.md §1.4: 1,033,344 MAC/pixel at w=64


def test_bench_train_prints_throughput_and_peak_fraction_json(capsys):
    code = main(
        [
            "bench",
            "train",
            "--model",
            "red10",
            "--width",
            "8",
            "--batch-size",
            "2",
            "--patch-size",
            "16",
            "--seconds",
            "0.2",
            "--dtype",
            "fp32",
            "--peak-size",
            "256",
            "--peak-seconds",
            "0.01",
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    rates = ("data_patches_per_s", "device_patches_per_s")  # loader process, batches made on the device
    for key in ("patches_per_s", "tflops", "peak_tflops", "peak_fraction", *rates):
        assert result[key] > 0, key
    assert result["rounds"] >= 3
    low, high = result["peak_fraction_range"]
    assert low <= result["peak_fraction"] <= high
    assert result["peak_fraction_of_max"] == pytest.approx(result["tflops"] / result["peak_tflops_max"])
    assert result["peak_tflops"] <= result["peak_tflops_max"]
    assert result["threads"] == torch.get_num_threads()


def test_data_pipeline_rate_is_measured_for_every_task():
    for task in ("denoise", "sr", "jpeg", "deblur", "inpaint"):
        assert bench_data(task=task, count=5) > 0
