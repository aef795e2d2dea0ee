"""``rednet plot``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet plot RUN_DIR``."""
    p = sub.add_parser("plot", help="draw a run's loss and validation-PSNR curves to a PNG")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="training run folder")
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default RUN_DIR/curves.png)")
    p.set_defaults(run=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from rednet.plots import plot_run

    out = plot_run(args.run_dir, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return 0
