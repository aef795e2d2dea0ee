"""``rednet bench infer``: inference speed of several variants against the matmul peak, and BM3D; and
:func:`bench_memory`, the peak RSS of restoring one large image (see :mod:`rednet.bench` for the method)."""

from __future__ import annotations

import contextlib
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rednet.bench import DEPTHS, macs_per_pixel, matmul_peak, paired_rounds
from rednet.devices import choose_device
from rednet.infer import auto_tile, margin_for, restore
from rednet.metrics import psnr
from rednet.model import REDNet, REDNetConfig

__all__ = ["INFER_VARIANTS", "InferVariant", "bench_infer", "bench_memory"]


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


def _base_net(model: str, width: int, channels: int, weights: str | Path | None) -> REDNet:
    """The trained model in ``weights``, or a ``model`` ("red10", "red20", "red30") of random weights
    (seed 0)."""
    if weights is not None:
        from rednet.zoo import load_weights

        return load_weights(weights)[0]
    if model not in DEPTHS:
        raise ValueError(f"model must be one of {', '.join(DEPTHS)}, got {model!r}")
    torch.manual_seed(0)
    return REDNet(REDNetConfig(depth=DEPTHS[model], width=width, channels=channels))


def _compare_variants(
    results: list[dict[str, Any]], peaks: dict[str, list[float]]
) -> dict[str, dict[str, Any]]:
    """Add the figures that compare variants to each record (against the run's largest peak, bf16 against its
    fp32 twin); return the measured records by name."""
    for r in results:
        if "gflops" in r:
            r["peak_fraction_of_max"] = r["gflops"] * 1e9 / max(peaks[r["dtype"]])
    by_name = {r["name"]: r for r in results if "psnr_db" in r}
    for r in results:
        if r["dtype"] == "bf16" and "psnr_db" in r:
            twin = by_name.get(r["name"].replace("bf16", "fp32"))
            if twin is not None:
                r["psnr_change_vs_fp32_db"] = r["psnr_db"] - twin["psnr_db"]
    return by_name


def _bm3d_record(noisy: Tensor, clean: Tensor, sigma: float) -> dict[str, Any]:
    """BM3D (CBM3D for RGB) on the benchmark's image, timed once: (1, C, H, W) CPU tensors, sigma on 0-255."""
    from rednet.baselines import bm3d as run_bm3d

    start = time.perf_counter()
    denoised = run_bm3d(noisy, sigma)
    elapsed = time.perf_counter() - start
    return {
        "method": "CBM3D" if clean.shape[1] == 3 else "BM3D",
        "seconds_per_image": elapsed,
        "megapixels_per_s": clean.shape[-2] * clean.shape[-1] / elapsed / 1e6,
        "psnr_db": psnr(denoised, clean).item(),
    }


def _variant_record(
    v: InferVariant, stride: int, tile: int | None, weights: str | Path | None
) -> dict[str, Any]:
    """The settings of one variant's entry in the JSON of :func:`bench_infer` (its figures come later)."""
    return {
        "name": v.name,
        "engine": v.engine,
        "dtype": v.dtype,
        "stride": stride,
        "ensemble": v.ensemble,
        "tile": tile,
        "channels_last": v.engine != "onnxruntime",
        "weights": str(weights) if weights is not None else None,
    }


def _settings(
    config: REDNetConfig, weights: str | Path | None, dev: torch.device, *, sigma: float, seed: int, size: int
) -> dict[str, Any]:
    """The first fields of the JSON of :func:`bench_infer`: what was measured, where and on which image."""
    from rednet.train import hardware

    return {
        "benchmark": "infer",
        "model": f"red{config.depth}",
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
    }


def _weights_note(trained: bool, stride: int, strided_variants: bool) -> str | None:
    """Which PSNRs of the run mean nothing (their model has random weights); None if all mean something."""
    if not trained:
        return (
            "random weights: the speeds hold for any weights, but PSNR and bf16_psnr_change_db mean "
            "nothing; pass weights=FILE (--weights) for them"
        )
    if stride == 1 and strided_variants:
        return "the strided variants use random weights (the file is stride 1): their PSNR means nothing"
    return None


