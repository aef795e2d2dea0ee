"""``rednet degrade``: corrupt an image as a task does."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from rednet.cli.flags import add_level_flags, eval_config
from rednet.cli.targets import check_targets, existing_paths


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet degrade IN -o OUT``."""
    p = sub.add_parser("degrade", help="corrupt an image (noise, low resolution, JPEG, blur, missing pixels)")
    add_level_flags(p)
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


def cmd_degrade(args: argparse.Namespace) -> int:
    from rednet import io
    from rednet.tasks import task_named

    eval_config(args, dataset=".")  # validates the task's level flags
    task = task_named(args.task)
    saves_mask = task.masks and args.save_mask is not None
    targets = [args.output, *([args.save_mask] if saves_mask else [])]
    check_targets([(args.input, t) for t in targets], [args.input])
    existing = existing_paths(targets)
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
        io.write_image(args.save_mask, degraded.mask, overwrite=args.overwrite, protect=[args.input, out])
    print(f"wrote {out}", file=sys.stderr)
    return 0
