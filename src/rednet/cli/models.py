"""``rednet models``."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet models``."""
    p = sub.add_parser("models", help="list the shipped models (name, task, levels, size, card summary)")
    p.add_argument("--json", action="store_true", help="print the model cards as JSON")
    p.set_defaults(run=cmd_models)


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
