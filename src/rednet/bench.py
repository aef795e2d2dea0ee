"""Benchmarks that print JSON: ``rednet bench train`` (training throughput against the machine's own peak),
``rednet bench infer`` (inference variants against the same peak, and BM3D), :func:`bench_memory` (peak
RSS of restoring a large image) and :func:`bench_serve` (``rednet serve --bench``: the web server under load).

Speed is never compared across runs by wall time alone: every benchmark also times a large matrix product
in the same dtype, on the same device, in the same run, and reports ``peak_fraction`` = achieved FLOP/s over
that matmul's FLOP/s, a ratio that carries from machine to machine. The two are measured in alternating
rounds (:func:`paired_rounds`: a peak, then the workload, again and again) and the fraction is the median of
the per-round ratios, because a shared or cloud machine's speed drifts by tens of percent within a minute
and a peak measured once, before or after, compares the workload with a different machine. The largest peak
seen in the run is reported too (``peak_fraction_of_max``), the most conservative reading.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from rednet.infer import native_bf16
from rednet.model import REDNet, REDNetConfig

__all__ = [
    "INFER_VARIANTS",
    "InferVariant",
    "bench_infer",
    "bench_memory",
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


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available")
    return torch.device(name)


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

    ``dtype`` "auto" is bf16 where it is native (:func:`rednet.infer.native_bf16`), else fp32; the result
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
    dev = _device(device)
    if dtype == "auto":
        dtype = "bf16" if native_bf16(dev) else "fp32"
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

    dev = _device(device)
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

    levels = {"denoise": "0-75", "sr": "2,3,4", "jpeg": "5-95", "deblur": "0-2.55", "inpaint": "0.3-0.8"}
    if task not in levels:
        raise ValueError(f"task must be one of {', '.join(levels)}, got {task!r}")
    extra = {"deblur": "gaussian", "inpaint": "rate"}.get(task, "")
    images = _sample_photos(channels)
    dataset = PatchDataset(
        images, [Corruption(task, Levels.parse(levels[task]), extra)], patch_size=patch_size
    )
    start = time.perf_counter()
    for i in range(count):
        dataset[i]
    return count / (time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# inference: rednet bench infer, and the memory of a large restore


@dataclass(frozen=True)
class InferVariant:
    """One way of running inference that :func:`bench_infer` times.

    Attributes:
        name: the name in the JSON and in ``variants=``.
        dtype: "fp32", or "bf16" (autocast).
        engine: "eager" (PyTorch), "compile" (``torch.compile``) or "onnxruntime" (:mod:`rednet.onnx`).
        strided: run the same config with ``stride=2`` (the paper's fast variant) instead of its own stride.
        ensemble: the 8-transform self-ensemble (8 forward passes per image).
    """

    name: str
    dtype: str = "fp32"
    engine: str = "eager"
    strided: bool = False
    ensemble: bool = False


INFER_VARIANTS = {
    v.name: v
    for v in [
        InferVariant("fp32"),
        InferVariant("bf16", dtype="bf16"),
        InferVariant("fp32-compile", engine="compile"),
        InferVariant("onnx-fp32", engine="onnxruntime"),
        InferVariant("strided-fp32", strided=True),
        InferVariant("strided-bf16", dtype="bf16", strided=True),
        InferVariant("ensemble-fp32", ensemble=True),
        InferVariant("ensemble-bf16", dtype="bf16", ensemble=True),
    ]
}
"""The variants of ``rednet bench infer``, by name, in the order they run."""


def _bench_images(size: int, channels: int, sigma: float, seed: int) -> tuple[Tensor, Tensor]:
    """(clean, noisy), each (1, C, size, size) float32: scikit-image's astronaut (gray = channel mean),
    bicubic-resized to size x size and quantised to 8 bits, plus Gaussian noise (numpy ``seed``)."""
    import numpy as np
    from skimage import data

    from rednet.degrade import gaussian_noise, imresize, quantize
    from rednet.io import array_to_tensor

    photo = array_to_tensor(data.astronaut())
    photo = photo if channels == 3 else photo.mean(dim=1, keepdim=True)
    clean = quantize(imresize(photo, size=(size, size)))
    return clean, gaussian_noise(clean, sigma, generator=np.random.default_rng(seed))


class _CompileTimeout(BaseException):
    """Raised by SIGALRM to stop ``torch.compile``; a BaseException, so no ``except Exception`` eats it."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_CompileTimeout` after ``seconds`` (main thread, POSIX); elsewhere no limit."""
    use_alarm = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not use_alarm:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _CompileTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bench_infer(
    *,
    model: str = "red30",
    width: int = 64,
    channels: int = 1,
    size: int = 1024,
    device: str = "cpu",
    seconds: float = 5.0,
    variants: Sequence[str] | None = None,
    bm3d: bool = True,
    weights: str | Path | None = None,
    sigma: float = 25.0,
    seed: int = 0,
    compile_timeout: float = 120.0,
    peak_size: int = 2048,
    peak_seconds: float = 0.5,
) -> dict[str, Any]:
    """Inference speed of several variants on one denoising image, against the matmul peak, and BM3D.

    Every variant restores the same noisy photo with :func:`rednet.infer.restore` (channels-last, tile
    "auto": one pass up to 512 x 512, else 512 px tiles) or :func:`rednet.onnx.restore_onnx`, after one
    warm-up pass, in rounds that alternate one whole image with a matmul peak in the variant's dtype
    (``peak_size``-cubed, ``peak_seconds``), for at least ``seconds`` and at least 3 rounds
    (:func:`paired_rounds`).

    Args:
        model: "red10", "red20" or "red30" (ignored when ``weights`` is given).
        width: hidden channels (ignored when ``weights`` is given).
        channels: 1 (gray image, gray model) or 3 (RGB) (ignored when ``weights`` is given).
        size: the image is ``size`` x ``size`` pixels.
        device: "cpu" or "cuda".
        seconds: minimum timed time per variant.
        variants: names from :data:`INFER_VARIANTS`; None = all of them.
        bm3d: also time BM3D (CBM3D for RGB) on the same image, once (10-20 s for a 1024 x 1024 gray image
            on a laptop core).
        weights: a ``.safetensors`` file (:func:`rednet.zoo.load_weights`); None = random initialisation,
            which times the same but makes every PSNR meaningless.
        sigma: noise level on the 0-255 scale.
        seed: numpy seed of the noise.
        compile_timeout: the ``torch.compile`` variant is skipped (with the reason recorded) when compiling
            fails or its first call takes longer than this many seconds.

    Returns:
        JSON-ready dict. ``variants`` is a list with, per variant, its settings and ``megapixels_per_s``,
        ``seconds_per_image`` (median), ``gflops`` (achieved at the median time: 2 x :func:`macs_per_pixel` x
        pixels per forward pass, 8 passes for the ensemble; tile margins are not counted), ``peak_gflops``
        (median of the variant's matmul peaks in its dtype; fp32 for onnxruntime), ``peak_fraction`` (median
        of the per-round ratios) with ``peak_fraction_range``, ``peak_fraction_of_max`` (against the largest
        peak of that dtype in the whole run) and ``psnr_db`` against the clean image; or ``skipped`` with the
        reason. ``bf16_psnr_change_db`` = bf16 PSNR - fp32 PSNR (eager). ``peak_gflops`` and
        ``peak_gflops_max`` at the top level: median and largest peak per dtype over the run.

    Raises:
        ValueError: for an unknown model or variant name, or a bad size, channel count or device.
    """
    from rednet.infer import auto_tile, margin_for, restore
    from rednet.metrics import psnr
    from rednet.train import hardware

    names = list(INFER_VARIANTS) if variants is None else list(variants)
    unknown = [n for n in names if n not in INFER_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}; choose from {', '.join(INFER_VARIANTS)}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    dev = _device(device)
    if weights is not None:
        from rednet.zoo import load_weights

        base_net, _ = load_weights(weights)
        config = base_net.config
        model = f"red{config.depth}"
    else:
        if model not in DEPTHS:
            raise ValueError(f"model must be one of {', '.join(DEPTHS)}, got {model!r}")
        config = REDNetConfig(depth=DEPTHS[model], width=width, channels=channels)
        torch.manual_seed(0)
        base_net = REDNet(config)
    strided_config = replace(config, stride=2)
    nets = {config: base_net}
    clean, noisy = _bench_images(size, config.channels, sigma, seed)
    clean, noisy = clean.to(dev), noisy.to(dev)
    tile = auto_tile(size, size)
    peaks: dict[str, list[float]] = {}
    results: list[dict[str, Any]] = []
    for name in names:
        v = INFER_VARIANTS[name]
        cfg = strided_config if v.strided else config
        if cfg not in nets:
            torch.manual_seed(0)
            nets[cfg] = REDNet(cfg)
        net = nets[cfg].to(dev).to(memory_format=torch.channels_last).eval()
        record: dict[str, Any] = {
            "name": v.name,
            "engine": v.engine,
            "dtype": v.dtype,
            "stride": cfg.stride,
            "ensemble": v.ensemble,
            "tile": tile,
            "channels_last": v.engine != "onnxruntime",
            "weights": str(weights) if weights is not None and cfg == config else None,
        }
        results.append(record)
        margin = margin_for(net)
        window = size if tile is None else min(size, tile + 2 * margin)
        warm = noisy[..., :window, :window]
        bf16 = v.dtype == "bf16"
        if v.engine == "onnxruntime":
            if dev.type != "cpu":
                record["skipped"] = "onnxruntime runs on the CPU in rednet.onnx; use --device cpu"
                continue
            from rednet.onnx import OnnxModel, export_onnx, restore_onnx

            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                onnx_model = OnnxModel(export_onnx(net, Path(folder) / "model.onnx"))
                record["export_s"] = time.perf_counter() - start

            def run(m: Any = onnx_model) -> Tensor:
                return restore_onnx(m, noisy, tile=tile)

            restore_onnx(onnx_model, warm)
        elif v.engine == "compile":
            compiled = torch.compile(net)

            def run(m: Any = compiled, b: bool = bf16) -> Tensor:
                return restore(m, noisy, tile=tile, bf16=b)

            start = time.perf_counter()
            try:
                with _time_limit(compile_timeout):
                    run()
            except _CompileTimeout:
                record["skipped"] = f"torch.compile took longer than {compile_timeout:g} s"
            except Exception as e:  # noqa: BLE001 - inductor fails in many ways (no compiler, unsupported op)
                record["skipped"] = f"torch.compile failed: {type(e).__name__}: {str(e).strip()[:200]}"
            compile_s = time.perf_counter() - start
            if "skipped" in record:
                torch._dynamo.reset()
                continue
            record["compile_s"] = compile_s
        else:

            def run(m: Any = net, b: bool = bf16, e: bool = v.ensemble) -> Tensor:
                return restore(m, noisy, tile=tile, bf16=b, ensemble=e)

            restore(net, warm, tile=None, bf16=bf16)
        dtype = torch.bfloat16 if bf16 else torch.float32

        def peak(d: torch.dtype = dtype) -> float:
            return matmul_peak(d, dev, size=peak_size, seconds=peak_seconds)

        rounds, out = paired_rounds(run, peak, dev, seconds=seconds)
        if v.engine == "compile":
            torch._dynamo.reset()
        peaks.setdefault(v.dtype, []).extend(rounds.peaks)
        per_image = statistics.median(rounds.seconds)
        record.update(
            {
                "seconds_per_image": per_image,
                "megapixels_per_s": size * size / per_image / 1e6,
                **rounds.summary(2 * macs_per_pixel(cfg) * size * size * (8 if v.ensemble else 1)),
                "psnr_db": psnr(out, clean).item(),
            }
        )
    for r in results:
        if "gflops" in r:
            r["peak_fraction_of_max"] = r["gflops"] * 1e9 / max(peaks[r["dtype"]])
    by_name = {r["name"]: r for r in results if "psnr_db" in r}
    for r in results:
        if r["dtype"] == "bf16" and "psnr_db" in r:
            twin = by_name.get(r["name"].replace("bf16", "fp32"))
            if twin is not None:
                r["psnr_change_vs_fp32_db"] = r["psnr_db"] - twin["psnr_db"]
    result: dict[str, Any] = {
        "benchmark": "infer",
        "model": model,
        "depth": config.depth,
        "width": config.width,
        "channels": config.channels,
        "stride": config.stride,
        "weights": str(weights) if weights is not None else None,
        "device": str(dev),
        "hardware": hardware(dev),
        "threads": torch.get_num_threads(),
        "image": f"scikit-image astronaut, {'RGB' if config.channels == 3 else 'gray (channel mean)'}, "
        f"bicubic to {size}x{size}, 8-bit, + Gaussian noise sigma {sigma:g} (numpy seed {seed})",
        "size": size,
        "sigma": sigma,
        "noisy_psnr_db": psnr(noisy, clean).item(),
        "tile": tile,
        "macs_per_pixel": macs_per_pixel(config),
        "peak_gflops": {k: statistics.median(p) / 1e9 for k, p in peaks.items()},
        "peak_gflops_max": {k: max(p) / 1e9 for k, p in peaks.items()},
        "variants": results,
        "bf16_psnr_change_db": by_name["bf16"]["psnr_change_vs_fp32_db"]
        if "psnr_change_vs_fp32_db" in by_name.get("bf16", {})
        else None,
        "torch": torch.__version__,
    }
    if weights is None:
        result["note"] = (
            "random weights: the speeds hold for any weights, but PSNR and bf16_psnr_change_db mean "
            "nothing; pass weights=FILE (--weights) for them"
        )
    elif config.stride == 1 and any(INFER_VARIANTS[n].strided for n in names):
        result["note"] = (
            "the strided variants use random weights (the file is stride 1): their PSNR means nothing"
        )
    if bm3d:
        from rednet.baselines import bm3d as run_bm3d

        start = time.perf_counter()
        denoised = run_bm3d(noisy.cpu(), sigma)
        elapsed = time.perf_counter() - start
        result["bm3d"] = {
            "method": "CBM3D" if config.channels == 3 else "BM3D",
            "seconds_per_image": elapsed,
            "megapixels_per_s": size * size / elapsed / 1e6,
            "psnr_db": psnr(denoised, clean.cpu()).item(),
        }
    return result


_MEMORY_CHILD = """
import json, os, resource, sys, time
import torch
from rednet.infer import restore, reuse_freed_memory
from rednet.model import REDNet, REDNetConfig

if os.environ.get("REDNET_REUSE_FREED_MEMORY", "1") != "0":
    reuse_freed_memory()  # as the rednet command does

def peak_kib():
    # VmHWM: the peak RSS of this process image alone (ru_maxrss also counts the parent's RSS at spawn)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

args = json.loads(sys.argv[1])
if args["threads"]:
    torch.set_num_threads(args["threads"])
torch.manual_seed(0)
net = REDNet(REDNetConfig(**args["config"])).eval()
ready = peak_kib()
image = torch.rand(1, args["image_channels"], args["height"], args["width"])
loaded = peak_kib()
start = time.perf_counter()
restored = restore(net, image, tile=args["tile"], bf16=args["bf16"])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "ready_kib": ready, "loaded_kib": loaded, "peak_kib": peak_kib()}))
"""


def bench_memory(
    *,
    megapixels: float = 40.0,
    tile: int = 256,
    model: str = "red30",
    width: int = 64,
    channels: int = 3,
    image_channels: int = 3,
    bf16: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Peak memory (RSS) of restoring one large image, measured in a child process that does only that.

    The child builds a randomly initialised model, makes a ``torch.rand`` image of about ``megapixels``
    (4:3), calls :func:`rednet.infer.restore` with ``tile`` and keeps the result, as ``rednet restore`` would
    before writing it. Its peak RSS is its ``VmHWM`` (Linux): ``ru_maxrss``, its own or the parent's
    ``RUSAGE_CHILDREN``, would also count the parent's RSS at the moment of the spawn. Time grows with depth
    and width (RED30 width 64 on 40 MP takes many minutes on a CPU); memory grows with the image, the tile
    and, per tile, depth x width (every convolution output is kept for the skips).

    Args:
        megapixels: image size in millions of pixels.
        tile: output block side of the tiled restore.
        model: "red10", "red20" or "red30".
        width: hidden channels.
        channels: model channels: 1 = gray / Y (an RGB image then takes the Y path), 3 = RGB.
        image_channels: 1 or 3.
        bf16: bfloat16 autocast.
        threads: intra-op threads of the child; None = PyTorch's default.

    Returns:
        JSON-ready dict: ``peak_rss_mib`` (the child's peak), ``rss_model_mib`` (after imports and the
        model), ``rss_image_mib`` (plus the image), ``image_mib`` (one float32 copy of the image),
        ``seconds``, ``megapixels_per_s`` and the settings.

    Raises:
        ValueError: for an unknown model or bad sizes.
        ChildProcessError: one line, if the child fails (e.g. killed for memory).
    """
    import json
    import math
    import os
    import subprocess
    import sys

    if model not in DEPTHS:
        raise ValueError(f"model must be one of {', '.join(DEPTHS)}, got {model!r}")
    if megapixels <= 0 or tile < 1:
        raise ValueError(f"megapixels and tile must be positive, got megapixels={megapixels}, tile={tile}")
    if image_channels not in (1, 3):
        raise ValueError(f"image_channels must be 1 or 3, got {image_channels}")
    config = REDNetConfig(depth=DEPTHS[model], width=width, channels=channels)
    w = max(1, round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    h = max(1, round(megapixels * 1e6 / w))
    args = {
        "config": asdict(config),
        "image_channels": image_channels,
        "height": h,
        "width": w,
        "tile": tile,
        "bf16": bf16,
        "threads": threads,
    }
    src = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, json.dumps(args)], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise ChildProcessError(
            f"the memory benchmark's child process failed (exit {child.returncode}): {last}"
        )
    report = json.loads(child.stdout.strip().splitlines()[-1])
    mib = 1024  # KiB per MiB
    return {
        "benchmark": "memory",
        "model": model,
        "depth": config.depth,
        "width": width,
        "channels": channels,
        "image_channels": image_channels,
        "path": "Y channel" if channels == 1 and image_channels == 3 else "same channels",
        "image_height": h,
        "image_width": w,
        "megapixels": h * w / 1e6,
        "tile": tile,
        "bf16": bf16,
        "threads": threads,
        "peak_rss_mib": report["peak_kib"] / mib,
        "rss_model_mib": report["ready_kib"] / mib,
        "rss_image_mib": report["loaded_kib"] / mib,
        "image_mib": h * w * image_channels * 4 / 2**20,
        "seconds": report["seconds"],
        "wall_s": wall,
        "megapixels_per_s": h * w / 1e6 / report["seconds"],
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------------------------------
# rednet serve --bench: the web server under load
# --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _multipart(fields: dict[str, str], data: bytes, filename: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _peak_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return None


def bench_serve(
    *,
    requests: int = 200,
    concurrency: int = 8,
    size: int = 256,
    channels: int = 1,
    server_args: tuple[str, ...] = (),
    max_wait_s: float = 1800.0,
    startup_timeout: float = 120.0,
) -> dict[str, Any]:
    """Load-test ``rednet serve``: start it on a free loopback port, send ``requests`` restores of a noisy
    ``size`` x ``size`` image from ``concurrency`` client threads, stop it, and report.

    A client that gets 503 waits its ``Retry-After`` (times a random 0.5-1.5, so that waiting clients do not
    retry in step) and sends again, for up to ``max_wait_s``; each 503 counts in ``rejected_503``, every
    other failure in ``errors``. Latency runs from a request's first send to its image, waits
    included.

    Returns:
        JSON-ready: requests_per_s, p50_ms, p95_ms, p99_ms, max_ms, mean_ms, restore_p50_ms (server time in
        the model), errors, rejected_503, peak_rss_mib (the server process's VmHWM), and the settings used.
    """
    import numpy as np
    from skimage import data as skdata

    from rednet import degrade, io
    from rednet.metrics import psnr

    clean = io.array_to_tensor(skdata.astronaut()[:size, :size].copy())
    if channels == 1:
        clean = clean.mean(dim=1, keepdim=True)
    noisy = degrade.quantize(degrade.gaussian_noise(clean, 25.0, generator=np.random.default_rng(0)))
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="rednet-bench-") as tmp:
        path = io.write_image(Path(tmp) / "noisy.png", noisy)
        image = path.read_bytes()
        body, content_type = _multipart({"task": "denoise"}, image, "noisy.png")
        cmd = [
            sys.executable,
            "-m",
            "rednet",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *server_args,
        ]
        log = open(Path(tmp) / "server.log", "w+")  # noqa: SIM115 - closed with the folder
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            _wait_healthy(port, server, log, startup_timeout)
            lock = threading.Lock()
            counts = {"rejected_503": 0, "errors": 0}
            latencies: list[float] = []
            restore_ms: list[float] = []
            error_samples: list[str] = []
            last: list[bytes] = []

            def one(i: int) -> None:
                start = time.perf_counter()
                jitter = random.Random(i)
                while time.perf_counter() - start < max_wait_s:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                    try:
                        conn.request("POST", "/v1/restore", body=body, headers={"Content-Type": content_type})
                        resp = conn.getresponse()
                        payload = resp.read()
                        if resp.status == 503:
                            with lock:
                                counts["rejected_503"] += 1
                            time.sleep(float(resp.getheader("Retry-After", "1")) * jitter.uniform(0.5, 1.5))
                            continue
                        with lock:
                            if resp.status == 200:
                                latencies.append((time.perf_counter() - start) * 1000)
                                timing = re.search(
                                    r"restore;dur=([\d.]+)", resp.getheader("Server-Timing", "")
                                )
                                if timing:
                                    restore_ms.append(float(timing.group(1)))
                                last[:] = [payload]
                            else:
                                counts["errors"] += 1
                                error_samples.append(f"{resp.status} {payload[:200]!r}")
                        return
                    except OSError as e:
                        with lock:
                            counts["errors"] += 1
                            error_samples.append(repr(e))
                        return
                    finally:
                        conn.close()
                with lock:
                    counts["errors"] += 1
                    error_samples.append(f"still 503 after {max_wait_s:g} s")

            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(requests)))
            wall = time.perf_counter() - start
            rss = _peak_rss_mib(server.pid)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()
        gain = None
        if last:
            out = Path(tmp) / "restored.png"
            out.write_bytes(last[0])
            restored, _ = io.read_image(out)
            gain = float(psnr(restored, clean)[0] - psnr(noisy, clean)[0])
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "requests": requests,
        "concurrency": concurrency,
        "image": f"{size}x{size} {'gray' if channels == 1 else 'rgb'} PNG, astronaut, noise sigma 25",
        "task": "denoise",
        "server": " ".join(["rednet serve", *server_args]) or "rednet serve",
        "ok": len(latencies),
        "errors": counts["errors"],
        "rejected_503": counts["rejected_503"],
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 3),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(np.max(lat)), 1),
        "mean_ms": round(float(np.mean(lat)), 1),
        "restore_p50_ms": round(float(np.median(restore_ms)), 1) if restore_ms else None,
        "psnr_gain_db": None if gain is None else round(gain, 2),
        "peak_rss_mib": None if rss is None else round(rss, 1),
        "error_samples": error_samples[:5],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }


def _wait_healthy(port: int, server: subprocess.Popen, log: Any, timeout: float) -> None:
    """Wait until the server at ``port`` answers ``/healthz``; raise with its log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"rednet serve exited with {server.returncode}: {log.read()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
        finally:
            conn.close()
    raise RuntimeError(f"rednet serve did not answer /healthz within {timeout:g} s")
