"""Benchmarks that print JSON: ``rednet bench train`` (training throughput against the machine's own peak).

Speed is never compared across runs by wall time alone: every benchmark also times a large matrix product
in the same dtype, on the same device, in the same run, and reports ``peak_fraction`` = achieved FLOP/s over
that matmul's FLOP/s, a ratio that carries from machine to machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from rednet.model import REDNet, REDNetConfig

__all__ = ["bench_train", "macs_per_pixel", "matmul_peak"]

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


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available")
    return torch.device(name)


def bench_train(
    *,
    model: str = "red30",
    width: int = 64,
    channels: int = 1,
    dtype: str = "bf16",
    device: str = "cpu",
    batch_size: int = 16,
    patch_size: int = 50,
    channels_last: bool = True,
    seconds: float = 10.0,
    data_task: str = "denoise",
) -> dict[str, Any]:
    """Training throughput of one configuration, the matmul peak, and the data pipeline's own rate.

    Returns:
        JSON-ready dict: ``patches_per_s``, ``tflops`` (achieved, counting a training step as 3 forward
        passes: forward, input gradients, weight gradients), ``peak_tflops`` (matmul in the same dtype),
        ``peak_fraction``, ``data_patches_per_s`` and ``data_over_model`` (must be >= 3 to keep up).
    """
    from rednet.train import hardware

    if model not in DEPTHS:
        raise ValueError(f"model must be one of {', '.join(DEPTHS)}, got {model!r}")
    if dtype not in ("bf16", "fp32"):
        raise ValueError(f"dtype must be bf16 or fp32, got {dtype!r}")
    dev = _device(device)
    config = REDNetConfig(depth=DEPTHS[model], width=width, channels=channels)
    torch.manual_seed(0)
    net = REDNet(config).to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    g = torch.Generator(device=dev).manual_seed(0)
    clean = torch.rand(batch_size, channels, patch_size, patch_size, generator=g, device=dev)
    degraded = (clean + 0.1 * torch.randn(clean.shape, generator=g, device=dev)).contiguous(memory_format=fmt)
    clean = clean.contiguous(memory_format=fmt)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            restored = net(degraded)
        loss = F.mse_loss(restored.float(), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_s = _timed(step, dev, min_seconds=seconds, min_reps=3)
    patches_per_s = batch_size / step_s
    flops = 3 * 2 * macs_per_pixel(config) * patch_size**2 * patches_per_s
    peak = matmul_peak(torch.bfloat16 if dtype == "bf16" else torch.float32, dev)
    data_rate = bench_data(task=data_task, channels=channels, patch_size=patch_size)
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
        "tflops": flops / 1e12,
        "peak_tflops": peak / 1e12,
        "peak_fraction": flops / peak,
        "data_task": data_task,
        "data_patches_per_s": data_rate,
        "data_over_model": data_rate / patches_per_s,
        "torch": torch.__version__,
    }


def bench_data(*, task: str = "denoise", channels: int = 1, patch_size: int = 50, count: int = 400) -> float:
    """Patches per second that the training pipeline (``PatchDataset``, one process) produces for a task.

    Uses scikit-image's sample photographs as the clean images, so it needs no data folder.
    """
    from skimage import data

    from rednet.data import Corruption, Levels, PatchDataset
    from rednet.io import array_to_tensor

    levels = {"denoise": "0-75", "sr": "2,3,4", "jpeg": "5-95", "deblur": "0-2.55", "inpaint": "0.3-0.8"}
    if task not in levels:
        raise ValueError(f"task must be one of {', '.join(levels)}, got {task!r}")
    extra = {"deblur": "gaussian", "inpaint": "rate"}.get(task, "")
    images = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        x = array_to_tensor(getattr(data, name)())
        x = x.mean(dim=1, keepdim=True) if channels == 1 else x
        images.append(torch.round(x[0] * 255).to(torch.uint8))
    dataset = PatchDataset(
        images, [Corruption(task, Levels.parse(levels[task]), extra)], patch_size=patch_size
    )
    start = time.perf_counter()
    for i in range(count):
        dataset[i]
    return count / (time.perf_counter() - start)
