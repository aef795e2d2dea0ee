"""``rednet fuzz``: mutated image files through :func:`rednet.io.read_image` and ``rednet restore``.

The seed files and the mutations are those of :mod:`rednet.fuzz_corpus`: real PNG (8 and 16 bits, gray,
palette with transparency, alpha, EXIF and ICC), JPEG (baseline with EXIF and ICC, progressive, gray, CMYK),
TIFF (raw, Deflate, LZW, 16 bits), WebP (lossless, lossy with alpha), BMP and GIF (which rednet refuses
whatever its name) files, and byte flips, truncations, spliced bytes, PNG chunk data and chunk order changes
with their CRC fixed, IHDR fields, an IDAT whose zlib stream is cut short, EXIF and TIFF IFD entries, and ICC
profile header and tag table fields. hypothesis draws a seed file and one to three mutations per case.

Each case runs in a worker process (spawned, one at a time) under a time limit: a case that takes longer is
a hang (the worker is killed and replaced), a worker that dies is a crash. An outcome is ``decoded`` (a
(1, C, H, W) float tensor on [0, 1]) or ``restored`` (exit code 0, an output that reads back), ``error`` (the
project's clear one-line error: :class:`rednet.io.ImageError` for ``read_image``, exit code 1 with one
``rednet: error:`` line for ``restore``), else ``unexpected`` (any other exception, a message of several
lines, a bad tensor, a traceback, an input that changed). Errors are counted by kind: the message without the
file name, details in parentheses and numbers.
"""

from __future__ import annotations

import io as _io
import multiprocessing
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from rednet.fuzz_corpus import MUTATIONS, seed_corpus

__all__ = ["FuzzTarget", "error_kind", "run_fuzz"]


@dataclass(frozen=True)
class FuzzTarget:
    """What a case goes through: ``read_image`` (``command=None``) or ``rednet restore`` with a tiny model.

    ``command`` is the command line's ``main`` (``rednet.cli.main``), handed in by its caller rather than
    imported here, since the command line imports this module. ``max_pixels`` is ``REDNET_MAX_PIXELS`` in the
    worker (``None``: rednet's default of 100 million); the restore target lowers it so that a mutated header
    cannot make one case a long model pass.
    """

    command: Callable[[list[str]], int] | None = None
    max_pixels: int | None = None

    @property
    def restore(self) -> bool:
        return self.command is not None

    @property
    def name(self) -> str:
        return "restore" if self.restore else "read_image"


# --------------------------------------------------------------------------------------------- the worker


def error_kind(message: str) -> str:
    """The kind of a one-line error: without ``rednet: error:``, the file name, details and numbers."""
    text = message.removeprefix("rednet: error: ")
    text = re.sub(r"^\S*case\.\w+: ", "", text)
    text = re.split(r" \(|; |: ", text, maxsplit=1)[0]
    return re.sub(r"\d+", "N", text).strip()


def _case_read(path: Path) -> tuple[str, str]:
    import torch

    from rednet.io import ImageError, read_image

    try:
        x, _ = read_image(path)
    except ImageError as e:
        if "\n" in str(e) or not str(e).startswith(str(path)):
            return "unexpected", f"ImageError not one line naming the file: {str(e)[:200]!r}"
        return "error", error_kind(str(e))
    ok = x.dtype == torch.float32 and x.ndim == 4 and x.shape[0] == 1 and x.shape[1] in (1, 3)
    if not ok or not bool(torch.isfinite(x).all()) or x.min() < 0 or x.max() > 1:
        return "unexpected", f"bad tensor {tuple(x.shape)} {x.dtype}"
    return "decoded", ""


# What rednet restore prints on standard error: its one error line, its summary, a line per file written.
_RESTORE_LINES = re.compile(r"rednet: error: .*|restored \d+ of \d+ file\(s\).*|.* -> .* \([\d.]+ s\)")


