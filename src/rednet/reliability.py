"""``rednet report reliability``: run the fuzzers and the kill -9 trials, and write ``docs/reliability.md``.

:func:`run_reliability` runs, in turn, :func:`rednet.fuzz.run_fuzz` over ``read_image`` and over
``rednet restore``, :func:`rednet.kill_trials.train_trials` and :func:`rednet.kill_trials.restore_trials`,
and :func:`rednet.fuzz_api.run_api_fuzz`; :func:`render_reliability` writes their JSON as the page, every
figure of which comes from that one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ReliabilityRun", "command_line", "render_reliability", "run_reliability", "unexpected_total"]


@dataclass(frozen=True)
class ReliabilityRun:
    """The sizes of a reliability run (the command's flags, one per field)."""

    fuzz_cases: int = 10_000
    restore_fuzz_cases: int = 1_000
    train_trials: int = 20
    restore_trials: int = 10
    api_cases: int = 1_000
    seed: int = 0
    restore_max_pixels: int = 65_536

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < (0 if f.name == "seed" else 1):
                raise ValueError(
                    f"--{f.name.replace('_', '-')} must be a positive whole number, got {value!r}"
                )


def command_line(run: ReliabilityRun) -> str:
    """The command that makes ``run``: ``rednet report reliability`` and its flags other than the default."""
    default = ReliabilityRun()
    flags = [
        f"--{f.name.replace('_', '-')} {getattr(run, f.name)}"
        for f in fields(run)
        if getattr(run, f.name) != getattr(default, f.name)
    ]
    return " ".join(["rednet report reliability", *flags])


def run_reliability(run: ReliabilityRun, command: Callable[[list[str]], int]) -> dict[str, Any]:
    """Run the five harnesses at the sizes of ``run``; their results, by harness, and the total seconds.

    ``command`` is the command line's ``main`` (``rednet.cli.main``), which the restore fuzzing runs."""
    from rednet.fuzz import FuzzTarget, run_fuzz
    from rednet.fuzz_api import run_api_fuzz
    from rednet.kill_trials import restore_trials, train_trials

    start = time.perf_counter()
    restore = FuzzTarget(command=command, max_pixels=run.restore_max_pixels)
    results = {
        "fuzz_read_image": run_fuzz(run.fuzz_cases, run.seed),
        "fuzz_restore": run_fuzz(
            run.restore_fuzz_cases, run.seed + 1, restore
        ),  # other files than read_image's
        "kill_train": train_trials(run.train_trials, run.seed),
        "kill_restore": restore_trials(run.restore_trials, run.seed),
        "fuzz_api": run_api_fuzz(run.api_cases, run.seed),
    }
    return {**results, "seconds": round(time.perf_counter() - start, 1)}


def unexpected_total(results: dict[str, Any]) -> int:
    """Everything that went wrong: unexpected fuzz outcomes (hangs and crashes included), kill trials not
    survived, API check failures and server errors."""
    return (
        results["fuzz_read_image"]["unexpected"]
        + results["fuzz_restore"]["unexpected"]
        + results["kill_train"]["trials"]
        - results["kill_train"]["survived"]
        + results["kill_restore"]["trials"]
        - results["kill_restore"]["survived"]
        + results["fuzz_api"]["failures"]
        + results["fuzz_api"]["server_errors"]
    )


def _count_table(title: str, columns: list[str], rows: dict[str, list[int]]) -> list[str]:
    lines = [f"| {title} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{v:,}" for v in values) + " |" for name, values in rows.items()]
    return lines


def _fuzz_rows(read: dict[str, Any], restore: dict[str, Any], key: str) -> dict[str, list[int]]:
    names = list(dict.fromkeys([*read[key], *restore[key]]))
    return {name: [read[key].get(name, 0), restore[key].get(name, 0)] for name in names}


def render_reliability(results: dict[str, Any], header: str) -> str:
    """The page ``docs/reliability.md`` of the results of :func:`run_reliability`, ``header`` first."""
    lines = [header, "", "# Reliability", "", _PROMISE, "", *_summary(results)]
    lines += ["", *_fuzz_section(results["fuzz_read_image"], results["fuzz_restore"])]
    lines += ["", *_kill_section(results["kill_train"], results["kill_restore"])]
    lines += ["", *_api_section(results["fuzz_api"])]
    return "\n".join(lines) + "\n"


_PROMISE = (
    "What rednet promises: bad input stops with one line `rednet: error: FILE: reason`; inputs are never "
    "modified; outputs and checkpoints are written atomically; a killed run resumes (training) or is "
    "finished (`rednet restore --skip-existing`) as if it had not been killed. This page is the evidence, "
    "from one run of the command above."
)


def _summary(results: dict[str, Any]) -> list[str]:
    train, kill, api = results["kill_train"], results["kill_restore"], results["fuzz_api"]

    def fuzz_row(name: str, r: dict[str, Any]) -> str:
        o, word = r["outcomes"], "restored" if r["target"] == "restore" else "decoded"
        return (
            f"| fuzz {name} | {r['cases']:,} mutated files | {o.get(word, 0):,} {word}, "
            f"{o.get('error', 0):,} one-line errors, {o.get('hang', 0)} hangs > {r['time_limit_s']:g} s, "
            f"{o.get('crash', 0)} crashes | {r['unexpected']} | "
            f"{r['seconds']:.0f} s ({r['cases_per_s']:g} cases/s) |"
        )

    return [
        f"**Unexpected outcomes in all: {unexpected_total(results)}.**",
        "",
        "| harness | cases | outcome | unexpected | time |",
        "|---|---|---|---|---|",
        fuzz_row("`read_image`", results["fuzz_read_image"]),
        fuzz_row("`rednet restore`", results["fuzz_restore"]),
        f"| kill -9 `rednet train` | {train['trials']} kills | {train['survived']} of {train['trials']} "
        "resumed to bitwise the weights and the log of the uninterrupted run | "
        f"{train['trials'] - train['survived']} | {train['seconds']:.0f} s |",
        f"| kill -9 folder `rednet restore` | {kill['trials']} kills | {kill['survived']} of "
        f"{kill['trials']} left only complete outputs and were finished by `--skip-existing` | "
        f"{kill['trials'] - kill['survived']} | {kill['seconds']:.0f} s |",
        f"| API fuzz (schemathesis, all default checks, stateful phase) | {api['cases']:,} requests | "
        f"{api['failures']} check failures, {api['server_errors']} server errors | "
        f"{api['failures'] + api['server_errors']} | {api['seconds']:.0f} s |",
        "",
        f"The whole run took {results['seconds'] / 60:.1f} min.",
    ]


