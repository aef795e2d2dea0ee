"""The ``rednet`` command line: degrade, restore, eval, train, export, plot, bench, demo, serve.

Expected failures (bad input, missing data, bad arguments) print one line ``rednet: error: ...`` on stderr and
exit 1; ``--debug`` re-raises instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rednet import __version__
from rednet.extras import MissingExtraError, require
from rednet.infer import DAMAGE_THRESHOLD, native_bf16
from rednet.tasks import TASK_NAMES

TASK_HELP = "denoise (--sigma), sr (--scale), jpeg (--quality), deblur (--kernel [--sigma]), inpaint (--mask)"


def _add_level_flags(p: argparse.ArgumentParser, *, mask_file: bool = False) -> None:
    p.add_argument("--task", required=True, choices=list(TASK_NAMES), help=TASK_HELP)
    p.add_argument(
        "--sigma", type=float, help="noise std on the 0-255 scale (denoise; added noise for deblur)"
    )
    p.add_argument("--scale", type=int, choices=[2, 3, 4], help="super-resolution factor")
    p.add_argument("--quality", type=int, help="JPEG quality 1-100")
    if mask_file:  # restore: the kernels a shipped per-kernel model undoes (none = the blind model)
        p.add_argument(
            "--kernel", choices=["gaussian", "disk"], help="blur kernel: gaussian 25x25 s=1.6, disk r=7"
        )
    else:
        p.add_argument(
            "--kernel",
            help="blur kernel: gaussian (25x25 s=1.6), disk (r=7) or gaussian-S (25x25, sigma S <= 4)",
        )
    if mask_file:
        p.add_argument(
            "--mask",
            type=Path,
            help="inpaint: black-and-white image, white where the damage is (uses the mask-aware model)",
        )
    else:
        p.add_argument(
            "--mask",
            help="inpainting corruption: 'text', 'decoys' (text over an image given text of its own) or a "
            "pixel-loss rate such as 0.5",
        )


REPORT_DEFAULTS: dict[str, dict[str, str]] = {
    "denoise": {
        "datasets": "Set12,BSD68,CBSD68",
        "sigmas": "10,15,25,30,50,70",
        "methods": "noisy,bm3d,rednet,rednet+ensemble",
    },
    "sr": {"datasets": "Set5,Set14,B100", "scales": "2,3,4", "methods": "input,rednet,rednet+ensemble"},
    "jpeg": {
        "datasets": "LIVE1,Classic5",
        "color_datasets": "LIVE1",
        "qualities": "10,20,30,40",
        "methods": "input,rednet,rednet+ensemble",
    },
    "deblur": {
        "datasets": "Set14,CBSD68",
        "settings": "gaussian:0,gaussian:2.55,disk:0,disk:2.55",
        "methods": "input,wiener,richardson-lucy,rednet,rednet-blind",
    },
    "inpaint": {
        "datasets": "Set14,CBSD68",
        "settings": "text,0.5,0.8",
        "methods": "input,telea,biharmonic,rednet,rednet-detect,rednet-mask",
    },
}
"""Each report's list options and their defaults; a report's command line names the ones that differ."""


def _add_report_options(r: argparse.ArgumentParser) -> None:
    """The options every ``rednet report TASK`` takes besides its sets, levels and methods."""
    r.add_argument("--limit", type=int, help="only the first N images of each set")
    r.add_argument("--ensemble-datasets", help="run rednet+ensemble (8x slower) only on these sets")
    r.add_argument("--jobs", type=int, default=1, help="cells measured at once, one process each (default 1)")
    r.add_argument("--bf16", action="store_true", help="run the models in bfloat16 (default fp32)")
    r.add_argument("--data-root", help="where the sets live (default $REDNET_DATA or ../shared/datasets)")
    r.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("docs/results.md"),
        help="markdown file whose section of this report is written (other sections are kept)",
    )
    r.add_argument(
        "--section",
        help="name of the section written (default: the report's name); another name adds a second table",
    )
    r.add_argument("--json", type=Path, help="also write the measured records as JSON")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    r.set_defaults(run=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rednet", description="Restore damaged images with RED-Net (Mao, Shen and Yang, NIPS 2016)."
    )
    parser.add_argument("--version", action="version", version=f"rednet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("degrade", help="corrupt an image (noise, low resolution, JPEG, blur, missing pixels)")
    _add_level_flags(p)
    p.add_argument("input", type=Path, metavar="IN", help="input image")
    p.add_argument("-o", "--output", type=Path, required=True, help="output image (format from its suffix)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random corruption (default 0)")
    p.add_argument(
        "--save-mask",
        type=Path,
        help="inpaint: also write the mask (white = damaged, as restore --mask reads it)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=cmd_degrade)

    p = sub.add_parser("restore", help="restore image files with a RED-Net (files, folders or globs)")
    _add_level_flags(p, mask_file=True)
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files, folders of images, or glob patterns")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output file (one input) or folder: outputs keep the input's name and format, and the folders "
        "below a folder or a glob's fixed part ('d/**/*.png' -o out/: d/a/x.png -> out/a/x.png)",
    )
    p.add_argument(
        "--save-mask",
        type=Path,
        metavar="MASK",
        help="blind inpainting: also write the damage found (white = damaged), to check, correct and give "
        "back with --mask: a PNG file for one input, else a folder (NAME-mask.png)",
    )
    p.add_argument("--model", help="shipped model name (rednet models); default: the task's model")
    p.add_argument("--weights", type=Path, help="weights file (.safetensors) from rednet export")
    p.add_argument("--ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)")
    p.add_argument("--fast", action="store_true", help="use the task's strided (fast) model")
    p.add_argument("--tile", type=int, help="tile side in pixels (default: 512 for images over 512x512)")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if present"
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: on for GPUs and CPUs with native bf16)",
    )
    existing = p.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never the inputs)"
    )
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep existing outputs and skip their inputs (finish a set after an interruption)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object with every file's result")
    p.set_defaults(run=cmd_restore)

    p = sub.add_parser("eval", help="score a method on a test set with the protocol of docs/protocol (JSON)")
    _add_level_flags(p)
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

    p = sub.add_parser("train", help="train a RED-Net (one process, or many with torchrun -m rednet train)")
    p.add_argument("--config", type=Path, help="TOML file of training options (flags override it)")
    p.add_argument(
        "--run-dir", type=Path, help="run folder for config, logs and checkpoints (default runs/TASK-TIME)"
    )
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument(
        "--init",
        type=Path,
        metavar="WEIGHTS",
        help="start from exported weights, fresh optimizer (a gray model can start an RGB one)",
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    p.add_argument(
        "--deadline",
        type=float,
        metavar="UNIX_TIME",
        help="stop at this time (seconds since the epoch), writing last.pt: a lent machine's limit",
    )
    _add_train_flags(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser(
        "export",
        help="RUN_DIR -o NAME.safetensors: fp16 weights + model card; onnx --weights FILE -o NAME.onnx",
        description="rednet export RUN_DIR -o NAME.safetensors writes a run's weights (fp16) and its "
        "model card (NAME.json); rednet export onnx --weights FILE -o NAME.onnx writes an ONNX graph.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR|onnx", help="training run folder, or the word onnx")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="NAME.safetensors (card: NAME.json) or .onnx"
    )
    p.add_argument("--weights", type=Path, help="onnx: the weights file (.safetensors) to convert")
    p.add_argument("--opset", type=int, default=18, help="onnx: opset version (default 18)")
    p.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="best validation PSNR (default) or the last step",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("plot", help="draw a run's loss and validation-PSNR curves to a PNG")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="training run folder")
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default RUN_DIR/curves.png)")
    p.set_defaults(run=cmd_plot)

    p = sub.add_parser("report", help="generate the result tables of docs/results.md (runs every method)")
    rep = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    r = rep.add_parser("denoise", help="Set12, BSD68, CBSD68: noisy, BM3D, rednet, rednet + self-ensemble")
    r.add_argument("--datasets", default=REPORT_DEFAULTS["denoise"]["datasets"], help="comma-separated")
    r.add_argument("--sigmas", default=REPORT_DEFAULTS["denoise"]["sigmas"], help="noise levels, 0-255 scale")
    r.add_argument("--methods", default=REPORT_DEFAULTS["denoise"]["methods"], help="comma-separated")
    _add_report_options(r)
    r = rep.add_parser("sr", help="Set5, Set14, B100 at x2, x3, x4 (Y): bicubic, rednet, rednet + ensemble")
    r.add_argument("--datasets", default=REPORT_DEFAULTS["sr"]["datasets"], help="comma-separated")
    r.add_argument("--scales", default=REPORT_DEFAULTS["sr"]["scales"], help="comma-separated factors")
    r.add_argument("--methods", default=REPORT_DEFAULTS["sr"]["methods"], help="comma-separated")
    _add_report_options(r)
    r = rep.add_parser(
        "jpeg", help="LIVE1 (Y), Classic5 (gray), LIVE1 (colour): JPEG input, rednet, rednet + ensemble"
    )
    r.add_argument("--datasets", default=REPORT_DEFAULTS["jpeg"]["datasets"], help="Y / gray sets")
    r.add_argument(
        "--color-datasets",
        default=REPORT_DEFAULTS["jpeg"]["color_datasets"],
        help="sets JPEG-coded and restored in colour (4:2:0), with jpeg-color; '' = none",
    )
    r.add_argument("--qualities", default=REPORT_DEFAULTS["jpeg"]["qualities"], help="JPEG qualities")
    r.add_argument("--methods", default=REPORT_DEFAULTS["jpeg"]["methods"], help="comma-separated")
    _add_report_options(r)
    r = rep.add_parser(
        "deblur", help="Set14, CBSD68, two kernels, noise 0 / 2.55 (RGB): Wiener, Richardson-Lucy, rednet"
    )
    r.add_argument("--datasets", default=REPORT_DEFAULTS["deblur"]["datasets"], help="comma-separated")
    r.add_argument(
        "--settings",
        default=REPORT_DEFAULTS["deblur"]["settings"],
        help="columns KERNEL:SIGMA, comma-separated",
    )
    r.add_argument("--methods", default=REPORT_DEFAULTS["deblur"]["methods"], help="comma-separated")
    r.add_argument(
        "--tune-images", type=int, default=4, help="training images the classical methods are tuned on"
    )
    _add_report_options(r)
    r = rep.add_parser(
        "inpaint", help="Set14, CBSD68: text, 50 %% and 80 %% pixel loss (RGB): Telea, biharmonic, rednet"
    )
    r.add_argument("--datasets", default=REPORT_DEFAULTS["inpaint"]["datasets"], help="comma-separated")
    r.add_argument(
        "--settings", default=REPORT_DEFAULTS["inpaint"]["settings"], help="columns: text or a loss rate"
    )
    r.add_argument("--methods", default=REPORT_DEFAULTS["inpaint"]["methods"], help="comma-separated")
    _add_report_options(r)
    r = rep.add_parser(
        "runs", help="a markdown table comparing training runs (recipe, cost, validation PSNR)"
    )
    r.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="training run folders")
    r.set_defaults(run=cmd_report_runs)
    r = rep.add_parser("infer", help="a markdown table of a saved `rednet bench infer --json` result")
    r.add_argument("bench_json", type=Path, metavar="BENCH_JSON", help="the JSON that bench infer printed")
    r.set_defaults(run=cmd_report_infer)
    r = rep.add_parser(
        "regenerate", help="rerun the command of every section of docs/results.md, each in place"
    )
    r.add_argument("-o", "--output", type=Path, default=Path("docs/results.md"), help="file to regenerate")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    r.set_defaults(run=cmd_report_regenerate)
    _add_report_reliability_parser(rep)

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

    p = sub.add_parser("models", help="list the shipped models (name, task, levels, size, card summary)")
    p.add_argument("--json", action="store_true", help="print the model cards as JSON")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser(
        "demo",
        help="add noise to a built-in sample, restore it with the shipped model, write a before/after PNG",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("rednet-demo.png"),
        help="before/after image to write (default rednet-demo.png)",
    )
    p.add_argument("--sigma", type=float, default=25.0, help="noise std on the 0-255 scale (default 25)")
    p.add_argument("--model", help="shipped model name or weights file (default: the colour denoiser)")
    p.add_argument("--bm3d", action="store_true", help="also run BM3D on the same input, for comparison")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser(
        "serve",
        help="web page and JSON HTTP API: upload, restore, compare (loopback only unless --host)",
        description="Serve the rednet web page and HTTP API (docs/web.md). With --bench, start a server on a "
        "free loopback port instead, load it with --requests restores and print JSON.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=32.0, help="largest upload in MiB (default 32)")
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=16.0,
        help="largest image, checked before decoding (default 16)",
    )
    p.add_argument("--queue", type=int, default=4, help="jobs that may wait; more get HTTP 503 (default 4)")
    p.add_argument("--workers", type=int, default=1, help="restores run at once (default 1)")
    p.add_argument("--threads", type=int, help="PyTorch threads (default: one per core)")
    p.add_argument("--tile", type=int, default=512, help="tile side; progress is per tile (default 512)")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if present"
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: on for GPUs and CPUs with native bf16)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="Host header to accept, repeatable (default: loopback names when bound to loopback, else any)",
    )
    p.add_argument("--bench", action="store_true", help="load-test a fresh server and print JSON")
    p.add_argument("--requests", type=int, default=200, help="--bench: restores to send (default 200)")
    p.add_argument("--concurrency", type=int, default=8, help="--bench: client threads (default 8)")
    p.add_argument("--size", type=int, default=256, help="--bench: image side (default 256)")
    p.add_argument(
        "--channels", type=int, default=1, choices=[1, 3], help="--bench: 1 gray, 3 RGB (default 1)"
    )
    p.set_defaults(run=cmd_serve)
    _add_campaign_parser(sub)
    _add_fuzz_api_parser(sub)
    _add_fuzz_parser(sub)
    _add_kill_trials_parser(sub)
    _add_ablate_parser(sub)
    return parser


def _add_campaign_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet campaign data|run|unpack``: the GPU lease (rednet.campaign)."""
    from rednet.campaign import DEFAULT_JOBS, JOBS, CampaignConfig

    p = sub.add_parser("campaign", help="the GPU lease: pack the images, train on the device, unpack")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    c = what.add_parser("data", help="copy the training and validation images to carry (lossless)")
    c.add_argument("-o", "--output", type=Path, default=Path(".campaign/data"), help="default .campaign/data")
    c.add_argument("--data-root", help="where the images are (default $REDNET_DATA or ../shared/datasets)")
    c.set_defaults(run=cmd_campaign)
    c = what.add_parser("run", help="on the lent device: smoke-test, train every job at once, bench")
    c.add_argument("--jobs", default=",".join(DEFAULT_JOBS), help=f"comma-separated, of {', '.join(JOBS)}")
    c.add_argument("--out", type=Path, required=True, help="folder whose files come back ($OUT)")
    defaults = CampaignConfig()
    for field in dataclasses.fields(CampaignConfig):
        if field.name in ("jobs", "out"):
            continue
        flag = "--" + field.name.replace("_", "-")
        value = getattr(defaults, field.name)
        if isinstance(value, bool):
            c.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=value, help=f"default {value}"
            )
        else:
            c.add_argument(flag, type=type(value), default=value, help=f"default {value}")
    c.set_defaults(run=cmd_campaign)
    c = what.add_parser("unpack", help="the files a lease brought back: run folders into runs/")
    c.add_argument("folder", type=Path, help="the folder of NAME.tar, campaign.json, bench.json")
    c.add_argument("--runs", type=Path, default=Path("runs"), help="where the run folders go (default runs)")
    c.set_defaults(run=cmd_campaign)
    c = what.add_parser("report", help="markdown tables of a lease (its campaign.json and bench.json)")
    c.add_argument("folder", type=Path, help="the folder of campaign.json and bench.json")
    c.set_defaults(run=cmd_campaign)


