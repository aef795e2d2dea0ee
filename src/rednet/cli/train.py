"""``rednet train``."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from rednet.cli.flags import Renamed, command_line


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet train``."""
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
    p.add_argument("--mask", action=Renamed, new="--damage", help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_train)


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags stay None so that they do not override the TOML file."""
    import dataclasses as dc
    import typing

    from rednet.train_config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    doc = TrainConfig.__doc__ or ""
    for field in dc.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        # the field's whole entry in the Attributes list: its line and the deeper-indented ones after it
        match = re.search(rf"^( +){field.name}(?:, [\w, ]+)?: (.+(?:\n\1 +\S.*)*)", doc, flags=re.MULTILINE)
        entry = " ".join(match.group(2).split()) if match else ""
        helptext = f"{entry} (default {field.default})".replace("%", "%%")
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
            command=command_line(args.argv),
            stop_at_time=args.deadline,
        )
    print(f"run folder: {run_dir}", file=sys.stderr)
    return 0
