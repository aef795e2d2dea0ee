"""``rednet report ...``: the result tables of docs/results.md (denoise, sr, jpeg, deblur, inpaint),
``runs`` and ``infer`` tables, ``regenerate`` (reruns every section's command) and ``reliability``
(docs/reliability.md)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
from pathlib import Path

import torch

from rednet import __version__
from rednet.extras import require

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


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet report WHAT``."""
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
    _add_report_fast_parser(rep)
    _add_report_any_parser(rep)


FAST_DEFAULTS = {"datasets": "BSD68,CBSD68,Set5,Set14", "size": 512, "rounds": 5}
"""``rednet report fast``'s defaults; its command line names the options that differ."""


def _add_report_fast_parser(rep: argparse._SubParsersAction) -> None:
    r = rep.add_parser(
        "fast", help="each shipped fast (strided) model against its full model: PSNR cost and speed-up"
    )
    r.add_argument("--datasets", default=FAST_DEFAULTS["datasets"], help="comma-separated test sets")
    r.add_argument("--levels", help="levels of every table, comma-separated (default: each task's own)")
    r.add_argument("--size", type=int, default=FAST_DEFAULTS["size"], help="side of the timing photo (px)")
    r.add_argument("--rounds", type=int, default=FAST_DEFAULTS["rounds"], help="timed rounds per model")
    _add_model_report_options(r)
    r.set_defaults(run=cmd_report_fast)


def _add_model_report_options(r: argparse.ArgumentParser) -> None:
    """The options ``report fast`` and ``report any`` share: which images, how, and where it goes."""
    r.add_argument("--limit", type=int, help="only the first N images of each set")
    r.add_argument("--jobs", type=int, default=1, help="cells measured at once, one process each (default 1)")
    r.add_argument("--bf16", action="store_true", help="score every model in bfloat16 (default fp32)")
    r.add_argument("--data-root", help="where the sets live (default $REDNET_DATA or ../shared/datasets)")
    r.add_argument("-o", "--output", type=Path, default=Path("docs/results.md"), help="file of the section")
    r.add_argument("--json", type=Path, help="also write the measured records as JSON")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")


def _publish(args: argparse.Namespace, name: str, command: list[str], render, result: dict) -> int:
    """Write report ``name``'s section (``render(header)``) and its JSON; ``command`` gets the shared
    options that differ from their defaults."""
    from rednet.report import write_section, write_text_atomic
    from rednet.train import hardware

    command = [
        *command,
        *(["--bf16"] if args.bf16 else []),
        *([f"--jobs {args.jobs}"] if args.jobs > 1 else []),
    ]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    header = (
        f"Generated by `{' '.join(command)}` (rednet {__version__}, torch {torch.__version__}) on "
        f"{hardware(torch.device('cpu'))}; cells scored by {args.jobs} process(es) of {threads} thread(s)"
        + (f", timed in one process of {torch.get_num_threads()} thread(s)" if "timings" in result else "")
        + ". Do not edit by hand: rerun the command to regenerate this section."
    )
    out = write_section(args.output, name, render(header))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_report_fast(args: argparse.Namespace) -> int:
    from rednet.fast_report import FastReport, render_fast_report, run_fast_report

    levels = None
    if args.levels:
        if not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", args.levels):
            raise ValueError(f"--levels takes comma-separated whole numbers, got {args.levels!r}")
        levels = tuple(int(v) for v in args.levels.split(","))
    report = FastReport(
        datasets=tuple(d.strip() for d in args.datasets.split(",") if d.strip()),
        limit=args.limit,
        levels=levels,
        size=args.size,
        rounds=args.rounds,
        bf16=args.bf16,
        data_root=args.data_root,
    )
    command = ["rednet report fast"]
    command += [f"--{k} {getattr(args, k)}" for k, v in FAST_DEFAULTS.items() if getattr(args, k) != v]
    command += [f"--{k} {getattr(args, k)}" for k in ("levels", "limit") if getattr(args, k) is not None]
    result = run_fast_report(report, jobs=args.jobs, progress=args.progress)
    return _publish(args, "fast", command, lambda header: render_fast_report(result, report, header), result)


def _add_report_any_parser(rep: argparse._SubParsersAction) -> None:
    r = rep.add_parser(
        "any", help="the all-corruption model against each task's own model: the PSNR cost per task"
    )
    r.add_argument("--model", help="the all-corruption model (default: the shipped one)")
    r.add_argument("--tasks", help="only these tasks' tables, comma-separated (default: all)")
    _add_model_report_options(r)
    r.set_defaults(run=cmd_report_any)


def cmd_report_any(args: argparse.Namespace) -> int:
    from rednet.any_report import AnyReport, render_any_report, run_any_report

    report = AnyReport(
        model=args.model,
        tasks=tuple(t.strip() for t in (args.tasks or "").split(",") if t.strip()),
        limit=args.limit,
        bf16=args.bf16,
        data_root=args.data_root,
    )
    command = ["rednet report any"]
    command += [
        f"--{k} {getattr(args, k)}" for k in ("model", "tasks", "limit") if getattr(args, k) is not None
    ]
    result = run_any_report(report, jobs=args.jobs, progress=args.progress)
    return _publish(args, "any", command, lambda header: render_any_report(result, report, header), result)


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
    results = run_reliability(run, args.main)
    header = (
        f"Generated by `{command_line(run)}` (rednet {__version__}, torch {torch.__version__}) on "
        f"{hardware(torch.device('cpu'))}. Do not edit by hand: rerun the command to regenerate this page."
    )
    out = write_text_atomic(args.output, render_reliability(results, header))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
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
        code = args.main(argv if args.progress else [*argv, "--no-progress"])
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