def cmd_campaign(args: argparse.Namespace) -> int:
    from rednet import campaign, lease
    from rednet.data import data_root

    if args.what == "data":
        print(json.dumps(campaign.pack_data(data_root(args.data_root), args.output), indent=2))
    elif args.what == "unpack":
        print(json.dumps(lease.unpack(args.folder, args.runs), indent=2))
    elif args.what == "report":
        bench = args.folder / "bench.json"
        summary = json.loads((args.folder / "campaign.json").read_text())
        print(lease.render_lease(summary, json.loads(bench.read_text()) if bench.is_file() else None))
    else:
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(campaign.CampaignConfig)}
        values["jobs"] = tuple(j.strip() for j in args.jobs.split(",") if j.strip())
        values["out"] = str(args.out)
        config = campaign.CampaignConfig(**values)
        try:
            campaign.run_campaign(config, command=_command_line(args.argv))
        except RuntimeError as e:  # every job failed: campaign.log has their reasons
            print(f"rednet: error: {e}", file=sys.stderr)
            return 1
    return 0


def _add_fuzz_api_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuzz-api",
        help="schemathesis against the HTTP API of rednet serve, in process, all default checks (JSON)",
    )
    p.add_argument("--cases", type=int, default=3000, help="size of the run (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="schemathesis' seed (default 0)")
    p.set_defaults(run=cmd_fuzz_api)


def cmd_fuzz_api(args: argparse.Namespace) -> int:
    require("fastapi", "web", "rednet fuzz-api")
    require("schemathesis", "dev", "rednet fuzz-api")
    from rednet.fuzz_api import run_api_fuzz

    result = run_api_fuzz(args.cases, args.seed)
    print(json.dumps(result, indent=2))
    return 1 if result["failures"] or result["server_errors"] else 0


def _add_fuzz_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuzz", help="mutated image files through read_image (or rednet restore), outcomes (JSON)"
    )
    p.add_argument("--cases", type=int, default=10_000, help="how many cases (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis' seed (default 0)")
    p.add_argument("--restore", action="store_true", help="through rednet restore with a tiny model")
    p.add_argument(
        "--max-pixels",
        type=int,
        help="REDNET_MAX_PIXELS of the cases (default: rednet's; 65536 with --restore)",
    )
    p.add_argument(
        "--time-limit", type=float, default=10.0, help="seconds before a case is a hang (default 10)"
    )
    p.add_argument("--save-failures", type=Path, metavar="DIR", help="write each unexpected case's file here")
    p.set_defaults(run=cmd_fuzz)


