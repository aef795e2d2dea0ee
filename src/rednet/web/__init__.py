"""``rednet serve``: a web page and a JSON HTTP API that restore uploaded images, in one process.

The app (FastAPI, served by uvicorn) is made by :func:`create_app` from a :class:`ServeSettings`:

* ``GET /`` the page (``static/index.html``: pick, drop or paste an image, restore it, compare before and
  after with a slider and a zoomed crop, download the result; a demo button restores a built-in sample).
* ``POST /v1/restore`` multipart ``image`` + ``task``, the task's own level (``sigma``, ``scale`` or
  ``quality``), ``model``, ``ensemble``, ``fast``, ``format`` -> the restored image (PNG, or the input's
  format) with ``Server-Timing`` headers.
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
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from rednet import __version__, zoo
from rednet.tasks import TASKS as ALL_TASKS
from rednet.tasks import task_named
from rednet.web.form import RestoreForm, _check_form, _restore_form
from rednet.web.guard import _Guard, _shown
from rednet.web.jobs import BusyError, Job, Service, _download_name, demo_sample
from rednet.web.settings import _OUTPUT_TYPES, _STATIC, HIDDEN, LEVELS, TASKS, ServeSettings

__all__ = ["TASKS", "ServeSettings", "create_app", "demo_sample", "serve"]

logger = logging.getLogger(__name__)

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


async def _accept(form: RestoreForm, service: Service) -> Job:
    """Check a form, reserve a slot, decode the upload and start the job (the slot is freed on failure)."""
    settings = service.settings
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


def _add_info_routes(app: FastAPI, service: Service, html: str) -> None:
    """The page, /healthz, /v1/models and /v1/demo."""
    settings = service.settings

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


def _add_job_routes(app: FastAPI, service: Service) -> None:
    """GET /v1/jobs/{id} (state), its /result and /input, and DELETE (cancel)."""
    settings = service.settings

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
    _add_info_routes(app, service, html)

    @app.post(
        "/v1/restore",
        summary="restore an image and return it (waits for the result)",
        response_class=Response,
        responses={200: _IMAGE, **_errors(400, 413, 415, 422, 500, 503)},
    )
    async def restore_now(request: Request, form: Annotated[RestoreForm, Depends(_restore_form)]) -> Response:
        job = await _accept(form, service)
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
        job = await _accept(form, service)
        return job.public(service.queue_position(job))

    _add_job_routes(app, service)
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
