"""Benchmarks that print JSON, and how they measure: ``rednet bench train`` (training throughput against the
machine's own peak, and the data pipeline's rate) is here; ``rednet bench infer`` and ``bench memory`` are in
:mod:`rednet.bench_infer`, ``rednet serve --bench`` in :mod:`rednet.bench_serve`.

Speed is never compared across runs by wall time alone: every benchmark also times a large matrix product
in the same dtype, on the same device, in the same run, and reports ``peak_fraction`` = achieved FLOP/s over
that matmul's FLOP/s, a ratio that carries from machine to machine. The two are measured in alternating
rounds (:func:`paired_rounds`: a peak, then the workload, again and again) and the fraction is the median of
the per-round ratios, because a shared or cloud machine's speed drifts by tens of percent within a minute
and a peak measured once, before or after, compares the workload with a different machine. The largest peak
seen in the run is reported too (``peak_fraction_of_max``), the most conservative reading.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from rednet.devices import choose_device, native_bf16
from rednet.model import REDNet, REDNetConfig

__all__ = [
    "bench_data",
    "bench_device_patches",
    "bench_train",
    "macs_per_pixel",
    "matmul_peak",
    "paired_rounds",
]

DEPTHS = {"red10": 10, "red20": 20, "red30": 30}


def macs_per_pixel(config: REDNetConfig) -> int:
    """Multiply-accumulates per output pixel of one forward pass (stride 1): one 3x3 MAC per weight."""
    n, w, c = config.layers, config.width, config.channels
    return 9 * (c * w + 2 * (n - 1) * w * w + w * c) // config.stride**2


def _timed(fn: Callable[[], Any], device: torch.device, *, min_seconds: float, min_reps: int) -> float:
    """Seconds per call of ``fn`` after a warm-up call, over >= ``min_reps`` calls and >= ``min_seconds``."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        fn()
        reps += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / reps


def matmul_peak(dtype: torch.dtype, device: torch.device, *, size: int = 2048, seconds: float = 2.0) -> float:
    """FLOP/s of a ``size`` x ``size`` x ``size`` matrix product in ``dtype``: the practical peak.

    The product is timed twice, as ``torch.mm`` (MKL / cuBLAS) and as the same GEMM written as a 1x1
    convolution (oneDNN / cuDNN), and the faster counts: on some CPUs MKL's fp32 GEMM takes a slow path that
    oneDNN does not, and a peak must not be an underestimate.
    """
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, generator=g, device=device).to(dtype)
    b = torch.randn(size, size, generator=g, device=device).to(dtype)
    side = int(size**0.5)
    image = torch.randn(1, size, side, side, generator=g, device=device).to(dtype)
    image = image.contiguous(memory_format=torch.channels_last)
    weight = b.view(size, size, 1, 1).contiguous(memory_format=torch.channels_last)
    mm = _timed(lambda: torch.mm(a, b), device, min_seconds=seconds / 2, min_reps=3)
    conv = _timed(lambda: F.conv2d(image, weight), device, min_seconds=seconds / 2, min_reps=3)
    return max(2 * size**3 / mm, 2 * size * size * side * side / conv)


@dataclass(frozen=True)
class Rounds:
    """Alternating measurements of a workload and of the matmul peak (see :func:`paired_rounds`).

    Attributes:
        seconds: seconds of each timed call of the workload, one per round.
        peaks: FLOP/s of the matmul peak measured just before each call.
    """

    seconds: list[float]
    peaks: list[float]

    def summary(self, flop: float) -> dict[str, Any]:
        """JSON-ready figures for a workload of ``flop`` floating-point operations per call: medians of the
        call time and of the peak, achieved GFLOP/s at the median time, and ``peak_fraction`` = the median of
        the per-round ratios (achieved / peak of the same round), with their range."""
        ratios = [flop / t / p for t, p in zip(self.seconds, self.peaks, strict=True)]
        return {
            "rounds": len(self.seconds),
            "gflops": flop / statistics.median(self.seconds) / 1e9,
            "peak_gflops": statistics.median(self.peaks) / 1e9,
            "peak_fraction": statistics.median(ratios),
            "peak_fraction_range": [min(ratios), max(ratios)],
        }