def cmd_fuzz(args: argparse.Namespace) -> int:
    require("hypothesis", "dev", "rednet fuzz")
    from rednet.fuzz import FuzzTarget, run_fuzz

    if args.cases < 1 or args.time_limit <= 0 or (args.max_pixels is not None and args.max_pixels < 1):
        raise ValueError("--cases, --time-limit and --max-pixels must be positive")
    limit = args.max_pixels if args.max_pixels is not None or not args.restore else 65_536
    target = FuzzTarget(command=main if args.restore else None, max_pixels=limit)
    result = run_fuzz(
        args.cases, args.seed, target, time_limit=args.time_limit, failures_dir=args.save_failures
    )
    print(json.dumps(result, indent=2))
    return 1 if result["unexpected"] else 0


def _add_kill_trials_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kill-trials", help="kill -9 rednet train or a folder restore at random points (JSON)")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    for name, trials, about in [
        ("train", 20, "each resume must give bitwise the weights and the log of an uninterrupted run"),
        ("restore", 10, "every visible output complete; --skip-existing must finish the set"),
    ]:
        k = what.add_parser(name, help=about)
        k.add_argument("--trials", type=int, default=trials, help=f"how many kills (default {trials})")
        k.add_argument("--seed", type=int, default=0, help="seed of the kill points (default 0)")
        k.set_defaults(run=cmd_kill_trials)


