"""``rednet fuzz-api`` and ``rednet fuzz``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rednet.extras import require


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet fuzz-api`` and ``rednet fuzz``, in this order."""
    _add_fuzz_api_parser(sub)
    _add_fuzz_parser(sub)


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
    target = FuzzTarget(command=args.main if args.restore else None, max_pixels=limit)
    result = run_fuzz(
        args.cases, args.seed, target, time_limit=args.time_limit, failures_dir=args.save_failures
    )
    print(json.dumps(result, indent=2))
    return 1 if result["unexpected"] else 0
