"""The upload form of ``POST /v1/restore`` and ``POST /v1/jobs`` (:class:`RestoreForm`) and its checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import File, Form, HTTPException, Request, UploadFile

from rednet import zoo
from rednet.web.guard import _shown
from rednet.web.settings import HIDDEN, LEVELS, Task


@dataclass
class RestoreForm:
    """The multipart fields of ``POST /v1/restore`` and ``POST /v1/jobs``."""

    image: UploadFile
    task: str
    level: float | None  # the value of the task's own level field (sigma, scale or quality), if sent
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
    sigma: Annotated[
        float | None, Form(description="denoise: the noise std, 0-255 scale (recorded: the models are blind)")
    ] = None,
    scale: Annotated[
        float | None, Form(description="sr: the enlargement factor, 2, 3 or 4 (required)")
    ] = None,
    quality: Annotated[
        float | None,
        Form(description="jpeg: the input's JPEG quality, 1-100 (recorded: the models are blind)"),
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
    # each task takes its own level, by its own name (rednet restore's --sigma, --scale, --quality)
    sent = {"sigma": sigma, "scale": scale, "quality": quality}
    own = LEVELS[task]["name"]
    foreign = [name for name, value in sent.items() if value is not None and name != own]
    if foreign:
        takes = f"takes {own}" if own else "takes no level"
        raise HTTPException(422, f"task {task} {takes}, not {foreign[0]}: leave out {foreign[0]}")
    return RestoreForm(image, task, sent.get(own), model, ensemble, fast, format, preview)


def _check_form(form: RestoreForm) -> None:
    """Refuse what no restore could do (422) before any upload is read."""
    # A mask-aware model needs a mask, which this API does not take: those stay command-line only.
    shipped = {n: e for n, e in zoo.WEIGHTS.items() if e.task == form.task and e.variant not in HIDDEN}
    if not shipped:
        raise HTTPException(422, f"no shipped model for task {form.task!r} yet; {_available()}")
    if form.model is not None:
        if form.model not in zoo.WEIGHTS:
            raise HTTPException(422, f"unknown model {_shown(form.model)}; {_available()}")
        if zoo.WEIGHTS[form.model].task not in (form.task, zoo.ANY_TASK):
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
        raise HTTPException(422, f"{spec['name']} must be a finite number")
    if spec.get("required") and level is None:
        raise HTTPException(422, f"task {form.task} needs {spec['name']} ({spec['help']})")
    if level is not None and "choices" in spec and level not in spec["choices"]:
        raise HTTPException(422, f"{spec['name']} must be one of {spec['choices']}, got {level:g}")
    if level is not None and "min" in spec and not spec["min"] <= level <= spec["max"]:
        raise HTTPException(422, f"{spec['name']} must be {spec['min']}-{spec['max']}, got {level:g}")


def _available() -> str:
    models = ", ".join(f"{n} ({e.task})" for n, e in zoo.WEIGHTS.items()) or "none"
    return f"this server has: {models}"
