"""``rednet restore``: files, folders or globs, planned and checked before any model loads, then restored
one by one through rednet.pipeline (several processes with torchrun)."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch

from rednet.cli.flags import add_device_flags, add_level_flags
from rednet.cli.targets import check_targets, existing_paths
from rednet.devices import choose_device, init_process_group, use_bf16
from rednet.tasks import TASK_NAMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet restore IN... -o OUT``."""
    p = sub.add_parser("restore", help="restore image files with a RED-Net (files, folders or globs)")
    add_level_flags(p, mask_file=True)
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files, folders of images, or glob patterns")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output file (one input) or folder: outputs keep the input's name and format, and the folders "
        "below a folder or a glob's fixed part ('d/**/*.png' -o out/: d/a/x.png -> out/a/x.png)",
    )
    p.add_argument(
        "--save-mask",
        type=Path,
        metavar="MASK",
        help="blind inpainting: also write the damage found (white = damaged), to check, correct and give "
        "back with --mask: a PNG file for one input, else a folder (NAME-mask.png)",
    )
    p.add_argument("--model", help="shipped model name (rednet models); default: the task's model")
    p.add_argument("--weights", type=Path, help="weights file (.safetensors) from rednet export")
    p.add_argument("--ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)")
    p.add_argument("--fast", action="store_true", help="use the task's strided (fast) model")
    p.add_argument("--tile", type=int, help="tile side in pixels (default: 512 for images over 512x512)")
    add_device_flags(p)
    existing = p.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never the inputs)"
    )
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep existing outputs and skip their inputs (finish a set after an interruption)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object with every file's result")
    p.set_defaults(run=cmd_restore)


def _expand_inputs(inputs: list[str]) -> dict[Path, Path]:
    """Files, folders (their images, sorted) and glob patterns -> {image path: its path below its root},
    first occurrence kept. The root of a folder is the folder, of a file its parent, of a glob pattern its
    fixed part (``d`` in ``d/**/*.png``), so that outputs can mirror the folders below it."""
    import glob

    from rednet.data import list_images

    def magic(part: str) -> bool:
        return any(ch in part for ch in "*?[")

    paths: dict[Path, Path] = {}
    for item in inputs:
        if magic(item) and not Path(item).exists():
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{item}: no file matches this pattern")
            fixed = list(itertools.takewhile(lambda part: not magic(part), Path(item).parts))
            root = Path(*fixed) if fixed else Path(".")
            for m in matches:
                if not Path(m).is_dir():
                    paths.setdefault(Path(m), Path(os.path.relpath(m, root)))
        elif Path(item).is_dir():
            for path in list_images(item):
                paths.setdefault(path, Path(path.name))
        else:
            paths.setdefault(Path(item), Path(Path(item).name))  # a bad path is reported when it is read
    return paths


def _blind_inpainting(args: argparse.Namespace) -> bool:
    """Whether ``restore`` inpaints without being told where the damage is (and so finds it first)."""
    from rednet.tasks import task_named

    if args.task is None:
        return False
    return task_named(args.task).masks and args.mask is None and not (args.model or args.weights or args.fast)


def _restore_model(args: argparse.Namespace, channels: int, device: torch.device):
    """(model, detector): the model that restores, and for blind inpainting in two steps the damage model
    whose mask it fills (None otherwise)."""
    from rednet import pipeline, zoo
    from rednet.tasks import task_named

    if args.weights is not None:
        if args.model or args.fast:
            raise ValueError("--weights picks the model itself; leave out --model and --fast")
        model = zoo.load(args.weights, device=device)
        if model.config.output != "image":
            raise ValueError(f"{args.weights} finds damage, it does not restore")
        return model, None
    if args.task is None:  # _check_flags made sure that --model names a model for any damage
        choice = pipeline.Choice(args.model)
    else:
        choice = pipeline.choose_models(
            task_named(args.task),
            channels,
            model=args.model,
            fast=args.fast,
            kernel=args.kernel,
            masked=args.mask is not None,
        )
    detector = None if choice.detector is None else zoo.load(choice.detector, device=device)
    name = choice.model
    model = zoo.load(name, device=device)
    if args.task is not None and args.task not in (zoo.card_tasks(model.card) or [args.task]):
        raise ValueError(f"model {name} restores {model.card.get('task')}, not {args.task}")
    if model.config.output != "image":
        raise ValueError(
            f"model {name} finds damage, it does not restore; use --task inpaint without --model"
        )
    return model, detector