def paired_rounds(
    run: Callable[[], Any],
    peak: Callable[[], float],
    device: torch.device,
    *,
    seconds: float,
    min_rounds: int = 3,
) -> tuple[Rounds, Any]:
    """Alternate ``peak()`` (a FLOP/s measurement) and one timed call of ``run`` for at least ``min_rounds``
    rounds and at least ``seconds`` in all; ``run`` should be warmed up.

    Returns:
        (the rounds, the last output of ``run``).
    """
    times: list[float] = []
    peaks: list[float] = []
    out = None
    start = time.perf_counter()
    while len(times) < min_rounds or time.perf_counter() - start < seconds:
        peaks.append(peak())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return Rounds(times, peaks), out


def _training_step(
    config: REDNetConfig,
    dev: torch.device,
    fmt: torch.memory_format,
    *,
    batch_size: int,
    patch_size: int,
    bf16: bool,
) -> Callable[[], None]:
    """One Adam step of a fresh model (seed 0) on a fixed batch of random patches with noise, as training runs
    (bf16 autocast, fp32 loss), in memory format ``fmt``."""
    from rednet.train import training_optimizer

    torch.manual_seed(0)
    net = REDNet(config).to(dev).to(memory_format=fmt)
    optimizer = training_optimizer(net, 1e-4, dev)
    g = torch.Generator(device=dev).manual_seed(0)
    clean = torch.rand(batch_size, config.channels, patch_size, patch_size, generator=g, device=dev)
    degraded = (clean + 0.1 * torch.randn(clean.shape, generator=g, device=dev)).contiguous(memory_format=fmt)
    clean = clean.contiguous(memory_format=fmt)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            restored = net(degraded)
        loss = F.mse_loss(restored.float(), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def bench_train(
    *,
    model: str = "red30",
    width: int = 64,
    channels: int = 1,
    dtype: str = "auto",
    device: str = "cpu",
    batch_size: int = 16,
    patch_size: int = 50,
    channels_last: bool = True,
    seconds: float = 10.0,
    data_task: str = "denoise",
    peak_size: int = 2048,
    peak_seconds: float = 0.5,
) -> dict[str, Any]:
    """Training throughput of one configuration, the matmul peak, and the data pipeline's own rate.

    ``dtype`` "auto" is bf16 where it is native (:func:`rednet.devices.native_bf16`), else fp32; the result
    names the one measured.

    Training steps and matmul peaks (``peak_size``-cubed products, ``peak_seconds`` each) alternate for at
    least ``seconds`` and 3 rounds (:func:`paired_rounds`).

    Returns:
        JSON-ready dict: ``patches_per_s`` (at the median step time), ``tflops`` (achieved, counting a
        training step as 3 forward passes: forward, input gradients, weight gradients), ``peak_tflops``
        (median matmul peak in the same dtype), ``peak_fraction`` (median of the per-round ratios) and its
        ``peak_fraction_range``, ``peak_fraction_of_max`` (against the largest peak of the run),
        ``data_patches_per_s`` and ``data_over_model`` (one loader process, ``data_task``: with W loader
        processes, W times that over the model's rate must be well over 1 to keep up),
        ``device_patches_per_s`` and ``device_patches_over_model`` (denoising batches made on the
        training device itself, :func:`bench_device_patches`).
    """
    from rednet.train import hardware

    if model not in DEPTHS:
        raise ValueError(f"model must be one of {', '.join(DEPTHS)}, got {model!r}")
    if dtype not in ("auto", "bf16", "fp32"):
        raise ValueError(f"dtype must be auto, bf16 or fp32, got {dtype!r}")
    dev = choose_device(device)
    if dtype == "auto":
        dtype = "bf16" if native_bf16(dev) else "fp32"
    config = REDNetConfig(depth=DEPTHS[model], width=width, channels=channels)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    bf16 = dtype == "bf16"
    step = _training_step(config, dev, fmt, batch_size=batch_size, patch_size=patch_size, bf16=bf16)
    matmul_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    step()  # warm-up

    def peak() -> float:
        return matmul_peak(matmul_dtype, dev, size=peak_size, seconds=peak_seconds)

    rounds, _ = paired_rounds(step, peak, dev, seconds=seconds)
    step_s = statistics.median(rounds.seconds)
    patches_per_s = batch_size / step_s
    figures = rounds.summary(3 * 2 * macs_per_pixel(config) * patch_size**2 * batch_size)
    data_rate = bench_data(task=data_task, channels=channels, patch_size=patch_size)
    on_device = bench_device_patches(
        channels=channels, patch_size=patch_size, batch_size=batch_size, device=str(dev.type)
    )
    return {
        "benchmark": "train",
        "model": model,
        "depth": config.depth,
        "width": width,
        "channels": channels,
        "dtype": dtype,
        "device": str(dev),
        "hardware": hardware(dev),
        "threads": torch.get_num_threads(),
        "channels_last": channels_last,
        "batch_size": batch_size,
        "patch_size": patch_size,
        "step_s": step_s,
        "patches_per_s": patches_per_s,
        "rounds": figures["rounds"],
        "tflops": figures["gflops"] / 1e3,
        "peak_tflops": figures["peak_gflops"] / 1e3,
        "peak_fraction": figures["peak_fraction"],
        "peak_fraction_range": figures["peak_fraction_range"],
        "peak_tflops_max": max(rounds.peaks) / 1e12,
        "peak_fraction_of_max": figures["gflops"] * 1e9 / max(rounds.peaks),
        "data_task": data_task,
        "data_patches_per_s": data_rate,
        "data_over_model": data_rate / patches_per_s,
        "device_patches_per_s": on_device,
        "device_patches_over_model": on_device / patches_per_s,
        "torch": torch.__version__,
    }


def _sample_photos(channels: int) -> list[Tensor]:
    """scikit-image's sample photographs as uint8 (C, H, W) training images (no data folder needed)."""
    from skimage import data

    from rednet.io import array_to_tensor

    images = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        x = array_to_tensor(getattr(data, name)())
        x = x.mean(dim=1, keepdim=True) if channels == 1 else x
        images.append(torch.round(x[0] * 255).to(torch.uint8))
    return images


def bench_device_patches(
    *, channels: int = 1, patch_size: int = 50, batch_size: int = 128, device: str = "cpu", count: int = 20
) -> float:
    """Patches per second of denoising batches made on ``device`` (``rednet.device_patches``)."""
    from rednet.data import Levels
    from rednet.device_patches import DevicePatches

    dev = choose_device(device)
    make = DevicePatches(
        _sample_photos(channels),
        Levels.parse("0-75"),
        batch_size=batch_size,
        patch_size=patch_size,
        seed=0,
        device=dev,
        color_jitter=channels == 3,
    )
    seconds = _timed(lambda: make(0), dev, min_seconds=0.0, min_reps=count)
    return batch_size / seconds


def bench_data(*, task: str = "denoise", channels: int = 1, patch_size: int = 50, count: int = 400) -> float:
    """Patches per second that the training pipeline (``PatchDataset``, one process) produces for a task.

    Uses scikit-image's sample photographs as the clean images, so it needs no data folder.
    """
    from rednet.data import Corruption, Levels, PatchDataset
    from rednet.tasks import task_named

    levels = {"denoise": "0-75", "sr": "2,3,4", "jpeg": "5-95", "deblur": "0-2.55", "inpaint": "0.3-0.8"}
    if task not in levels:
        raise ValueError(f"task must be one of {', '.join(levels)}, got {task!r}")
    kind = task_named(task)
    corruption = Corruption(
        task,
        Levels.parse(levels[task]),
        kernel="gaussian" if kind.uses_kernel else "",
        damage="rate" if kind.masks else "",
    )
    dataset = PatchDataset(_sample_photos(channels), [corruption], patch_size=patch_size)
    start = time.perf_counter()
    for i in range(count):
        dataset[i]
    return count / (time.perf_counter() - start)