def _fuzz_section(read: dict[str, Any], restore: dict[str, Any]) -> list[str]:
    columns = ["`read_image`", "`rednet restore`"]
    samples = read["samples"] + restore["samples"]
    return [
        "## Fuzzing",
        "",
        "`rednet fuzz --cases N --seed S` (`--restore`: through `rednet restore`; code in "
        "`src/rednet/fuzz.py`): hypothesis draws a seed file, real PNG, JPEG, TIFF, WebP, BMP and GIF files "
        "made from a crop of scikit-image's astronaut, and one to three mutations: byte flips, truncations, "
        "spliced bytes, PNG chunk data and chunk order with their CRC fixed, IHDR fields, a cut or "
        "lengthened IDAT stream, EXIF and TIFF IFD entries, ICC profile header and tag-table fields. Each "
        f"case runs in a worker process under a time limit of {read['time_limit_s']:g} s. A case is "
        "unexpected when it raises anything but rednet's `ImageError` (`read_image`) or exits otherwise "
        "than 0, or 1 with one "
        "`rednet: error:` line (`restore`), prints anything else on standard error, returns a bad tensor, "
        "changes its input, hangs or kills the worker. `rednet restore` runs a tiny random RED10 (width 16) "
        f"with `REDNET_MAX_PIXELS={restore['max_pixels']}`, so that a mutated header cannot make one case a "
        "long model pass; `read_image` keeps the default limit (100 million pixels). hypothesis' seeds: "
        f"{read['seed']} (`read_image`) and {restore['seed']} (`restore`), so the two get different files.",
        "",
        *_count_table("outcome", columns, _fuzz_rows(read, restore, "outcomes")),
        "",
        "One-line errors by kind (the message without the file name, details and numbers):",
        "",
        *_count_table("error", columns, _fuzz_rows(read, restore, "errors_by_kind")),
        "",
        *_count_table("mutation", columns, _fuzz_rows(read, restore, "cases_by_mutation")),
        "",
        *_count_table("seed file", columns, _fuzz_rows(read, restore, "cases_by_seed_file")),
        "",
        f"Slowest case: {read['slowest_case_s']:g} s (`read_image`), {restore['slowest_case_s']:g} s "
        "(`restore`).",
        *(["", "Unexpected samples:", "", *[f"- {s}" for s in samples]] if samples else []),
    ]


def _kill_section(train: dict[str, Any], kill: dict[str, Any]) -> list[str]:
    return [
        "## kill -9 trials",
        "",
        "`rednet kill-trials train --trials N --seed S` and `rednet kill-trials restore --trials N --seed S` "
        "(code in `src/rednet/kill_trials.py`) run the real commands in a child process and send SIGKILL "
        "once the log (the output folder) holds a random number of lines (files), after a further random "
        "delay.",
        "",
        f"- `rednet train`: a RED10 of width 8 for {train['steps']} steps, a log line each step, `last.pt` "
        f"every {train['ckpt_every']}; then `rednet train --resume` (or the same command, when killed before "
        "the first checkpoint). The log is compared record by record, but for the fields that time the run "
        f"(`patches_per_s`, `elapsed`). {train['killed']} of {train['trials']} kills landed before the run "
        f"ended; {train['past_checkpoint']} after steps that the checkpoint did not hold yet (the resume "
        f"truncated the log to the checkpoint's step), {train['before_first_checkpoint']} before the first "
        f"checkpoint, and {train['cut_lines']} cut a log line short.",
        f"- folder `rednet restore`: {kill['images']} images of {kill['side']} x {kill['side']} pixels, a "
        f"tiny random RED10. {kill['killed']} of {kill['trials']} kills landed before the run ended; at the "
        f"kills {kill['outputs_at_kill']} outputs were visible in all, each byte for byte the uninterrupted "
        f"run's, and {kill['temps_at_kill']} hidden temporary files were left (a run removes those of its "
        "outputs); each `--skip-existing` re-run finished the set, equal to the uninterrupted run's, with no "
        "temporary file left.",
    ]


def _api_section(api: dict[str, Any]) -> list[str]:
    phases = ", ".join(f"{k} {v:,}" for k, v in api["phases"].items())
    statuses = ", ".join(f"{k} × {v:,}" for k, v in api["statuses"].items())
    lines = [
        "## API fuzzing",
        "",
        "`rednet fuzz-api --cases N --seed S` (code in `src/rednet/fuzz_api.py`): schemathesis against the "
        "app of `rednet serve`, in process, with all its default checks. Requests by phase: "
        f"{phases}; statuses: {statuses}.",
    ]
    if api["failure_samples"]:
        lines += ["", "Failures:", "", *[f"- {s}" for s in api["failure_samples"]]]
    return lines
