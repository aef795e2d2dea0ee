"""``rednet ablate``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rednet.cli.flags import command_line


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet ablate``, with one flag per Budget field."""
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
            command=command_line(args.argv),
            say=lambda message: print(message, file=sys.stderr, flush=True),
        )
    written = render(budget, args.runs, args.out, img_dir=args.img_dir, results=args.results)
    for path in written:
        print(path)
    return 0
