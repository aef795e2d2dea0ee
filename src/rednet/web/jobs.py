"""The restore jobs of ``rednet serve``: a :class:`Job` per upload, and the :class:`Service` that queues them
on a thread pool, runs them through :mod:`rednet.pipeline` and keeps their results."""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import HTTPException
from torch import Tensor

from rednet import degrade, io, pipeline, zoo
from rednet.devices import choose_device, use_bf16
from rednet.tasks import task_named
from rednet.web.settings import _OUTPUT_TYPES, LEVELS, ServeSettings

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One accepted upload, from decoding to its result; mutated by its worker thread only."""

    id: str
    task: str
    level: float | None
    model: str | None
    ensemble: bool
    fast: bool
    output: str
    preview: bool
    download_name: str
    state: str = "decoding"  # decoding, queued, running, done, failed, cancelled
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    tiles_done: int = 0
    tiles_total: int = 0
    size: tuple[int, int] | None = None  # input (width, height)
    out_size: tuple[int, int] | None = None
    channels: int | None = None
    error: tuple[int, str] | None = None
    result: bytes | None = None
    media_type: str = "image/png"
    input_preview: bytes | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    future: Future | None = field(default=None, repr=False)

    @property
    def finished_state(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def public(self, queue_position: int | None = None) -> dict[str, Any]:
        """The JSON of ``GET /v1/jobs/{id}``."""
        now = time.monotonic()
        progress = self.tiles_done / self.tiles_total if self.tiles_total else 0.0
        return {
            "id": self.id,
            "state": self.state,
            "task": self.task,
            **({name: self.level} if (name := LEVELS[self.task]["name"]) else {}),
            "model": self.model,
            "ensemble": self.ensemble,
            "tiles_done": self.tiles_done,
            "tiles_total": self.tiles_total,
            "progress": 1.0 if self.state == "done" else round(progress, 4),
            "queue_position": queue_position,
            "elapsed_s": round((self.finished or now) - self.created, 3),
            "width": self.size[0] if self.size else None,
            "height": self.size[1] if self.size else None,
            "out_width": self.out_size[0] if self.out_size else None,
            "out_height": self.out_size[1] if self.out_size else None,
            "timings_ms": self.timings_ms,
            "error": None if self.error is None else {"status": self.error[0], "detail": self.error[1]},
            "result": f"/v1/jobs/{self.id}/result" if self.state == "done" else None,
            "input": f"/v1/jobs/{self.id}/input" if self.input_preview is not None else None,
        }


class BusyError(Exception):
    """The job queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: int, active: int) -> None:
        super().__init__(f"busy: {active} jobs accepted, retry in {retry_after} s")
        self.retry_after = retry_after
        self.active = active


class _CancelledError(Exception):
    """Raised from the tile callback of a cancelled job."""


