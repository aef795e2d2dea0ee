"""``rednet kill-trials``."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet kill-trials train|restore``."""
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