def cmd_kill_trials(args: argparse.Namespace) -> int:
    from rednet.kill_trials import restore_trials, train_trials

    if args.trials < 1:
        raise ValueError(f"--trials must be a positive whole number, got {args.trials}")
    result = (train_trials if args.what == "train" else restore_trials)(args.trials, args.seed)
    print(json.dumps(result, indent=2))
    return 0 if result["survived"] == result["trials"] else 1


def _add_report_reliability_parser(rep: argparse._SubParsersAction) -> None:
    from rednet.reliability import ReliabilityRun

    r = rep.add_parser(
        "reliability", help="docs/reliability.md: fuzz read_image and restore, kill -9 trials, API fuzzing"
    )
    for field in dataclasses.fields(ReliabilityRun):
        r.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=int,
            default=field.default,
            help=f"default {field.default}",
        )
    r.add_argument("-o", "--output", type=Path, default=Path("docs/reliability.md"), help="the page to write")
    r.add_argument("--json", type=Path, help="also write the run's results as JSON")
    r.set_defaults(run=cmd_report_reliability)


def cmd_report_reliability(args: argparse.Namespace) -> int:
    require("hypothesis", "dev", "rednet report reliability")
    require("schemathesis", "dev", "rednet report reliability")
    require("fastapi", "web", "rednet report reliability")
    from rednet.reliability import ReliabilityRun, command_line, render_reliability, run_reliability
    from rednet.report import write_text_atomic
    from rednet.train import hardware

    run = ReliabilityRun(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ReliabilityRun)})
    results = run_reliability(run, main)
    header = (
        f"Generated by `{command_line(run)}` (rednet {__version__}, torch {torch.__version__}) on "
        f"{hardware(torch.device('cpu'))}. Do not edit by hand: rerun the command to regenerate this page."
    )
    out = write_text_atomic(args.output, render_reliability(results, header))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _add_ablate_parser(sub: argparse._SubParsersAction) -> None:
    from rednet.ablations import Budget

    p = sub.add_parser(
        "ablate",
        help="re-check the paper's claims by small equal-budget training runs; write docs/ablations.md",
    )
    p.add_argument(
        "--runs", type=Path, default=Path("runs/ablate"), help="run folders (kept; finished ones reused)"
    )
    p.add_argument(
        "--from-runs", action="store_true", help="rebuild the doc from the stored runs, no training"
    )
    p.add_argument("--quick", action="store_true", help="tiny budget: checks the pipeline, not the claims")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False, help="progress bars")
    p.add_argument(
        "--out", type=Path, default=Path("docs/ablations.md"), help="the doc (default docs/ablations.md)"
    )
    p.add_argument("--img-dir", type=Path, default=None, help="the plots (default: img/ beside --out)")
    p.add_argument("--results", type=Path, default=Path("docs/results.md"), help="claim (g)'s tables")
    defaults = Budget()
    for field in dataclasses.fields(Budget):
        kind = int if isinstance(field.default, int) else str
        p.add_argument(
            "--" + field.name.replace("_", "-"),
            type=kind,
            default=None,
            help=f"budget: {field.name.replace('_', ' ')} (default {getattr(defaults, field.name)})",
        )
    p.set_defaults(run=cmd_ablate)