class Service:
    """The restore queue, the model cache and the private upload folder of one app."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._models: dict[str, torch.nn.Module] = {}
        self._model_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="rednet-restore")
        self._durations: deque[float] = deque(maxlen=20)
        self._temp: Path | None = None
        self._demo: bytes | None = None
        self.device = choose_device(settings.device)
        self.bf16 = use_bf16(self.device, settings.bf16)

    # -- queue ---------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.settings.workers + self.settings.queue_size

    def active(self) -> int:
        return sum(not j.finished_state for j in self.jobs.values())

    def reserve(self, job: Job) -> None:
        """Accept ``job`` (state "decoding") or raise :class:`BusyError` when the queue is full."""
        with self._lock:
            self._purge()
            active = self.active()
            if active >= self.capacity:
                raise BusyError(self._retry_after(), active)
            self.jobs[job.id] = job

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free, at least 1.

        That is what the running job nearest its end still needs, judged by the mean of the last 20 jobs.
        """
        mean = sum(self._durations) / len(self._durations) if self._durations else 5.0
        now = time.monotonic()
        left = [
            mean - (now - j.started) for j in list(self.jobs.values()) if j.state == "running" and j.started
        ]
        return max(1, math.ceil(min(left, default=mean)))

    def queue_position(self, job: Job) -> int | None:
        if job.state != "queued":
            return None
        return sum(j.state == "queued" and j.created < job.created for j in list(self.jobs.values())) + 1

    def discard(self, job: Job) -> None:
        with self._lock:
            self.jobs.pop(job.id, None)

    def start(self, job: Job, x: Tensor, info: io.ImageInfo) -> None:
        job.state = "queued"
        job.future = self._executor.submit(self._run, job, x, info)

    def cancel(self, job: Job) -> None:
        job.cancel.set()
        if job.state == "queued" and job.future is not None and job.future.cancel():
            self._finish(job, "cancelled")

    def _finish(self, job: Job, state: str, error: tuple[int, str] | None = None) -> None:
        job.state, job.error, job.finished = state, error, time.monotonic()

    def _purge(self) -> None:
        """Forget finished jobs past their time-to-live and all but the newest ``keep_results``."""
        now = time.monotonic()
        done = sorted((j for j in self.jobs.values() if j.finished_state), key=lambda j: j.finished or 0)
        excess = len(done) - self.settings.keep_results
        for i, j in enumerate(done):
            if i < excess or now - (j.finished or now) > self.settings.result_ttl_s:
                self.jobs.pop(j.id, None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._purge()
            return self.jobs.get(job_id)

    # -- work ----------------------------------------------------------------------------------------

    def temp_dir(self) -> Path:
        with self._lock:
            if self._temp is None:
                self._temp = Path(tempfile.mkdtemp(prefix="rednet-serve-", dir=self.settings.temp_dir))
            return self._temp

    def model(self, name: str) -> torch.nn.Module:
        with self._model_lock:
            if name not in self._models:
                self._models[name] = zoo.load(name, device=self.device)
            return self._models[name]

    def decode(self, job: Job, data: bytes) -> tuple[Tensor, io.ImageInfo]:
        """Sniff and decode an upload (blocking); raises HTTPException with the 4xx for bad input."""
        start = time.perf_counter()
        path = self.temp_dir() / f"{job.id}.upload"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            _sniff(path, self.settings.max_pixels)
            try:
                x, info = io.read_image(path, max_pixels=self.settings.max_pixels)
            except io.ImageError as e:
                message = _client_message(e, path)
                raise HTTPException(413 if "exceeds" in message else 400, message) from None
        finally:
            path.unlink(missing_ok=True)
        job.size, job.channels = (x.shape[-1], x.shape[-2]), x.shape[1]
        job.timings_ms["decode"] = _ms(start)
        return x, replace(info, path=None)

    def _run(self, job: Job, x: Tensor, info: io.ImageInfo) -> None:
        if job.cancel.is_set():
            self._finish(job, "cancelled")
            return
        job.state, job.started = "running", time.monotonic()
        job.timings_ms["queue"] = round(
            (job.started - job.created) * 1000 - job.timings_ms.get("decode", 0), 1
        )

        def on_tile(done: int, total: int) -> None:
            if job.cancel.is_set():
                raise _CancelledError
            job.tiles_done, job.tiles_total = done, total

        try:
            start = time.perf_counter()
            task = task_named(job.task)
            # blind inpainting in two steps: the damage model finds the mask, the other fills it
            choice = pipeline.choose_models(
                task, x.shape[1], model=job.model, fast=job.fast, exact_variant=False
            )
            model = self.model(choice.model)
            job.model = choice.model if choice.detector is None else f"{choice.detector} + {choice.model}"
            job.timings_ms["load"] = _ms(start)
            start = time.perf_counter()
            detector = self.model(choice.detector) if choice.detector else None
            restored = pipeline.restore_image(
                model,
                x,
                info,
                task,
                job.level or 0,
                detector=detector,
                tile=self.settings.tile,
                ensemble=job.ensemble,
                bf16=self.bf16,
                on_tile=on_tile,
            )
            y, x = restored.image, restored.model_input
            job.timings_ms["restore"] = _ms(start)
            start = time.perf_counter()
            job.out_size = (y.shape[-1], y.shape[-2])
            suffix, job.media_type = _OUTPUT_TYPES[info.format if job.output == "input" else "PNG"]
            job.result = self._encode(job, y, restored.info, suffix)
            if job.preview:
                job.input_preview = self._encode(job, x.clamp(0, 1), None, ".png", "input")
            job.timings_ms["encode"] = _ms(start)
            self._durations.append(time.monotonic() - job.started)
            self._finish(job, "done")
        except _CancelledError:
            self._finish(job, "cancelled")
        except Exception as e:  # noqa: BLE001 - a failed job must be reported, and the worker must live on
            logger.exception("job %s failed", job.id)
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            self._finish(job, "failed", (500, f"restore failed: {reason}"))

    def _encode(
        self, job: Job, y: Tensor, info: io.ImageInfo | None, suffix: str, what: str = "result"
    ) -> bytes:
        path = self.temp_dir() / f"{job.id}.{what}{suffix}"
        try:
            io.write_image(path, y, info, overwrite=True)
            return path.read_bytes()
        finally:
            path.unlink(missing_ok=True)

    def demo(self) -> bytes:
        """The demo upload: :func:`demo_sample` as an 8-bit PNG (made once)."""
        if self._demo is None:
            job_id = f"demo-{secrets.token_hex(4)}"
            path = self.temp_dir() / f"{job_id}.png"
            try:
                io.write_image(path, demo_sample(), overwrite=True)
                self._demo = path.read_bytes()
            finally:
                path.unlink(missing_ok=True)
        return self._demo

    def close(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def _client_message(error: Exception, path: Path) -> str:
    """An io error message with the server's temporary path replaced by the word "upload"."""
    return str(error).splitlines()[0].replace(str(path), "upload")


def _sniff(path: Path, max_pixels: int) -> None:
    """Identify the upload from its bytes (never its name) and check its size before any decoding.

    Raises:
        HTTPException: 415 for data that is not an image rednet reads, 413 above ``max_pixels``.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    supported = "PNG, JPEG, TIFF, BMP or WebP"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=("PNG", "JPEG", "TIFF", "BMP", "WEBP")) as im:
                width, height = im.size
    except UnidentifiedImageError:
        raise HTTPException(415, f"upload: not an image rednet reads (send {supported})") from None
    except Image.DecompressionBombError as e:  # above Pillow's own limit: only the pixel count is known
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise HTTPException(
            413, _too_many_pixels(int(pixels.group(1)) if pixels else None, max_pixels)
        ) from None
    except Exception:  # noqa: BLE001 - a damaged header: read_image says what is wrong
        return
    if width * height > max_pixels:
        raise HTTPException(413, _too_many_pixels(width * height, max_pixels, f"{width}x{height} = "))


def _too_many_pixels(pixels: int | None, limit: int, dims: str = "") -> str:
    size = f"{dims}{pixels / 1e6:.1f} megapixels" if pixels else "the image"
    return (
        f"upload: {size} exceeds this server's limit of {limit / 1e6:g} megapixels; refused before decoding "
        "(rednet serve --max-megapixels)"
    )


def _download_name(filename: str | None, output: str, fmt: str) -> str:
    """``NAME-restored.EXT`` from the client's file name: its last component, with safe characters only."""
    stem = re.split(r"[\\/]", filename or "")[-1].rsplit(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80] or "image"
    return f"{stem}-restored{_OUTPUT_TYPES[fmt if output == 'input' else 'PNG'][0]}"


def demo_sample(sigma: float = 25.0) -> Tensor:
    """The demo button's input: the face of scikit-image's astronaut (a 256 x 256 crop) with Gaussian
    noise of ``sigma`` (0-255 scale, seed 0, as ``rednet demo``), quantised to 8 bits.

    Returns:
        (1, 3, 256, 256) float32 in [0, 1].
    """
    from skimage import data

    clean = io.array_to_tensor(data.astronaut()[16:272, 112:368].copy())
    return degrade.quantize(degrade.gaussian_noise(clean, sigma, generator=np.random.default_rng(0)))
