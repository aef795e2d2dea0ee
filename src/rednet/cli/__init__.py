"""The ``rednet`` command line: degrade, restore, eval, train, export, plot, bench, demo, serve.

Expected failures (bad input, missing data, bad arguments) print one line ``rednet: error: ...`` on stderr and
exit 1; ``--debug`` re-raises instead. Anything else is a bug and keeps its traceback.

Layout: one module per command (or family of commands), each with ``add_parser(sub)``, which adds its
subparser and sets ``run`` to its ``cmd_*`` function, and the ``cmd_*`` functions themselves; ``flags``
holds the flag helpers shared by several commands, ``targets`` the output checks shared by degrade and
restore. ``build_parser`` calls the ``add_parser`` of each module in ``COMMANDS``' order, the order of
``rednet --help``.

``main`` parses the command line and calls ``args.run(args)``. Before that it sets two fields of ``args``:
``args.argv``, the arguments as given (for the command lines that runs record), and ``args.main``, ``main``
itself, for the commands that run a command line again (``report regenerate``, ``report reliability``,
``fuzz --restore``): they call ``args.main(argv)`` rather than import this package, which imports them.
"""

from __future__ import annotations

import argparse
import os
import sys

from rednet import __version__
from rednet.cli import (
    ablate,
    bench,
    campaign,
    degrade,
    demo,
    evaluate,
    export,
    fuzz,
    kill_trials,
    models,
    plot,
    report,
    restore,
    serve,
    train,
)
from rednet.extras import MissingExtraError

COMMANDS = (
    degrade,
    restore,
    evaluate,
    train,
    export,
    plot,
    report,
    bench,
    models,
    demo,
    serve,
    campaign,
    fuzz,
    kill_trials,
    ablate,
)
"""The command modules, in the order ``rednet --help`` lists their commands (fuzz adds fuzz-api and fuzz)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rednet", description="Restore damaged images with RED-Net (Mao, Shen and Yang, NIPS 2016)."
    )
    parser.add_argument("--version", action="version", version=f"rednet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.main = main  # for the commands that run a command line again (see the module's docstring)
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