def cmd_restore(args: argparse.Namespace) -> int:
    """Check the flags, plan every output, then restore this process's share of the files (with torchrun,
    rank r of w takes every w-th file) and print the summary."""
    from rednet.tasks import task_named

    task = None if args.task is None else task_named(args.task)
    _check_flags(args, task)
    files, plan = _plan_outputs(args)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    mine = plan[rank::world]
    _check_existing(args, mine)
    device, bf16 = _choose_device(args, world)
    results = _restore_files(args, task, mine, files, rank=rank, device=device, bf16=bf16)
    if world > 1:
        results = _gather_results(results, world)
    if rank == 0:
        _print_summary(args, task, results, processes=world, device=device, bf16=bf16)
    return 1 if any("error" in r for r in results) else 0


def _check_flags(args: argparse.Namespace, task) -> None:
    """Refuse flags that do not go with the task, before any work; no task needs a model for any damage."""
    from rednet import zoo

    if task is None:
        anything = zoo.any_damage_models()
        if args.weights is None and (args.model not in anything or args.fast):
            hint = f", or --model {anything[0]} (one model for any damage)" if anything else ""
            raise ValueError(f"give --task ({', '.join(TASK_NAMES)}){hint}")
        for flag in ("scale", "mask", "kernel", "save_mask"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} goes with a --task")
        return
    if task.restore_level.required and getattr(args, task.level) is None:
        raise ValueError(f"task {task.name!r} needs --{task.level} (the factor to enlarge by)")
    if args.mask is not None and not task.masks:
        raise ValueError("--mask is for --task inpaint")
    if args.kernel is not None and not task.uses_kernel:
        raise ValueError("--kernel is for --task deblur")
    if args.save_mask is not None and not _blind_inpainting(args):
        raise ValueError(
            "--save-mask writes the damage that blind inpainting finds: --task inpaint without --mask, "
            "--model, --weights or --fast"
        )
    if args.save_mask is not None and zoo.detect_and_fill() is None:
        raise ValueError("--save-mask needs the damage model (inpaint-detect), which is not installed")


Plan = list[tuple[Path, Path, Path | None]]
"""(input, output, found mask or None) per input file."""


def _plan_outputs(args: argparse.Namespace) -> tuple[list[Path], Plan]:
    """(the input files, the plan): every input's output and found-mask paths, known and checked before any
    model loads (a bad mask or weights file stops here too)."""
    from rednet import io, zoo

    below = _expand_inputs(args.inputs)
    files = list(below)
    if args.mask is not None:
        io.read_mask(args.mask)  # a bad mask stops here, before any work
    if args.weights is not None:
        zoo.verify_weights(args.weights)  # so does a damaged weights file
    single = len(files) == 1 and io.is_image_file(args.output) and not args.output.is_dir()
    one_mask = len(files) == 1 and io.is_image_file(args.save_mask or "") and not args.save_mask.is_dir()
    for flag, path in (("", args.output), ("--save-mask ", args.save_mask)):
        if path is not None and len(files) > 1 and io.is_image_file(path):
            raise ValueError(f"{flag}{path}: several inputs need a folder, not a file name")
    plan = []  # (input, output, found mask or None), every path known before any model loads
    for path, rel in below.items():
        found = None
        if args.save_mask is not None:
            found = args.save_mask if one_mask else args.save_mask / rel.parent / f"{rel.stem}-mask.png"
        plan.append((path, args.output if single else args.output / rel, found))
    pairs = [(path, t) for path, out, found in plan for t in (out, found) if t is not None]
    check_targets(pairs, [*files, *([args.mask] if args.mask is not None else [])])
    return files, plan


def _check_existing(args: argparse.Namespace, mine: Plan) -> None:
    """Refuse existing outputs unless --overwrite or --skip-existing; remove the temporary files that a run
    killed while writing these outputs left."""
    from rednet import io

    targets = [t for _, out, found in mine for t in (out, found) if t is not None]
    existing = existing_paths(targets)
    if existing and not (args.overwrite or args.skip_existing):
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise FileExistsError(
            f"{existing[0]}: already exists{more}; pass --overwrite to replace or --skip-existing to keep"
        )
    io.remove_stale_temps(targets)  # left by a run killed while writing these outputs


def _kept(args: argparse.Namespace, target: Path | None) -> bool:
    """Whether --skip-existing keeps this output as it is (a mask counts as kept when not asked for)."""
    return target is None or (args.skip_existing and bool(existing_paths([target])))


