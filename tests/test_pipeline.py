"""rednet.pipeline: ``rednet restore`` and ``rednet serve`` restore through the same function."""

from __future__ import annotations

import io as _io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from rednet import pipeline
from rednet.cli import main
from rednet.tasks import task_named


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """The tasks that :func:`rednet.pipeline.restore_image` was called for (it still restores)."""
    seen: list[str] = []
    real = pipeline.restore_image

    def spy(model, x, info, task, level, **options):
        seen.append(task.name)
        return real(model, x, info, task, level, **options)

    monkeypatch.setattr(pipeline, "restore_image", spy)
    return seen


def _photo() -> Image.Image:
    return Image.fromarray(data.camera()[200:224, 200:224])


def test_restore_calls_the_pipeline(calls, tmp_path) -> None:
    _photo().save(tmp_path / "in.png")
    argv = [
        "restore",
        "--task",
        "sr",
        "--scale",
        "2",
        str(tmp_path / "in.png"),
        "-o",
        str(tmp_path / "o.png"),
    ]
    assert main(argv) == 0
    assert calls == ["sr"] and Image.open(tmp_path / "o.png").size == (48, 48)


def test_serve_calls_the_pipeline(calls) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("multipart")
    from fastapi.testclient import TestClient

    from rednet.web import ServeSettings, create_app

    buf = _io.BytesIO()
    _photo().save(buf, "PNG")
    with TestClient(create_app(ServeSettings()), base_url="http://127.0.0.1:8000") as client:
        files = {"image": ("in.png", buf.getvalue(), "application/octet-stream")}
        response = client.post("/v1/restore", files=files, data={"task": "sr", "scale": "2"})
    assert response.status_code == 200, response.text
    assert calls == ["sr"] and Image.open(_io.BytesIO(response.content)).size == (48, 48)


def test_blind_inpainting_is_two_steps_and_a_named_model_is_one() -> None:
    inpaint = task_named("inpaint")
    blind = pipeline.choose_models(inpaint, 3)
    assert (blind.detector, blind.model) == ("inpaint-detect", "inpaint-mask")
    assert pipeline.choose_models(inpaint, 3, model="inpaint") == pipeline.Choice("inpaint")
    assert pipeline.choose_models(inpaint, 3, masked=True) == pipeline.Choice("inpaint-mask")
    web = pipeline.choose_models(inpaint, 3, exact_variant=False)
    assert (web.detector, web.model) == ("inpaint-detect", "inpaint-mask")
    deblur = task_named("deblur")
    assert pipeline.choose_models(deblur, 3, kernel="disk").model == "deblur-disk"
    assert pipeline.choose_models(task_named("denoise"), 1).model == "denoise-gray"
    assert pipeline.choose_models(task_named("denoise"), 3).model == "denoise-color"


def test_restore_image_enlarges_alpha_with_the_image() -> None:
    from rednet.io import ImageInfo
    from rednet.model import REDNet, REDNetConfig

    model = REDNet(REDNetConfig(depth=4, width=4, channels=1)).eval()
    x = np.asarray(data.camera()[:10, :12], dtype=np.float32)[None, None] / 255
    import torch

    info = ImageInfo(alpha=torch.ones(1, 1, 10, 12))
    out = pipeline.restore_image(model, torch.from_numpy(x), info, task_named("sr"), 3)
    assert out.image.shape[-2:] == (30, 36) and out.info.alpha.shape[-2:] == (30, 36)
    assert out.model_input.shape[-2:] == (30, 36) and out.mask is None
