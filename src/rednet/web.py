"""``rednet serve``: a web page and a JSON HTTP API that restore uploaded images, in one process.

The app (FastAPI, served by uvicorn) is made by :func:`create_app` from a :class:`ServeSettings`:

* ``GET /`` the page (``static/index.html``: pick, drop or paste an image, restore it, compare before and
  after with a slider and a zoomed crop, download the result; a demo button restores a built-in sample).
* ``POST /v1/restore`` multipart ``image`` + ``task``, ``level``, ``model``, ``ensemble``, ``fast``,
  ``format`` -> the restored image (PNG, or the input's format) with ``Server-Timing`` headers.
* ``POST /v1/jobs`` the same fields -> ``{"id": ...}`` at once (202); ``GET /v1/jobs/{id}`` its state and
  tile progress; ``GET /v1/jobs/{id}/result`` the image; ``GET /v1/jobs/{id}/input`` a PNG preview of what
  the model saw (with ``preview=true``); ``DELETE /v1/jobs/{id}`` cancels it.
* ``GET /v1/models`` the shipped models with their cards, the tasks they cover and the server's limits;
  ``GET /v1/demo`` the noisy sample; ``GET /healthz``; ``GET /openapi.json`` and ``/docs`` (Swagger UI
  served from this process by ``fastapi-offline``, no CDN).

Every error is ``{"detail": "one sentence"}`` (:class:`ErrorBody`), and the schema documents each status an
endpoint sends (``rednet fuzz-api`` checks that with schemathesis).

Restores run in a thread pool of ``workers`` threads behind a bounded queue: an upload that finds
``workers + queue_size`` jobs already accepted gets HTTP 503 with ``Retry-After``, while the page, the job
states and ``/healthz`` keep answering (PyTorch releases the GIL while it computes). A ``/v1/restore`` client
that disconnects gives its job up (a running one stops after its tile), so its slot is free again.
Uploads are checked before any work: the body size (413, also for uploads without ``Content-Length``), the
format by content sniffing, never the file name (415), the pixel count from the header before decoding
(413: a decompression bomb costs nothing), and truncated or corrupt files (400). Uploaded bytes are written
only to a private temporary folder, read back with :func:`rednet.io.read_image` and deleted at once; the
folder goes when the server stops. The client never names a file-system path: ``model`` must be a shipped
model's name, and the upload's file name is only used, sanitised, to name the download.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import numpy as np
import torch
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from torch import Tensor

from rednet import __version__, degrade, io, pipeline, zoo
from rednet.infer import native_bf16
from rednet.tasks import TASK_NAMES, task_named
from rednet.tasks import TASKS as ALL_TASKS

__all__ = ["TASKS", "ServeSettings", "create_app", "demo_sample", "serve"]

logger = logging.getLogger(__name__)

TASKS = TASK_NAMES
"""The task names of ``rednet restore --task``."""

Task = Literal["denoise", "sr", "jpeg", "deblur", "inpaint"]

HIDDEN = ("mask", "detect")
"""Model variants the API does not offer: the mask-aware model needs a mask (command line only); the damage
model is the first step of blind inpainting, which the API runs when no model is named."""

LEVELS: dict[str, dict[str, Any]] = {name: task.restore_level.as_json() for name, task in ALL_TASKS.items()}
"""What ``level`` means per task (as ``--sigma``, ``--scale``, ``--quality`` of ``rednet restore``)."""

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_OUTPUT_TYPES = {  # Pillow format read -> (suffix written, media type)
    "PNG": (".png", "image/png"),
    "JPEG": (".jpg", "image/jpeg"),
    "MPO": (".jpg", "image/jpeg"),
    "TIFF": (".tif", "image/tiff"),
    "BMP": (".bmp", "image/bmp"),
    "WEBP": (".webp", "image/webp"),
}
_STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class ServeSettings:
    """How ``rednet serve`` runs; every field is a ``rednet serve`` flag.

    Attributes:
        host: address to bind; loopback unless told otherwise (anyone who can reach it may use it).
        port: TCP port.
        max_upload_bytes: largest request body accepted (HTTP 413 above it).
        max_pixels: largest image accepted, width x height from the file header, before decoding, and
            also of the model's input after the ``sr`` enlargement (HTTP 413 above it).
        queue_size: accepted jobs that may wait for a worker; one more upload gets HTTP 503 + Retry-After.
        workers: restores that run at once (threads; each uses ``threads`` cores).
        threads: PyTorch threads (None: PyTorch's default, one per core).
        tile: tile side of the restore (progress is reported per tile; memory is bounded by it).
        bf16: bfloat16 autocast; None = on for GPUs and CPUs with native bf16 (as ``rednet restore``).
        device: "auto" (cuda if present), "cpu" or "cuda".
        result_ttl_s: seconds a finished job's result is kept for ``GET /v1/jobs/{id}/result``.
        keep_results: most finished jobs kept at once (the oldest go first).
        temp_dir: where the private upload folder is made (None: the system's temporary folder).
        allowed_hosts: ``Host`` header values accepted (None: the loopback names when bound to loopback,
            anything otherwise); guards a loopback server against DNS rebinding.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 16_000_000
    queue_size: int = 4
    workers: int = 1
    threads: int | None = None
    tile: int = 512
    bf16: bool | None = None
    device: str = "auto"
    result_ttl_s: float = 600.0
    keep_results: int = 16
    temp_dir: str | None = None
    allowed_hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "workers", "tile", "keep_results"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {self.queue_size}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def loopback(self) -> bool:
        """Whether ``host`` is a loopback address (only this machine can connect)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def hosts(self) -> tuple[str, ...] | None:
        """The ``Host`` names accepted (lower case, no port), or None for any."""
        if self.allowed_hosts is not None:
            return tuple(h.lower() for h in self.allowed_hosts)
        return (*_LOOPBACK_NAMES, self.host.lower()) if self.loopback else None


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
            "level": self.level,
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
        want_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if want_cuda else "cpu")
        self.bf16 = native_bf16(self.device) if settings.bf16 is None else settings.bf16

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


# --------------------------------------------------------------------------------------------------
# request checks
# --------------------------------------------------------------------------------------------------


class _TooLarge(HTTPException):
    """Raised while the body streams in; FastAPI passes HTTPExceptions from body parsing through."""


class _Guard:
    """ASGI middleware: Host and Origin checks, the request-body limit, and security headers."""

    def __init__(self, app: ASGIApp, settings: ServeSettings, csp: str) -> None:
        self.app, self.settings, self.hosts, self.csp = app, settings, settings.hosts(), csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = scope["path"] == "/"

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if page:
                    extra.append((b"content-security-policy", self.csp.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.hosts is not None and _host_name(host) not in self.hosts:
            await _reply(
                secured, 421, f"host {_shown(host)} is not served here (rednet serve --allowed-host)"
            )
            return
        origin = headers.get("origin")
        # "null" (a sandboxed frame, a file: page, a redirect) is an origin that is not this server
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            await _reply(secured, 403, f"cross-origin requests are refused (origin {_shown(origin)})")
            return
        limit = self.settings.max_upload_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _reply(secured, 413, _too_large(int(declared), limit))
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(413, _too_large(received, limit, at_least=True))
            return message

        await self.app(scope, limited, secured)


def _host_name(host: str) -> str:
    """The name of a ``Host`` header without its port: ``[::1]:8000`` -> ``::1``, ``a:80`` -> ``a``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    what = "upload is over" if at_least else f"upload is {_bytes(size)}, over"
    return f"{what} this server's limit of {_bytes(limit)} (rednet serve --max-upload-mb)"


def _shown(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters: what an error message may echo of a client's value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-1]}"


def _bytes(n: int) -> str:
    """``n`` bytes for people: "49 KiB", "32 MiB", "1.5 MiB"."""
    if n < 2**20:
        return f"{n / 1024:.0f} KiB"
    return f"{n / 2**20:.1f} MiB".replace(".0 MiB", " MiB")


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class RestoreForm:
    """The multipart fields of ``POST /v1/restore`` and ``POST /v1/jobs``."""

    image: UploadFile
    task: str
    level: float | None
    model: str | None
    ensemble: bool
    fast: bool
    format: str
    preview: bool


_BOOLEAN_FIELDS = ("ensemble", "fast", "preview")


async def _restore_form(
    request: Request,
    image: Annotated[UploadFile, File(description="the image: PNG, JPEG, TIFF, BMP or WebP (sniffed)")],
    task: Annotated[Task, Form(description="what to restore, as rednet restore --task")] = "denoise",
    level: Annotated[
        float | None, Form(description="denoise: sigma 0-255 (recorded); sr: scale 2-4; jpeg: quality")
    ] = None,
    model: Annotated[
        str | None, Form(description="a shipped model's name (GET /v1/models); default: the task's")
    ] = None,
    ensemble: Annotated[bool, Form(description="average the 8 flips/rotations (8x slower)")] = False,
    fast: Annotated[bool, Form(description="the task's strided (fast) model")] = False,
    format: Annotated[  # noqa: A002 - the form field's name
        Literal["png", "input"], Form(description="png, or input: the upload's own format")
    ] = "png",
    preview: Annotated[bool, Form(description="jobs: also keep a PNG of the model's input")] = False,
) -> RestoreForm:
    # FastAPI reads an empty field as a missing one (its default); an empty value is a client's mistake
    items = (await request.form()).multi_items()
    empty = [name for name, value in items if value == ""]
    if empty:
        raise HTTPException(422, f"form field {_shown(empty[0])} is empty; leave it out for its default")
    # FastAPI takes one of a field sent several times (two images, say) and drops the others unseen
    names = [name for name, _ in items]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated is not None:
        raise HTTPException(
            422, f"form field {_shown(repeated)} is sent {names.count(repeated)} times; send it once"
        )
    # the schema says boolean: true or false, not the 1, 0, yes, on, ... that FastAPI would also take
    loose = [(n, v) for n, v in items if n in _BOOLEAN_FIELDS and str(v).lower() not in ("true", "false")]
    if loose:
        name, value = loose[0]
        raise HTTPException(422, f"form field {_shown(name)} is {_shown(value)}; send true or false")
    return RestoreForm(image, task, level, model, ensemble, fast, format, preview)


def _check_form(form: RestoreForm) -> None:
    """Refuse what no restore could do (422) before any upload is read."""
    # A mask-aware model needs a mask, which this API does not take: those stay command-line only.
    shipped = {n: e for n, e in zoo.WEIGHTS.items() if e.task == form.task and e.variant not in HIDDEN}
    if not shipped:
        raise HTTPException(422, f"no shipped model for task {form.task!r} yet; {_available()}")
    if form.model is not None:
        if form.model not in zoo.WEIGHTS:
            raise HTTPException(422, f"unknown model {_shown(form.model)}; {_available()}")
        if zoo.WEIGHTS[form.model].task != form.task:
            raise HTTPException(
                422, f"model {form.model} restores {zoo.WEIGHTS[form.model].task}, not {form.task}"
            )
        if zoo.WEIGHTS[form.model].variant == "mask":
            raise HTTPException(
                422,
                f"model {form.model} needs a mask, which the web API does not take (rednet restore --mask)",
            )
        if zoo.WEIGHTS[form.model].variant == "detect":
            raise HTTPException(
                422, f"model {form.model} finds damage, it does not restore: leave out the model"
            )
    elif not any(e.fast == form.fast for e in shipped.values()):
        kind = "fast" if form.fast else "full"
        raise HTTPException(422, f"no {kind} model for task {form.task!r}; {_available()}")
    spec, level = LEVELS[form.task], form.level
    if level is not None and not math.isfinite(level):
        raise HTTPException(422, "level must be a finite number")
    if spec.get("required") and level is None:
        raise HTTPException(422, f"task {form.task} needs level = {spec['name']} ({spec['help']})")
    if level is not None and "choices" in spec and level not in spec["choices"]:
        raise HTTPException(422, f"{spec['name']} must be one of {spec['choices']}, got {level:g}")
    if level is not None and "min" in spec and not spec["min"] <= level <= spec["max"]:
        raise HTTPException(422, f"{spec['name']} must be {spec['min']}-{spec['max']}, got {level:g}")


def _available() -> str:
    models = ", ".join(f"{n} ({e.task})" for n, e in zoo.WEIGHTS.items()) or "none"
    return f"this server has: {models}"


# --------------------------------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------------------------------


def _page() -> tuple[str, str]:
    """The page's HTML and the Content-Security-Policy that allows exactly its inline script."""
    html = (_STATIC / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts
    )
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src 'self' blob: data:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )
    return html, csp


def _models_json(settings: ServeSettings) -> dict[str, Any]:
    models = []
    for name, entry in zoo.WEIGHTS.items():
        path = zoo.WEIGHTS_DIR / entry.file
        card = zoo.read_card(name)
        models.append(
            {
                "name": name,
                "task": entry.task,
                "channels": entry.channels,
                "fast": entry.fast,
                "bytes": path.stat().st_size if path.is_file() else None,
                "summary": zoo.card_summary(card) if card else None,
                "card": card,
            }
        )
    tasks = {}
    for task in TASKS:
        names = [
            m["name"] for m in models if m["task"] == task and zoo.WEIGHTS[m["name"]].variant not in HIDDEN
        ]
        if names:
            level = dict(LEVELS[task])
            if ALL_TASKS[task].level_recorded_only:
                level["used"] = False  # the shipped models are blind: the level is only recorded
            tasks[task] = {"models": names, "fast": any(zoo.WEIGHTS[n].fast for n in names), "level": level}
    limits = {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_pixels": settings.max_pixels,
        "queue_size": settings.queue_size,
        "workers": settings.workers,
        "tile": settings.tile,
    }
    return {"models": models, "tasks": tasks, "limits": limits}


class ErrorBody(BaseModel):
    """The body of every error response."""

    detail: str
    """One readable sentence: what was wrong and, where there is one, the remedy."""


_ERRORS = {
    400: "truncated or corrupt image, empty upload",
    403: "a request from another origin (its Origin header is not this server, or null)",
    404: "no such job (finished jobs are kept for a while), or no input preview",
    409: "the job is not finished yet",
    410: "the job was cancelled",
    413: "upload, image or enlarged image too large",
    415: "not an image rednet reads",
    421: "a Host header this server does not answer to",
    422: "a bad, missing or empty field, or a task, level or model that no shipped model restores",
    500: "the restore failed (its reason)",
    503: "queue full; retry after Retry-After seconds",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error ``codes``: each the :class:`ErrorBody` with its meaning."""
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


_IMAGE = {
    "description": "the restored image: PNG, or with format=input the upload's own format",
    "content": {m: {"schema": {"type": "string", "format": "binary"}} for _, m in _OUTPUT_TYPES.values()},
}
# The stateful phase of API fuzzers follows these from a new job to its endpoints (not to /input: that
# exists only for jobs sent with preview=true, once done).
_JOB_LINKS = {
    name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}}
    for name, operation in [
        ("GetJob", "job_state"),
        ("GetResult", "job_result"),
        ("CancelJob", "job_cancel"),
    ]
}
JobId = Annotated[str, PathParam(pattern="^[0-9a-f]{32}$", description="the job's id (32 hex digits)")]


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """A 422 in the one error shape: the fields' errors as one sentence, echoing at most 200 characters
    of each value."""
    assert isinstance(error, RequestValidationError)
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "path", "query")) or "request"
        got = "" if e.get("type") == "missing" else f" (got {_shown(e.get('input'))})"
        parts.append(f"{where}: {e.get('msg', 'invalid')}{got}")
    return JSONResponse({"detail": "; ".join(parts)}, status_code=422)


async def _http_error(request: Request, error: Exception) -> Response:
    """FastAPI's HTTPException handler, with ``Allow`` on a 405 naming every method of the path (Starlette
    names those of the first route that matches it, e.g. GET without DELETE)."""
    from fastapi.exception_handlers import http_exception_handler

    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 405:
        allowed = set()
        for route in request.app.routes:
            if route.matches(request.scope)[0] != Match.NONE:
                allowed |= getattr(route, "methods", None) or set()
        error.headers = {**(error.headers or {}), "Allow": ", ".join(sorted(allowed))}
    return await http_exception_handler(request, error)


async def _client_gone(request: Request) -> None:
    """Return once the client has disconnected (the request's body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _busy(e: BusyError) -> HTTPException:
    return HTTPException(
        503,
        f"busy: {e.active} restores are already accepted (queue full); retry in {e.retry_after} s",
        headers={"Retry-After": str(e.retry_after)},
    )


def _result_response(job: Job, data: bytes, media_type: str, name: str) -> Response:
    timings = ", ".join(f"{k};dur={v}" for k, v in job.timings_ms.items())
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Server-Timing": timings,
        "X-Rednet-Model": job.model or "",
        "X-Rednet-Tiles": str(job.tiles_total),
        "X-Rednet-Job": job.id,
        "Cache-Control": "no-store",
    }
    return Response(data, media_type=media_type, headers=headers)


def _job_error(job: Job) -> HTTPException:
    if job.state == "cancelled":
        return HTTPException(410, f"job {job.id} was cancelled")
    assert job.error is not None
    return HTTPException(job.error[0], job.error[1])


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The web app: page, API and job queue for ``settings`` (see the module docstring).

    The queue, model cache and upload folder belong to this app (``app.state.service``); they are
    released when the app's lifespan ends (use ``with TestClient(app)`` in tests).
    """
    settings = settings or ServeSettings()
    service = Service(settings)
    html, csp = _page()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        try:
            yield
        finally:
            service.close()

    app = FastAPIOffline(  # FastAPI whose /docs and /redoc load their scripts from here, not a CDN
        title="rednet",
        version=__version__,
        summary="Restore images with RED-Net (the tasks of the shipped models: GET /v1/models).",
        lifespan=lifespan,
        responses=_errors(403, 421),
        generate_unique_id_function=lambda route: route.name,  # operationId = the function's name
        exception_handlers={RequestValidationError: _validation_error, StarletteHTTPException: _http_error},
    )
    app.state.service = service
    app.add_middleware(_Guard, settings=settings, csp=csp)

    async def accept(form: RestoreForm) -> Job:
        _check_form(form)
        job = Job(
            id=uuid.uuid4().hex,
            task=form.task,
            level=form.level,
            model=form.model,
            ensemble=form.ensemble,
            fast=form.fast,
            output=form.format,
            preview=form.preview,
            download_name="",
        )
        try:
            service.reserve(job)
        except BusyError as e:
            raise _busy(e) from None
        try:
            data = await form.image.read()
            if not data:
                raise HTTPException(400, "upload: empty file (0 bytes)")
            x, info = await run_in_threadpool(service.decode, job, data)
            if task_named(form.task).enlarges:
                pixels = x.shape[-1] * x.shape[-2] * int(form.level or 1) ** 2
                if pixels > settings.max_pixels:
                    raise HTTPException(
                        413,
                        f"the enlarged image would have {pixels / 1e6:.1f} megapixels, over this server's "
                        f"limit of {settings.max_pixels / 1e6:g} (rednet serve --max-megapixels)",
                    )
        except BaseException:
            service.discard(job)
            raise
        finally:
            await form.image.close()
        job.download_name = _download_name(form.image.filename, form.format, info.format)
        service.start(job, x, info)
        return job

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", summary="liveness and queue state")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "active_jobs": service.active(),
            "capacity": service.capacity,
            "device": str(service.device),
            "bf16": service.bf16,
        }

    @app.get("/v1/models", summary="the shipped models, their cards, the tasks they cover and the limits")
    async def models() -> dict[str, Any]:
        return _models_json(settings)

    @app.get(
        "/v1/demo",
        summary="the demo upload: the astronaut's face with Gaussian noise sigma 25 (PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def demo() -> Response:
        data = await run_in_threadpool(service.demo)
        headers = {"Content-Disposition": 'inline; filename="astronaut-noisy.png"', "X-Rednet-Sigma": "25"}
        return Response(data, media_type="image/png", headers=headers)

    @app.post(
        "/v1/restore",
        summary="restore an image and return it (waits for the result)",
        response_class=Response,
        responses={200: _IMAGE, **_errors(400, 413, 415, 422, 500, 503)},
    )
    async def restore_now(request: Request, form: Annotated[RestoreForm, Depends(_restore_form)]) -> Response:
        job = await accept(form)
        assert job.future is not None
        done, gone = asyncio.wrap_future(job.future), asyncio.ensure_future(_client_gone(request))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({done, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if (
            not done.done()
        ):  # the client left or timed out: free its slot (a running job stops after its tile)
            service.cancel(job)
            return Response(status_code=499)  # nginx's "client closed request"; no one reads it
        if job.state != "done" or job.result is None:
            raise _job_error(job)
        return _result_response(job, job.result, job.media_type, job.download_name)

    @app.post(
        "/v1/jobs",
        status_code=202,
        summary="accept a restore and return its id at once",
        responses={202: {"links": _JOB_LINKS}, **_errors(400, 413, 415, 422, 503)},
    )
    async def submit(form: Annotated[RestoreForm, Depends(_restore_form)]) -> dict[str, Any]:
        job = await accept(form)
        return job.public(service.queue_position(job))

    def find(job_id: str) -> Job:
        job = service.get(job_id)
        if job is None:
            raise HTTPException(
                404,
                f"no job {job_id} (finished jobs are kept {settings.result_ttl_s:g} s, at most "
                f"{settings.keep_results})",
            )
        return job

    def find_kept(job_id: str) -> Job:
        """The job, unless it was deleted (cancelled): then it is gone (410), though kept a while."""
        job = find(job_id)
        if job.cancel.is_set():
            raise HTTPException(410, f"job {job_id} was cancelled")
        return job

    @app.get("/v1/jobs/{job_id}", summary="a job's state and tile progress", responses=_errors(404, 410, 422))
    async def job_state(job_id: JobId) -> dict[str, Any]:
        job = find_kept(job_id)
        return job.public(service.queue_position(job))

    @app.get(
        "/v1/jobs/{job_id}/result",
        summary="a finished job's image",
        response_class=Response,
        responses={200: _IMAGE, **_errors(404, 409, 410, 422, 500)},
    )
    async def job_result(job_id: JobId) -> Response:
        job = find_kept(job_id)
        if not job.finished_state:
            raise HTTPException(409, f"job {job_id} is {job.state}; poll GET /v1/jobs/{job_id}")
        if job.state != "done" or job.result is None:
            raise _job_error(job)
        return _result_response(job, job.result, job.media_type, job.download_name)

    @app.get(
        "/v1/jobs/{job_id}/input",
        summary="PNG of the model's input (jobs sent with preview=true)",
        response_class=Response,
        responses={
            200: {
                "description": "the model's input",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            **_errors(404, 410, 422),
        },
    )
    async def job_input(job_id: JobId) -> Response:
        job = find_kept(job_id)
        if job.input_preview is None:
            raise HTTPException(
                404, f"job {job_id} has no input preview (send preview=true; ready when done)"
            )
        return Response(job.input_preview, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.delete(
        "/v1/jobs/{job_id}",
        summary="cancel a job (a running one stops after its current tile); it is gone then (410)",
        responses=_errors(404, 422),
    )
    async def job_cancel(job_id: JobId) -> dict[str, Any]:
        job = find(job_id)
        service.cancel(job)
        return job.public(service.queue_position(job))

    return app


# --------------------------------------------------------------------------------------------------
# running it
# --------------------------------------------------------------------------------------------------


def serve(settings: ServeSettings) -> None:
    """Run the app with uvicorn until interrupted (blocking)."""
    import uvicorn

    if not settings.loopback:
        logger.warning(
            "rednet serve: listening on %s, reachable from other machines; there is no authentication",
            settings.host,
        )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