def _case_restore(path: Path, weights: Path, main: Callable[[list[str]], int]) -> tuple[str, str]:
    import contextlib

    from rednet.io import read_image

    out = path.with_name("out" + path.suffix)
    out.unlink(missing_ok=True)
    before = path.read_bytes()
    err = _io.StringIO()
    argv = ["restore", "--task", "denoise", str(path), "-o", str(out), "--weights", str(weights)]
    with contextlib.redirect_stderr(err):
        code = main([*argv, "--device", "cpu", "--no-bf16"])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if path.read_bytes() != before:
        return "unexpected", "the input changed"
    other = [line for line in lines if not _RESTORE_LINES.match(line)]
    if other:
        return "unexpected", f"printed on standard error: {other[0][:200]!r}"
    if code == 0:
        try:
            read_image(out)
        except Exception as e:  # noqa: BLE001 - any failure to read the output back is a finding
            return "unexpected", f"the output does not read back: {type(e).__name__}: {str(e)[:200]}"
        return "restored", ""
    errors = [line for line in lines if line.startswith("rednet: error: ")]
    if code == 1 and len(errors) == 1:
        return "error", error_kind(errors[0])
    return "unexpected", f"exit code {code}, standard error {err.getvalue()[-200:]!r}"


def _worker(conn: Any, target: FuzzTarget, folder: str) -> None:
    """Serve cases from ``conn`` until it closes: (suffix, bytes) -> (outcome, detail, seconds)."""
    import logging
    import os

    import torch

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # clipping warnings and the like are not what a case is judged on
    if target.max_pixels is not None:
        os.environ["REDNET_MAX_PIXELS"] = str(target.max_pixels)
    weights = Path(folder) / "tiny.safetensors"
    if target.restore:
        from rednet.model import REDNet, REDNetConfig
        from rednet.zoo import save_weights

        torch.manual_seed(0)
        save_weights(weights, REDNet(REDNetConfig(depth=10, width=16, channels=3)), {"name": "tiny"})
    # what native code and Python's last-resort log handler print on file descriptor 2 is kept, to be judged
    printed = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the worker lives
    os.dup2(printed.fileno(), 2)
    conn.send("ready")
    while True:
        try:
            suffix, blob = conn.recv()
        except EOFError:
            return
        path = Path(folder) / f"case{suffix}"
        path.write_bytes(blob)
        start, mark = time.perf_counter(), os.fstat(2).st_size
        try:
            if target.command is not None:
                outcome, detail = _case_restore(path, weights, target.command)
            else:
                outcome, detail = _case_read(path)
        except BaseException as e:  # noqa: BLE001 - everything that escapes is what the fuzzer looks for
            last = traceback.format_exception(e)[-2].strip().splitlines()[0]
            outcome, detail = "unexpected", f"{type(e).__name__}: {str(e)[:200]} [{last}]"
        sys.stderr.flush()
        if os.fstat(2).st_size > mark and outcome != "unexpected":
            printed.seek(mark)
            outcome, detail = (
                "unexpected",
                f"printed on standard error: {printed.read(200).decode(errors='replace')!r}",
            )
        conn.send((outcome, detail, time.perf_counter() - start))


class _Runner:
    """A worker process that runs one case at a time, killed and replaced when a case hangs or kills it."""

    def __init__(self, target: FuzzTarget, folder: str, time_limit: float) -> None:
        self.target, self.folder, self.time_limit = target, folder, time_limit
        self.context = multiprocessing.get_context("spawn")
        self.process: Any = None
        self.restarts = 0

    def _start(self) -> None:
        self.conn, child = self.context.Pipe()
        self.process = self.context.Process(
            target=_worker, args=(child, self.target, self.folder), daemon=True
        )
        self.process.start()
        child.close()
        if not self.conn.poll(300) or self.conn.recv() != "ready":
            raise RuntimeError("the fuzzing worker did not start")

    def run(self, suffix: str, blob: bytes) -> tuple[str, str, float]:
        if self.process is None:
            self._start()
        start = time.perf_counter()
        try:
            self.conn.send((suffix, blob))
            if self.conn.poll(self.time_limit):
                return self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            self._stop()
            return "crash", f"the worker died (exit code {self.process_exit})", time.perf_counter() - start
        self._stop()
        return "hang", f"no answer in {self.time_limit:g} s", time.perf_counter() - start

    def _stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.process_exit = self.process.exitcode
            self.conn.close()
            self.process, self.restarts = None, self.restarts + 1

    def close(self) -> None:
        if self.process is not None:
            self.conn.close()
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()


