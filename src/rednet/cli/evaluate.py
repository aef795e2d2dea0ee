"""``rednet eval``: score a method on a test set with the protocol (rednet.evaluate)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rednet.cli.flags import add_level_flags, eval_config
from rednet.inpaint import DAMAGE_THRESHOLD, FRAME_RUN, FRAME_WIDTH


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet eval``: score a method on a test set."""
    p = sub.add_parser("eval", help="score a method on a test set with the protocol of docs/protocol (JSON)")
    add_level_flags(p)
    p.add_argument(
        "--dataset",
        required=True,
        help="benchmark name (Set12, BSD68, CBSD68, Set5, Set14, B100, "
        "LIVE1, Classic5) or a folder of images",
    )
    p.add_argument(
        "--method",
        default="identity",
        help="identity, bicubic, bm3d, wiener, richardson-lucy, telea, biharmonic, rednet (with --model or "
        "--weights) (default identity: the degraded input)",
    )
    p.add_argument(
        "--channel",
        default="auto",
        choices=["auto", "y", "gray", "rgb"],
        help="channel to restore and score (default: the protocol's for the task and set)",
    )
    p.add_argument("--shave", type=int, help="border pixels to ignore (default: scale for sr, else 0)")
    p.add_argument(
        "--quantize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="clip and round results to 8 bits before scoring (default; --no-quantize = paper code)",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed: image i uses seed + i (default 0)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--save", type=Path, metavar="DIR", help="write each restored image to DIR/NAME.png")
    p.add_argument("--jobs", type=int, default=1, help="images restored at once, in processes (default 1)")
    p.add_argument(
        "--data-root", help="folder holding the benchmark sets (default $REDNET_DATA or ../shared/datasets)"
    )
    p.add_argument("--model", help="method rednet: shipped model name")
    p.add_argument("--weights", help="method rednet: weights file (.safetensors)")
    p.add_argument("--ensemble", action="store_true", help="method rednet: 8-transform self-ensemble")
    p.add_argument("--bf16", action="store_true", help="method rednet: bfloat16 autocast")
    p.add_argument(
        "--balance", type=float, help="method wiener: regularisation weight (default: 2 sigma/255)"
    )
    p.add_argument("--iterations", type=int, help="method richardson-lucy: iterations (default 30)")
    p.add_argument(
        "--detector",
        help="method rednet, task inpaint: a damage model (inpaint-detect) finds the mask that the "
        "mask-aware --model fills, instead of the true mask",
    )
    p.add_argument(
        "--damage-threshold",
        type=float,
        default=DAMAGE_THRESHOLD,
        help="with --detector: damaged above this probability",
    )
    p.add_argument(
        "--damage-grow", type=int, default=0, help="with --detector: also fill this many pixels around"
    )
    p.add_argument(
        "--damage-frame",
        type=int,
        default=FRAME_WIDTH,
        help="with --detector: keep the image's frame in this many pixels along each edge (0 = off)",
    )
    p.add_argument(
        "--damage-frame-run",
        type=int,
        default=FRAME_RUN,
        help="with --detector: the shortest line along an edge taken for a frame, in pixels",
    )
    p.add_argument(
        "--damage-tolerance",
        type=float,
        help="with --detector: keep only found damage painted in one colour, to this many 8-bit levels",
    )
    p.add_argument(
        "--damage-ensemble",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --detector: average the damage model over the 8 flips/rotations",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from rednet.evaluate import evaluate

    config = eval_config(
        args,
        dataset=args.dataset,
        method=args.method,
        channel=args.channel,
        shave=args.shave,
        quantize=args.quantize,
        seed=args.seed,
        data_root=args.data_root,
        limit=args.limit,
        model=args.weights or args.model,
        ensemble=args.ensemble,
        bf16=args.bf16,
        balance=args.balance,
        iterations=args.iterations,
        detector=args.detector,
        damage_threshold=args.damage_threshold,
        damage_grow=args.damage_grow,
        damage_frame=args.damage_frame,
        damage_frame_run=args.damage_frame_run,
        damage_tolerance=args.damage_tolerance,
        damage_ensemble=args.damage_ensemble,
    )
    progress = not args.json and sys.stderr.isatty()
    result = evaluate(config, progress=progress, save=args.save, jobs=args.jobs)
    for bad in result["failed"]:
        print(f"rednet: error: {bad['error']}", file=sys.stderr)
    status = 1 if result["failed"] else 0
    if args.json:
        print(json.dumps(result, indent=2))
        return status
    print(f"{'image':<24} {'PSNR':>8} {'SSIM':>8} {'s/img':>8}")
    for row in result["images"]:
        print(f"{row['name']:<24} {row['psnr']:8.2f} {row['ssim']:8.4f} {row['seconds']:8.3f}")
    m = result["mean"]
    print(f"{'mean':<24} {m['psnr']:8.2f} {m['ssim']:8.4f} {m['seconds']:8.3f}")
    proto = ", ".join(f"{k}={v}" for k, v in result["protocol"].items())
    print(f"{config.method} on {config.dataset}, task {config.task}: {proto}")
    if status:
        print(f"{len(result['failed'])} image(s) failed and are not in the mean", file=sys.stderr)
    return status