def _choose_device(args: argparse.Namespace, world: int) -> tuple[torch.device, bool]:
    """(device, bf16); with several processes, also joins their process group."""
    import torch.distributed as dist

    device = choose_device(args.device)
    if world > 1 and not dist.is_initialized():
        init_process_group(device)
    return device, use_bf16(device, args.bf16)


def _restore_files(
    args: argparse.Namespace,
    task,
    mine: Plan,
    files: list[Path],
    *,
    rank: int,
    device: torch.device,
    bf16: bool,
) -> list[dict]:
    """The per-file loop: one record per input (restored, skipped or failed: a failure is reported in one
    line and the loop goes on); models are loaded on first use, one per channel count."""
    models: dict[int, tuple] = {}
    results = []
    for path, out, found in mine:
        record = {"input": str(path), "rank": rank}
        start = time.perf_counter()
        if _kept(args, out) and _kept(args, found):
            record.update(output=str(out), skipped=True, seconds=0.0)
            results.append(record)
            if not args.json:
                print(f"{path}: skipped, {out} exists", file=sys.stderr)
            continue
        try:
            _restore_file(args, task, (path, out, found), record, files, models, device=device, bf16=bf16)
        except (OSError, ValueError) as e:
            if not isinstance(e, (FileNotFoundError, FileExistsError)) and not str(e).startswith(str(path)):
                e = ValueError(f"{path}: {e}")
            record["error"] = str(e).splitlines()[0]
            print(f"rednet: error: {record['error']}", file=sys.stderr)
        record["seconds"] = time.perf_counter() - start
        results.append(record)
        if "output" in record and not args.json:
            print(f"{path} -> {record['output']} ({record['seconds']:.1f} s)", file=sys.stderr)
    return results


def _restore_file(
    args: argparse.Namespace,
    task,
    planned: tuple[Path, Path, Path | None],
    record: dict,
    files: list[Path],
    models: dict[int, tuple],
    *,
    device: torch.device,
    bf16: bool,
) -> None:
    """Restore one input to its output (and its found mask), filling in its ``record``."""
    from rednet import io, pipeline

    path, out, found = planned
    x, info = io.read_image(path)
    channels = x.shape[1]
    if channels not in models:
        models[channels] = _restore_model(args, channels, device)
    model, detector = models[channels]
    # (--mask is for inpainting, whose input the pre-restore step leaves as it is)
    mask = None if args.mask is None else io.read_mask(args.mask, size=x.shape[-2:])

    def save_damage(damage: torch.Tensor) -> None:
        if found is not None:
            if not _kept(args, found):  # with --skip-existing, a mask written before a kill stays
                io.write_image(found, damage, overwrite=args.overwrite, protect=files)
            record["mask"] = str(found)

    restored = pipeline.restore_image(
        model,
        x,
        info,
        task,
        getattr(args, task.restore_level.name) if task and task.restore_level.name else None,
        detector=detector,
        mask=mask,
        tile=args.tile or "auto",
        ensemble=args.ensemble,
        bf16=bf16,
        on_damage=save_damage,
    )
    y = restored.image
    if not _kept(args, out):
        io.write_image(out, y, restored.info, overwrite=args.overwrite, protect=files)
    record.update(
        output=str(out),
        model=model.card.get("name")
        if detector is None
        else f"{detector.card.get('name')} + {model.card.get('name')}",
        megapixels=y.shape[-1] * y.shape[-2] / 1e6,
    )


def _gather_results(results: list[dict], world: int) -> list[dict]:
    """Every process's records, in rank order; then leaves the process group."""
    import torch.distributed as dist

    gathered: list[list[dict]] = [[] for _ in range(world)]
    dist.all_gather_object(gathered, results)
    results = [r for part in gathered for r in part]
    dist.destroy_process_group()  # a live gloo group aborts the process at exit
    return results


def _print_summary(
    args: argparse.Namespace, task, results: list[dict], *, processes: int, device: torch.device, bf16: bool
) -> None:
    """The summary: one JSON object with every file's record (--json), else one line."""
    failed = [r for r in results if "error" in r]
    skipped = [r for r in results if r.get("skipped")]
    summary = {
        "files": len(results),
        "restored": len(results) - len(failed) - len(skipped),
        "skipped": len(skipped),
        "failed": len(failed),
        "processes": processes,
        "bf16": bf16,
        "device": str(device),
        **({"sigma": args.sigma, "sigma_used": False} if task and task.level == "sigma" else {}),
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"restored {summary['restored']} of {summary['files']} file(s)"
            + (f"; {len(skipped)} skipped (outputs exist)" if skipped else "")
            + (f"; {len(failed)} failed" if failed else ""),
            file=sys.stderr,
        )
