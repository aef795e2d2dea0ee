"""What several commands share: the task and level flags (degrade, restore, eval), the level flags as an
EvalConfig (degrade, eval) and the command line a run records (train, campaign, ablate)."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from rednet.tasks import TASK_NAMES

TASK_HELP = (
    "denoise (--sigma), sr (--scale), jpeg (--quality), deblur (--kernel [--sigma]), inpaint (--damage)"
)


class Renamed(argparse.Action):
    """A flag that was renamed: using it is a one-line error naming the new flag (a command line recorded
    before the rename, in a model card say, tells its reader what to type instead)."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(f"{option_string} is now {self.new} (a mask is a per-pixel damage map)")


def add_level_flags(p: argparse.ArgumentParser, *, mask_file: bool = False) -> None:
    """--task and each task's level flags; ``mask_file``: restore's --kernel and --mask (a mask file)."""
    if mask_file:  # restore: no task = a model for any damage (zoo.ANY_TASK), as it is, no enlargement
        help = f"{TASK_HELP}; leave it out for a model that restores any damage (--model restore-any)"
        p.add_argument("--task", choices=list(TASK_NAMES), help=help)
    else:
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
            "--damage",
            help="inpainting's damage: 'text', 'decoys' (text over an image given text of its own), 'framed' "
            "(text over an image given a frame of its own) or a pixel-loss rate such as 0.5",
        )
        p.add_argument("--mask", action=Renamed, new="--damage", help=argparse.SUPPRESS)


def command_line(argv: list[str]) -> str:
    """The command that started this run, as a user would type it again."""
    prefix = "rednet"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        prefix = f"torchrun --nproc_per_node {os.environ.get('LOCAL_WORLD_SIZE', '?')} -m rednet"
    return " ".join([prefix, *(shlex.quote(a) for a in argv)])


def eval_config(args: argparse.Namespace, **extra):
    """The EvalConfig of the task and level flags (which it checks) and ``extra``."""
    from rednet.evaluate import EvalConfig

    return EvalConfig(
        task=args.task,
        sigma=args.sigma,
        scale=args.scale,
        quality=args.quality,
        kernel=args.kernel,
        damage=args.damage,
        **extra,
    )


def add_device_flags(p: argparse.ArgumentParser) -> None:
    """--device and --bf16 of the commands that run a model (restore, serve)."""
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if present"
    )
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: on for GPUs and CPUs with native bf16)",
    )