def cmd_ablate(args: argparse.Namespace) -> int:
    from rednet.ablation_doc import render
    from rednet.ablations import QUICK, Budget, run_all

    given = {
        f.name: getattr(args, f.name) for f in dataclasses.fields(Budget) if getattr(args, f.name) is not None
    }
    stored = args.runs / "budget.json"
    if args.from_runs:
        if given or args.quick:
            raise ValueError("--from-runs reads the budget stored with the runs: give no budget flags")
        if not stored.is_file():
            raise ValueError(f"{stored}: not found; train the runs first (rednet ablate --runs {args.runs})")
        budget = Budget(**json.loads(stored.read_text()))
    else:
        budget = dataclasses.replace(QUICK if args.quick else Budget(), **given)
        run_all(
            budget,
            args.runs,
            progress=args.progress,
            command=_command_line(args.argv),
            say=lambda message: print(message, file=sys.stderr, flush=True),
        )
    written = render(budget, args.runs, args.out, img_dir=args.img_dir, results=args.results)
    for path in written:
        print(path)
    return 0


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags stay None so that they do not override the TOML file."""
    import dataclasses as dc
    import typing

    from rednet.train_config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    doc = TrainConfig.__doc__ or ""
    for field in dc.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        match = re.search(rf"^\s+{field.name}(?:, [\w, ]+)?: (.+)$", doc, flags=re.MULTILINE)
        helptext = f"{match.group(1) if match else ''} (default {field.default})".replace("%", "%%")
        kind = hints[field.name]
        if kind is bool:
            p.add_argument(
                flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=helptext
            )
        else:
            base = int if kind is int else float if kind is float else str
            p.add_argument(flag, dest=field.name, type=base, default=None, help=helptext)


def cmd_train(args: argparse.Namespace) -> int:
    import dataclasses as dc

    from rednet.train import train
    from rednet.train_config import TrainConfig

    values = {}
    if args.config is not None:
        values = dc.asdict(TrainConfig.from_toml(args.config))
    for field in dc.fields(TrainConfig):
        if getattr(args, field.name) is not None:
            values[field.name] = getattr(args, field.name)
    if args.resume is not None:
        if set(values) - {"threads", "workers"} or args.init is not None:
            raise ValueError(
                "--resume continues a run with its stored options; only --threads and --workers may change"
            )
        run_dir = train(
            TrainConfig(**values),
            args.resume,
            resume=True,
            progress=args.progress,
            stop_at_time=args.deadline,
        )
    else:
        config = TrainConfig.from_dict(values)
        run_dir = (
            args.run_dir or Path("runs") / f"{config.task.replace(',', '+')}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        if (run_dir / "last.pt").exists():
            raise ValueError(f"{run_dir} already holds a run; continue it with --resume {run_dir}")
        run_dir = train(
            config,
            run_dir,
            init=args.init,
            progress=args.progress,
            command=_command_line(args.argv),
            stop_at_time=args.deadline,
        )
    print(f"run folder: {run_dir}", file=sys.stderr)
    return 0


def _command_line(argv: list[str]) -> str:
    """The command that started this run, as a user would type it again."""
    import os
    import shlex

    prefix = "rednet"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        prefix = f"torchrun --nproc_per_node {os.environ.get('LOCAL_WORLD_SIZE', '?')} -m rednet"
    return " ".join([prefix, *(shlex.quote(a) for a in argv)])


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


def cmd_export(args: argparse.Namespace) -> int:
    if str(args.run_dir) == "onnx" and not args.run_dir.is_dir():
        from rednet.onnx import export_onnx
        from rednet.zoo import load_weights

        if args.weights is None:
            raise ValueError("rednet export onnx needs --weights FILE.safetensors")
        if args.output.exists() and not args.overwrite:
            raise FileExistsError(f"{args.output}: already exists; pass --overwrite to replace it")
        model, card = load_weights(args.weights)
        out = export_onnx(model, args.output, opset=args.opset, card=card)
        print(f"wrote {out}", file=sys.stderr)
        return 0
    from rednet.export import export_run

    out = export_run(args.run_dir, args.output, checkpoint=args.checkpoint, overwrite=args.overwrite)
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from rednet.plots import plot_run

    out = plot_run(args.run_dir, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_report_runs(args: argparse.Namespace) -> int:
    from rednet.run_tables import render_runs_table

    missing = [
        d for d in args.run_dirs if not (d / "config.json").is_file() or not (d / "log.jsonl").is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: not a training run folder (needs config.json and log.jsonl)")
    print(render_runs_table(args.run_dirs))
    return 0


def cmd_report_regenerate(args: argparse.Namespace) -> int:
    from rednet.report import section_commands

    if not args.output.is_file():
        raise FileNotFoundError(f"{args.output}: no such file to regenerate")
    commands = section_commands(args.output.read_text())
    if not commands:
        raise ValueError(f"{args.output}: no section made by `rednet report` in it")
    for name, command in commands:
        print(f"{name}: {command}", file=sys.stderr)
        argv = shlex.split(command)[1:] + ["-o", str(args.output)]
        code = main(argv if args.progress else [*argv, "--no-progress"])
        if code:
            return code
    return 0


def cmd_report_infer(args: argparse.Namespace) -> int:
    from rednet.run_tables import render_infer_table

    try:
        result = json.loads(args.bench_json.read_text())
        table = render_infer_table(result)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        reason = f"{type(e).__name__}: {e}"
        raise ValueError(f"{args.bench_json}: not the JSON of rednet bench infer ({reason})") from e
    print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rednet import __version__
    from rednet.report import (
        DenoiseReport,
        TaskReport,
        render_denoise_report,
        render_task_report,
        run_denoise_report,
        run_task_report,
        write_section,
        write_text_atomic,
    )
    from rednet.report_classic import ClassicReport, render_classic_report, run_classic_report
    from rednet.train import hardware

    def names(text: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip())

    def integers(flag: str) -> tuple[int, ...]:
        text = getattr(args, flag)
        if not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", text):
            raise ValueError(f"--{flag} takes comma-separated whole numbers, got {text!r}")
        return tuple(int(v) for v in names(text))

    common = {
        "methods": names(args.methods),
        "limit": args.limit,
        "ensemble_datasets": names(args.ensemble_datasets) if args.ensemble_datasets else None,
        "bf16": args.bf16,
        "data_root": args.data_root,
    }
    if args.what in ("deblur", "inpaint"):
        if args.ensemble_datasets:
            raise ValueError(f"rednet report {args.what} has no self-ensemble rows")
        del common["ensemble_datasets"]
        tune = {"tune_images": args.tune_images} if args.what == "deblur" else {}
        report = ClassicReport(
            task=args.what, datasets=names(args.datasets), settings=names(args.settings), **tune, **common
        )
        run, render = run_classic_report, render_classic_report
    elif args.what == "denoise":
        report = DenoiseReport(datasets=names(args.datasets), sigmas=integers("sigmas"), **common)
        run, render = run_denoise_report, render_denoise_report
    else:
        report = TaskReport(
            task=args.what,
            datasets=names(args.datasets),
            levels=integers("scales" if args.what == "sr" else "qualities"),
            color_datasets=names(getattr(args, "color_datasets", "")),
            **common,
        )
        run, render = run_task_report, render_task_report
    command = [f"rednet report {args.what}"]
    for flag, default in REPORT_DEFAULTS[args.what].items():
        if getattr(args, flag) != default:
            command.append(f"--{flag.replace('_', '-')} {shlex.quote(getattr(args, flag))}")
    if args.limit is not None:
        command.append(f"--limit {args.limit}")
    if getattr(args, "tune_images", 4) != 4:
        command.append(f"--tune-images {args.tune_images}")
    if args.ensemble_datasets:
        command.append(f"--ensemble-datasets {args.ensemble_datasets}")
    if args.bf16:
        command.append("--bf16")
    if args.jobs > 1:
        command.append(f"--jobs {args.jobs}")
    section = args.section or args.what
    if not re.fullmatch(r"[\w-]+", section):
        raise ValueError(f"--section takes letters, digits, '_' and '-', got {section!r}")
    if section != args.what:
        command.append(f"--section {section}")
    records = run(report, jobs=args.jobs, progress=args.progress)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    workers = (
        f", cells measured by {args.jobs} processes of {threads} thread(s) each" if args.jobs > 1 else ""
    )
    header = (
        f"Generated by `{' '.join(command)}` (rednet {__version__}, torch {torch.__version__}) on "
        f"{hardware(torch.device('cpu'))}{workers}. "
        "Do not edit by hand: rerun the command to regenerate this section."
    )
    out = write_section(args.output, section, render(records, report, header))
    if args.json:
        write_text_atomic(args.json, json.dumps(records, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _eval_config(args: argparse.Namespace, **extra):
    from rednet.evaluate import EvalConfig

    return EvalConfig(
        task=args.task,
        sigma=args.sigma,
        scale=args.scale,
        quality=args.quality,
        kernel=args.kernel,
        mask=args.mask,
        **extra,
    )


def cmd_degrade(args: argparse.Namespace) -> int:
    from rednet import io
    from rednet.tasks import task_named

    _eval_config(args, dataset=".")  # validates the task's level flags
    task = task_named(args.task)
    saves_mask = task.masks and args.save_mask is not None
    targets = [args.output, *([args.save_mask] if saves_mask else [])]
    _check_targets([(args.input, t) for t in targets], [args.input])
    existing = _existing(targets)
    if existing and not args.overwrite:
        raise FileExistsError(f"{existing[0]}: already exists; pass --overwrite to replace it")
    x, info = io.read_image(args.input)
    level = task.level_of(args)
    # What a user would have: for SR the small image, which `rednet restore --task sr` takes back up.
    degraded = task.degrade_file(x, level, generator=np.random.default_rng(args.seed))
    alpha = None if info.alpha is None else task.shrink(info.alpha, level).clamp(0, 1)
    info = dataclasses.replace(info, alpha=alpha)
    out = io.write_image(
        args.output, degraded.degraded.clamp(0, 1), info, overwrite=args.overwrite, protect=[args.input]
    )
    if degraded.mask is not None and args.save_mask is not None:
        io.write_image(args.save_mask, 1 - degraded.mask, overwrite=args.overwrite, protect=[args.input, out])
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _expand_inputs(inputs: list[str]) -> dict[Path, Path]:
    """Files, folders (their images, sorted) and glob patterns -> {image path: its path below its root},
    first occurrence kept. The root of a folder is the folder, of a file its parent, of a glob pattern its
    fixed part (``d`` in ``d/**/*.png``), so that outputs can mirror the folders below it."""
    import glob

    from rednet.data import list_images

    def magic(part: str) -> bool:
        return any(ch in part for ch in "*?[")

    paths: dict[Path, Path] = {}
    for item in inputs:
        if magic(item) and not Path(item).exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{item}: no file matches this pattern")
            fixed = list(itertools.takewhile(lambda part: not magic(part), Path(item).parts))
            root = Path(*fixed) if fixed else Path(".")
            for m in matches:
                if not Path(m).is_dir():
                    paths.setdefault(Path(m), Path(os.path.relpath(m, root)))
        elif Path(item).is_dir():
            for path in list_images(item):
                paths.setdefault(path, Path(path.name))
        else:
            paths.setdefault(Path(item), Path(Path(item).name))  # a bad path is reported when it is read
    return paths


def _existing(targets: list[Path]) -> list[Path]:
    """The targets that exist (a dangling link counts: writing would replace it)."""
    return [t for t in targets if t.exists() or t.is_symlink()]


def _check_targets(pairs: list[tuple[Path, Path]], protected: list[Path]) -> None:
    """Refuse, before any work, (input, output) pairs whose output is also another pair's output, or is one
    of the ``protected`` files (the inputs: same file through any spelling, link or hard link)."""
    from rednet import io

    writers: dict[str, Path] = {}
    for source, target in pairs:
        key = os.path.normcase(os.path.abspath(target))
        if key in writers:  # two inputs, or one input's output and its mask
            raise ValueError(
                f"{target}: both {writers[key]} and {source} would be restored to this file; "
                "restore them in separate runs or to separate folders"
            )
        writers[key] = source

    def inode(path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:  # missing (an input is then reported when read; an output is new)
            return None
        return st.st_dev, st.st_ino

    inputs = {inode(path) for path in protected} - {None}
    for _, target in pairs:
        if inode(target) in inputs:
            raise FileExistsError(io.input_message(target))


def _blind_inpainting(args: argparse.Namespace) -> bool:
    """Whether ``restore`` inpaints without being told where the damage is (and so finds it first)."""
    from rednet.tasks import task_named

    return task_named(args.task).masks and args.mask is None and not (args.model or args.weights or args.fast)


def _restore_model(args: argparse.Namespace, channels: int, device: torch.device):
    """(model, detector): the model that restores, and for blind inpainting in two steps the damage model
    whose mask it fills (None otherwise)."""
    from rednet import pipeline, zoo
    from rednet.tasks import task_named

    if args.weights is not None:
        if args.model or args.fast:
            raise ValueError("--weights picks the model itself; leave out --model and --fast")
        model = zoo.load(args.weights, device=device)
        if model.config.output != "image":
            raise ValueError(f"{args.weights} finds damage, it does not restore")
        return model, None
    choice = pipeline.choose_models(
        task_named(args.task),
        channels,
        model=args.model,
        fast=args.fast,
        kernel=args.kernel,
        masked=args.mask is not None,
    )
    detector = None if choice.detector is None else zoo.load(choice.detector, device=device)
    name = choice.model
    model = zoo.load(name, device=device)
    if model.card.get("task", args.task).split(",")[0] != args.task:
        raise ValueError(f"model {name} restores {model.card.get('task')}, not {args.task}")
    if model.config.output != "image":
        raise ValueError(
            f"model {name} finds damage, it does not restore; use --task inpaint without --model"
        )
    return model, detector


def cmd_restore(args: argparse.Namespace) -> int:
    import os

    import torch.distributed as dist

    from rednet import io, pipeline, zoo
    from rednet.tasks import task_named

    task = task_named(args.task)
    if task.restore_level.required and getattr(args, task.level) is None:
        raise ValueError(f"task {task.name!r} needs --{task.level} (the factor to enlarge by)")
    if args.mask is not None and not task.masks:
        raise ValueError("--mask is for --task inpaint")
    if args.kernel is not None and not task.uses_kernel:
        raise ValueError("--kernel is for --task deblur")
    if args.save_mask is not None and not _blind_inpainting(args):
        raise ValueError(
            "--save-mask writes the damage that blind inpainting finds: --task inpaint without --mask, "
            "--model, --weights or --fast"
        )
    if args.save_mask is not None and zoo.detect_and_fill() is None:
        raise ValueError("--save-mask needs the damage model (inpaint-detect), which is not installed")
    below = _expand_inputs(args.inputs)
    files = list(below)
    if args.mask is not None:
        io.read_mask(args.mask)  # a bad mask stops here, before any work
    if args.weights is not None:
        zoo.verify_weights(args.weights)  # so does a damaged weights file
    single = len(files) == 1 and io.is_image_file(args.output) and not args.output.is_dir()
    one_mask = len(files) == 1 and io.is_image_file(args.save_mask or "") and not args.save_mask.is_dir()
    for flag, path in (("", args.output), ("--save-mask ", args.save_mask)):
        if path is not None and len(files) > 1 and io.is_image_file(path):
            raise ValueError(f"{flag}{path}: several inputs need a folder, not a file name")
    plan = []  # (input, output, found mask or None), every path known before any model loads
    for path, rel in below.items():
        found = None
        if args.save_mask is not None:
            found = args.save_mask if one_mask else args.save_mask / rel.parent / f"{rel.stem}-mask.png"
        plan.append((path, args.output if single else args.output / rel, found))
    pairs = [(path, t) for path, out, found in plan for t in (out, found) if t is not None]
    _check_targets(pairs, [*files, *([args.mask] if args.mask is not None else [])])
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    mine = plan[rank::world]
    targets = [t for _, out, found in mine for t in (out, found) if t is not None]
    existing = _existing(targets)
    if existing and not (args.overwrite or args.skip_existing):
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise FileExistsError(
            f"{existing[0]}: already exists{more}; pass --overwrite to replace or --skip-existing to keep"
        )
    io.remove_stale_temps(targets)  # left by a run killed while writing these outputs

    def kept(target: Path | None) -> bool:
        """Whether --skip-existing keeps this output as it is (a mask counts as kept when not asked for)."""
        return target is None or (args.skip_existing and bool(_existing([target])))

    want_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if want_cuda else torch.device("cpu")
    )
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    bf16 = native_bf16(device) if args.bf16 is None else args.bf16
    models: dict[int, tuple] = {}
    results = []
    for path, out, found in mine:
        record = {"input": str(path), "rank": rank}
        start = time.perf_counter()
        if kept(out) and kept(found):
            record.update(output=str(out), skipped=True, seconds=0.0)
            results.append(record)
            if not args.json:
                print(f"{path}: skipped, {out} exists", file=sys.stderr)
            continue
        try:
            x, info = io.read_image(path)
            channels = x.shape[1]
            if channels not in models:
                models[channels] = _restore_model(args, channels, device)
            model, detector = models[channels]
            # (--mask is for inpainting, whose input the pre-restore step leaves as it is)
            mask = None if args.mask is None else io.read_mask(args.mask, size=x.shape[-2:])

            def save_damage(damage: torch.Tensor, found: Path | None = found, record: dict = record) -> None:
                if found is not None:
                    if not kept(found):  # with --skip-existing, a mask written before a kill stays
                        io.write_image(found, 1 - damage, overwrite=args.overwrite, protect=files)
                    record["mask"] = str(found)

            restored = pipeline.restore_image(
                model,
                x,
                info,
                task,
                getattr(args, task.level),
                detector=detector,
                mask=mask,
                tile=args.tile or "auto",
                ensemble=args.ensemble,
                bf16=bf16,
                on_damage=save_damage,
            )
            y = restored.image
            if not kept(out):
                io.write_image(out, y, restored.info, overwrite=args.overwrite, protect=files)
            record.update(
                output=str(out),
                model=model.card.get("name")
                if detector is None
                else f"{detector.card.get('name')} + {model.card.get('name')}",
                megapixels=y.shape[-1] * y.shape[-2] / 1e6,
            )
        except (OSError, ValueError) as e:
            if not isinstance(e, (FileNotFoundError, FileExistsError)) and not str(e).startswith(str(path)):
                e = ValueError(f"{path}: {e}")
            record["error"] = str(e).splitlines()[0]
            print(f"rednet: error: {record['error']}", file=sys.stderr)
        record["seconds"] = time.perf_counter() - start
        results.append(record)
        if "output" in record and not args.json:
            print(f"{path} -> {record['output']} ({record['seconds']:.1f} s)", file=sys.stderr)
    if world > 1:
        gathered: list[list[dict]] = [[] for _ in range(world)]
        dist.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
        dist.destroy_process_group()  # a live gloo group aborts the process at exit
    failed = [r for r in results if "error" in r]
    skipped = [r for r in results if r.get("skipped")]
    if rank == 0:
        summary = {
            "files": len(results),
            "restored": len(results) - len(failed) - len(skipped),
            "skipped": len(skipped),
            "failed": len(failed),
            "processes": world,
            "bf16": bf16,
            "device": str(device),
            **({"sigma": args.sigma, "sigma_used": False} if task.level == "sigma" else {}),
            "results": results,
        }
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(
                f"restored {summary['restored']} of {summary['files']} file(s)"
                + (f"; {len(skipped)} skipped (outputs exist)" if skipped else "")
                + (f"; {len(failed)} failed" if failed else ""),
                file=sys.stderr,
            )
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rednet.evaluate import evaluate

    config = _eval_config(
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


def cmd_models(args: argparse.Namespace) -> int:
    from rednet import zoo

    rows = []
    for name, entry in zoo.WEIGHTS.items():
        path = zoo.WEIGHTS_DIR / entry.file
        rows.append(
            {
                "name": name,
                "task": entry.task,
                "channels": entry.channels,
                "fast": entry.fast,
                "bytes": path.stat().st_size if path.is_file() else None,
                "card": zoo.read_card(name),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no shipped models yet: train one (rednet train) and use it with --weights FILE.safetensors")
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        size = f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] else "missing"
        print(f"{r['name']:<{width}} {r['task']:<8} {size:>7}  {zoo.card_summary(r['card'])}")
    return 0


def demo_image() -> torch.Tensor:
    """The built-in sample: scikit-image's astronaut (512x512 RGB), (1, 3, H, W) float32 in [0, 1]."""
    from skimage import data

    from rednet.io import array_to_tensor

    return array_to_tensor(data.astronaut())


