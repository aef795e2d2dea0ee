"""``rednet bench train|infer|memory``: benchmarks that print JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rednet.tasks import TASK_NAMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet bench train|infer|memory``."""
    p = sub.add_parser(
        "bench", help="benchmarks that print JSON (bench train: throughput vs the matmul peak)"
    )
    bench = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    b = bench.add_parser(
        "train", help="training patches/s, TFLOP/s and fraction of the machine's matmul peak"
    )
    b.add_argument(
        "--model", default="red30", choices=["red10", "red20", "red30"], help="depth (default red30)"
    )
    b.add_argument("--width", type=int, default=64, help="hidden channels (default 64)")
    b.add_argument("--channels", type=int, default=1, choices=[1, 3], help="image channels (default 1)")
    b.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="autocast bf16, fp32, or auto (default): bf16 on GPUs and CPUs with native bf16",
    )
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    b.add_argument("--batch-size", type=int, default=16, help="patches per step (default 16)")
    b.add_argument("--patch-size", type=int, default=50, help="patch side (default 50)")
    b.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="channels-last memory format (default on)",
    )
    b.add_argument(
        "--seconds", type=float, default=10.0, help="time to spend measuring, >= 3 rounds (default 10)"
    )
    _peak_flags(b)
    b.add_argument(
        "--data-task",
        default="denoise",
        choices=list(TASK_NAMES),
        help="task whose data pipeline is timed",
    )
    b.add_argument("--json", action="store_true", help="print JSON (the default output is JSON as well)")
    b.set_defaults(run=cmd_bench_train)

    from rednet.bench_infer import INFER_VARIANTS

    b = bench.add_parser("infer", help="inference MP/s, GFLOP/s and peak fraction per variant, BM3D beside")
    b.add_argument(
        "--model", default="red30", choices=["red10", "red20", "red30"], help="depth (default red30)"
    )
    b.add_argument("--width", type=int, default=64, help="hidden channels (default 64)")
    b.add_argument("--channels", type=int, default=1, choices=[1, 3], help="image channels (default 1)")
    b.add_argument("--size", type=int, default=1024, help="side of the test image (default 1024)")
    b.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device (default cpu)")
    b.add_argument("--seconds", type=float, default=5.0, help="time per variant, >= 3 rounds (default 5)")
    b.add_argument(
        "--variants",
        nargs="+",
        choices=list(INFER_VARIANTS),
        metavar="NAME",
        help=f"variants to run (default all: {', '.join(INFER_VARIANTS)})",
    )
    b.add_argument("--bm3d", action=argparse.BooleanOptionalAction, default=True, help="time BM3D too")
    b.add_argument("--weights", type=Path, help="trained weights (.safetensors); default random init")
    b.add_argument("--sigma", type=float, default=25.0, help="noise of the test image (default 25)")
    b.add_argument("--compile-timeout", type=float, default=120.0, help="give up torch.compile after N s")
    _peak_flags(b)
    b.add_argument("--json", action="store_true", help="print JSON (the default output is JSON as well)")
    b.set_defaults(run=cmd_bench_infer)

    b = bench.add_parser("memory", help="peak RSS of restoring a large image (in a child process)")
    b.add_argument("--megapixels", type=float, default=40.0, help="image size (default 40)")
    b.add_argument("--tile", type=int, default=256, help="tile side (default 256)")
    b.add_argument(
        "--model", default="red30", choices=["red10", "red20", "red30"], help="depth (default red30)"
    )
    b.add_argument("--width", type=int, default=64, help="hidden channels (default 64)")
    b.add_argument("--channels", type=int, default=3, choices=[1, 3], help="model channels (default 3)")
    b.add_argument("--image-channels", type=int, default=3, choices=[1, 3], help="image channels (default 3)")
    b.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    b.add_argument("--threads", type=int, help="torch threads in the child")
    b.add_argument("--json", action="store_true", help="print JSON (the default output is JSON as well)")
    b.set_defaults(run=cmd_bench_memory)


def _peak_flags(b: argparse.ArgumentParser) -> None:
    """The matmul peak measured before every round of a benchmark (rednet.bench.paired_rounds)."""
    b.add_argument("--peak-size", type=int, default=2048, help="side of the peak's matmul (default 2048)")
    b.add_argument("--peak-seconds", type=float, default=0.5, help="time per peak measurement (default 0.5)")


def cmd_bench_train(args: argparse.Namespace) -> int:
    from rednet.bench import bench_train

    result = bench_train(
        model=args.model,
        width=args.width,
        channels=args.channels,
        dtype=args.dtype,
        device=args.device,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        channels_last=args.channels_last,
        seconds=args.seconds,
        data_task=args.data_task,
        peak_size=args.peak_size,
        peak_seconds=args.peak_seconds,
    )
    print(json.dumps(result, indent=2))
    return 0


def cmd_bench_infer(args: argparse.Namespace) -> int:
    from rednet.bench_infer import bench_infer

    result = bench_infer(
        model=args.model,
        width=args.width,
        channels=args.channels,
        size=args.size,
        device=args.device,
        seconds=args.seconds,
        variants=args.variants,
        bm3d=args.bm3d,
        weights=args.weights,
        sigma=args.sigma,
        compile_timeout=args.compile_timeout,
        peak_size=args.peak_size,
        peak_seconds=args.peak_seconds,
    )
    print(json.dumps(result, indent=2))
    return 0


def cmd_bench_memory(args: argparse.Namespace) -> int:
    from rednet.bench_infer import bench_memory

    result = bench_memory(
        megapixels=args.megapixels,
        tile=args.tile,
        model=args.model,
        width=args.width,
        channels=args.channels,
        image_channels=args.image_channels,
        bf16=args.bf16,
        threads=args.threads,
    )
    print(json.dumps(result, indent=2))
    return 0