def _time_variant(
    v: InferVariant,
    run: Callable[[], Tensor],
    clean: Tensor,
    record: dict[str, Any],
    peaks: dict[str, list[float]],
    *,
    macs: int,
    seconds: float,
    peak: tuple[int, float],
) -> None:
    """Time ``run`` in rounds against matmul peaks (``peak`` = (side of the cube, seconds)) in the variant's
    dtype; put the figures (``macs`` per pixel and pass) and the PSNR against ``clean`` into ``record``, the
    peaks into ``peaks[dtype]``."""
    pixels = clean.shape[-2] * clean.shape[-1]
    dtype = torch.bfloat16 if v.dtype == "bf16" else torch.float32

    def measure_peak(d: torch.dtype = dtype) -> float:
        return matmul_peak(d, clean.device, size=peak[0], seconds=peak[1])

    rounds, out = paired_rounds(run, measure_peak, clean.device, seconds=seconds)
    if v.engine == "compile":
        torch._dynamo.reset()
    peaks.setdefault(v.dtype, []).extend(rounds.peaks)
    per_image = statistics.median(rounds.seconds)
    flop = 2 * macs * pixels * (8 if v.ensemble else 1)
    record |= {"seconds_per_image": per_image, "megapixels_per_s": pixels / per_image / 1e6}
    record |= {**rounds.summary(flop), "psnr_db": psnr(out, clean).item()}


def _runner(
    v: InferVariant,
    net: REDNet,
    noisy: Tensor,
    tile: int | None,
    record: dict[str, Any],
    compile_timeout: float,
) -> Callable[[], Tensor] | None:
    """A warmed-up call that restores ``noisy`` (1, C, H, W) the variant's way, or None with
    ``record["skipped"]`` set; export and compile times go into ``record``."""
    size = noisy.shape[-1]
    margin = margin_for(net)
    window = size if tile is None else min(size, tile + 2 * margin)
    warm = noisy[..., :window, :window]
    bf16 = v.dtype == "bf16"
    if v.engine == "onnxruntime":
        if noisy.device.type != "cpu":
            record["skipped"] = "onnxruntime runs on the CPU in rednet.onnx; use --device cpu"
            return None
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
            return None
        record["compile_s"] = compile_s
    else:

        def run(m: Any = net, b: bool = bf16, e: bool = v.ensemble) -> Tensor:
            return restore(m, noisy, tile=tile, bf16=b, ensemble=e)

        restore(net, warm, tile=None, bf16=bf16)
    return run


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
    names = list(INFER_VARIANTS) if variants is None else list(variants)
    if unknown := [n for n in names if n not in INFER_VARIANTS]:
        raise ValueError(f"unknown variant {unknown[0]!r}; choose from {', '.join(INFER_VARIANTS)}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    dev = choose_device(device)
    base_net = _base_net(model, width, channels, weights)
    config = base_net.config
    nets = {config: base_net}
    clean, noisy = (t.to(dev) for t in _bench_images(size, config.channels, sigma, seed))
    tile = auto_tile(size, size)
    peaks: dict[str, list[float]] = {}
    results: list[dict[str, Any]] = []
    for name in names:
        v = INFER_VARIANTS[name]
        cfg = replace(config, stride=2) if v.strided else config
        if cfg not in nets:
            torch.manual_seed(0)
            nets[cfg] = REDNet(cfg)
        net = nets[cfg].to(dev).to(memory_format=torch.channels_last).eval()
        record = _variant_record(v, cfg.stride, tile, weights if cfg == config else None)
        results.append(record)
        run = _runner(v, net, noisy, tile, record, compile_timeout)
        if run is None:
            continue
        peak = (peak_size, peak_seconds)
        _time_variant(v, run, clean, record, peaks, macs=macs_per_pixel(cfg), seconds=seconds, peak=peak)
    by_name = _compare_variants(results, peaks)
    result: dict[str, Any] = {
        **_settings(config, weights, dev, sigma=sigma, seed=seed, size=size),
        "noisy_psnr_db": psnr(noisy, clean).item(),
        "tile": tile,
        "macs_per_pixel": macs_per_pixel(config),
        "peak_gflops": {k: statistics.median(p) / 1e9 for k, p in peaks.items()},
        "peak_gflops_max": {k: max(p) / 1e9 for k, p in peaks.items()},
        "variants": results,
        "bf16_psnr_change_db": by_name.get("bf16", {}).get("psnr_change_vs_fp32_db"),
        "torch": torch.__version__,
    }
    note = _weights_note(weights is not None, config.stride, any(INFER_VARIANTS[n].strided for n in names))
    if note:
        result["note"] = note
    if bm3d:
        result["bm3d"] = _bm3d_record(noisy.cpu(), clean.cpu(), sigma)
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