def cmd_demo(args: argparse.Namespace) -> int:
    from rednet import baselines, degrade, io, zoo
    from rednet.infer import restore
    from rednet.metrics import psnr

    clean = demo_image()
    noisy = degrade.gaussian_noise(clean, args.sigma, generator=np.random.default_rng(0))
    name = args.model or zoo.default_model("denoise", channels=3)
    model = zoo.load(name)
    start = time.perf_counter()
    restored = degrade.quantize(restore(model, noisy))
    seconds = time.perf_counter() - start
    noisy_q = degrade.quantize(noisy)
    before, after = float(psnr(noisy_q, clean)[0]), float(psnr(restored, clean)[0])
    gap = torch.ones(1, 3, clean.shape[2], 8)
    out = io.write_image(args.output, torch.cat([noisy_q, gap, restored], dim=3), overwrite=True)
    result = {
        "image": "skimage.data.astronaut",
        "size": list(clean.shape[2:]),
        "sigma": args.sigma,
        "model": name,
        "psnr_noisy": before,
        "psnr_restored": after,
        "gain_db": after - before,
        "seconds": seconds,
        "output": str(out),
    }
    if args.bm3d:
        start = time.perf_counter()
        peer = degrade.quantize(baselines.bm3d(noisy, args.sigma))
        result |= {"psnr_bm3d": float(psnr(peer, clean)[0]), "seconds_bm3d": time.perf_counter() - start}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"astronaut 512x512, Gaussian noise sigma={args.sigma:g}: noisy {before:.2f} dB -> "
            f"rednet {name} {after:.2f} dB (+{after - before:.2f} dB) in {seconds:.1f} s"
        )
        if args.bm3d:
            print(
                f"BM3D (knowing sigma) on the same input: {result['psnr_bm3d']:.2f} dB "
                f"in {result['seconds_bm3d']:.1f} s"
            )
        print(f"wrote {out} (left: noisy, right: restored)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    for module in ("fastapi", "uvicorn", "multipart", "fastapi_offline"):
        require(module, "web", "rednet serve")
    from rednet import bench_serve, web

    settings = web.ServeSettings(
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        queue_size=args.queue,
        workers=args.workers,
        threads=args.threads,
        tile=args.tile,
        bf16=args.bf16,
        device=args.device,
        allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None,
    )
    if not args.bench:
        web.serve(settings)
        return 0
    server_args = [
        f"--{flag}={value}"
        for flag, value, default in [
            ("max-upload-mb", args.max_upload_mb, 32.0),
            ("max-megapixels", args.max_megapixels, 16.0),
            ("queue", args.queue, 4),
            ("workers", args.workers, 1),
            ("threads", args.threads, None),
            ("tile", args.tile, 512),
            ("device", args.device, "auto"),
        ]
        if value != default
    ]
    if args.bf16 is not None:
        server_args.append("--bf16" if args.bf16 else "--no-bf16")
    result = bench_serve.bench_serve(
        requests=args.requests,
        concurrency=args.concurrency,
        size=args.size,
        channels=args.channels,
        server_args=tuple(server_args),
    )
    print(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from rednet.infer import reuse_freed_memory

    if os.environ.get("REDNET_REUSE_FREED_MEMORY", "1") != "0":
        reuse_freed_memory()  # faster big-image passes where page faults are dear (see its docstring)
    try:
        return args.run(args)
    except (OSError, ValueError, MissingExtraError) as e:
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    except KeyboardInterrupt:
        msg = "interrupted"
    print(f"rednet: error: {msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