# ----------------------------------------------------------------------------------------------- the run


def run_fuzz(
    cases: int,
    seed: int = 0,
    target: FuzzTarget = FuzzTarget(),
    *,
    time_limit: float = 10.0,
    failures_dir: Path | None = None,
) -> dict[str, Any]:
    """Fuzz ``target`` with ``cases`` mutated files drawn by hypothesis from :func:`seed_corpus`.

    Args:
        cases: how many cases to run.
        seed: hypothesis' seed (the same seed, the same cases).
        target: what each case goes through.
        time_limit: seconds a case may take before it counts as a hang.
        failures_dir: where to write the file of each unexpected outcome, hang and crash (none if ``None``).

    Returns:
        A JSON-able dict: ``target``, ``cases``, ``seed``, ``outcomes`` (decoded / restored / error /
        unexpected / hang / crash -> count), ``errors_by_kind``, ``cases_by_seed_file``,
        ``cases_by_mutation``, ``unexpected`` (the count of unexpected outcomes, hangs and crashes),
        ``samples`` (the first ten of those, one line each), ``slowest_case_s``, ``seconds`` and
        ``cases_per_s``.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    corpus = seed_corpus()
    names = sorted(corpus)
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    by_seed: Counter[str] = Counter()
    by_mutation: Counter[str] = Counter()
    samples: list[str] = []
    slowest = 0.0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rednet-fuzz-") as folder:
        runner = _Runner(target, folder, time_limit)

        @settings(
            max_examples=cases,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis_seed(seed)
        @given(st.data())
        def one(draw: st.DataObject) -> None:
            nonlocal slowest
            # a wide integer taken modulo: hypothesis' own choice of small values would favour the first files
            name = names[draw.draw(st.integers(0, 2**20)) % len(names)]
            mutations = draw.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3))
            blob = corpus[name]
            for mutation in mutations:
                blob = draw.draw(mutation(blob))
            # a GIF named .png: rednet must tell it from its content, not its name
            suffix = ".png" if name.endswith(".gif") else Path(name).suffix
            outcome, detail, seconds = runner.run(suffix, blob)
            slowest = max(slowest, seconds)
            outcomes[outcome] += 1
            by_seed[name] += 1
            by_mutation.update(m.__name__ for m in mutations)
            if outcome == "error":
                kinds[detail] += 1
            elif outcome in ("unexpected", "hang", "crash"):
                label = f"{outcome}: {name} via {'+'.join(m.__name__ for m in mutations)}: {detail}"
                if len(samples) < 10:
                    samples.append(label)
                if failures_dir is not None:
                    failures_dir.mkdir(parents=True, exist_ok=True)
                    (failures_dir / f"{sum(outcomes.values()):06d}-{outcome}{suffix}").write_bytes(blob)

        try:
            one()
        finally:
            runner.close()
    seconds = time.perf_counter() - start
    ran = sum(outcomes.values())
    return {
        "target": target.name,
        "max_pixels": target.max_pixels,
        "cases": ran,
        "seed": seed,
        "time_limit_s": time_limit,
        "outcomes": dict(outcomes.most_common()),
        "errors_by_kind": dict(kinds.most_common()),
        "cases_by_seed_file": dict(sorted(by_seed.items())),
        "cases_by_mutation": dict(by_mutation.most_common()),
        "unexpected": outcomes["unexpected"] + outcomes["hang"] + outcomes["crash"],
        "samples": samples,
        "worker_restarts": runner.restarts,
        "slowest_case_s": round(slowest, 3),
        "seconds": round(seconds, 1),
        "cases_per_s": round(ran / seconds, 1) if seconds else None,
    }
