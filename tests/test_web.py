"""rednet serve: the HTTP API (FastAPI TestClient), its limits and error paths, its queue, its load test."""

from __future__ import annotations

import contextlib
import io as _io
import json
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient  # noqa: E402

from rednet import bench_serve, pipeline, web, zoo  # noqa: E402
from rednet.cli import build_parser  # noqa: E402
from rednet.model import RED10, REDNet  # noqa: E402
from rednet.web import ServeSettings, create_app  # noqa: E402

BASE = "http://127.0.0.1:8000"


def png(a: np.ndarray, **options) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", **options)
    return buf.getvalue()


def noisy_gray(size: int = 64, sigma: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    clean = data.camera()[200 : 200 + size, 200 : 200 + size]
    noise = np.random.default_rng(0).normal(0, sigma, clean.shape)
    return clean, np.clip(np.round(clean + noise), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def decode(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(_io.BytesIO(content)))


SMALL = png(noisy_gray(32)[1])


@pytest.fixture
def make_client() -> Iterator:
    clients = []

    def make(**settings) -> TestClient:
        client = TestClient(create_app(ServeSettings(**settings)), base_url=BASE)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One server with the default settings for the tests that do not change them (models stay loaded)."""
    with TestClient(create_app(ServeSettings()), base_url=BASE) as client:
        yield client


def post(client: TestClient, content: bytes, name: str = "noisy.png", path: str = "/v1/restore", **fields):
    return client.post(path, files={"image": (name, content, "application/octet-stream")}, data=fields)


def still_serves(client: TestClient) -> None:
    """The server is up and a valid restore succeeds."""
    assert client.get("/healthz").json()["status"] == "ok"
    response = post(client, SMALL, task="denoise")
    assert response.status_code == 200, response.text
    assert decode(response.content).shape == (32, 32)


# -- endpoints ------------------------------------------------------------------------------------------


def test_healthz_and_the_page_with_its_security_headers(client):
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file"' in page.text and 'id="demo"' in page.text and 'id="split"' in page.text
    csp = page.headers["content-security-policy"]
    script = re.search(r"<script>(.*?)</script>", page.text, flags=re.DOTALL).group(1)
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp and "frame-ancestors 'none'" in csp  # the inline script, nothing else
    assert page.headers["x-content-type-options"] == "nosniff"


def test_models_lists_the_shipped_models_with_cards_tasks_and_limits(make_client):
    client = make_client(max_pixels=1234, max_upload_bytes=5678)
    body = client.get("/v1/models").json()
    assert [m["name"] for m in body["models"]] == list(zoo.WEIGHTS)
    # RED30s, but for the damage model of blind inpainting (a RED20)
    assert all(
        m["card"]["architecture"]["depth"] == 30 or m["name"] == "inpaint-detect" for m in body["models"]
    )
    # only what has a model of its own (the all-corruption model is named: model=restore-any)
    assert set(body["tasks"]) == {e.task for e in zoo.WEIGHTS.values()} - {zoo.ANY_TASK}
    full = [n for n in body["tasks"]["denoise"]["models"] if not zoo.WEIGHTS[n].fast]
    assert full == ["denoise-gray", "denoise-color"]
    for task, listed in body["tasks"].items():
        assert listed["fast"] == any(e.fast for e in zoo.WEIGHTS.values() if e.task == task)
    # the mask-aware model needs a mask upload; the damage model is the first step of the default
    assert body["tasks"]["inpaint"]["models"] == ["inpaint"]
    assert body["limits"]["max_pixels"] == 1234 and body["limits"]["max_upload_bytes"] == 5678


def test_openapi_schema_describes_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    for path in ["/v1/restore", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/models"]:
        assert path in schema["paths"]
    form = json.dumps(schema["components"])
    for field in ["image", "task", "sigma", "scale", "quality", "model", "ensemble", "fast", "format"]:
        assert f'"{field}"' in form


def test_restore_denoises_a_gray_upload_with_timing_headers_and_a_safe_name(client):
    clean, noisy = noisy_gray(96)
    response = post(client, png(noisy), name="../../etc/my photo.png", task="denoise", sigma="25")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'attachment; filename="my_photo-restored.png"'
    assert response.headers["x-rednet-model"] == "denoise-gray"
    assert re.search(r"restore;dur=[\d.]+", response.headers["server-timing"])
    restored = decode(response.content)
    assert restored.shape == clean.shape
    assert psnr(restored, clean) > psnr(noisy, clean) + 3


def test_the_all_corruption_model_restores_any_task_when_named(client):
    clean, noisy = noisy_gray(96)
    response = post(client, png(noisy), task="denoise", model="restore-any")
    assert response.status_code == 200 and response.headers["x-rednet-model"] == "restore-any"
    assert psnr(decode(response.content), clean) > psnr(noisy, clean) + 3
    response = post(client, png(clean[::2, ::2]), task="sr", scale="2", model="restore-any")
    assert response.status_code == 200 and decode(response.content).shape == clean.shape


def test_restore_keeps_colour_alpha_and_returns_the_input_format_on_request(client):
    rgb = data.astronaut()[100:148, 200:248]
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])
    response = post(client, png(rgba), task="denoise")
    assert response.status_code == 200 and response.headers["x-rednet-model"] == "denoise-color"
    out = Image.open(_io.BytesIO(response.content))
    assert out.mode == "RGBA" and np.all(np.asarray(out)[..., 3] == 200)
    buf = _io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    response = post(client, buf.getvalue(), name="photo.png", task="denoise", format="input")  # sniffed
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-disposition"].endswith('photo-restored.jpg"')
    assert Image.open(_io.BytesIO(response.content)).format == "JPEG"


def test_demo_sample_is_the_noisy_astronaut(client):
    response = client.get("/v1/demo")
    noisy = decode(response.content)
    assert response.status_code == 200 and noisy.shape == (256, 256, 3)
    clean = data.astronaut()[16:272, 112:368]
    assert 19 < psnr(noisy, clean) < 22  # sigma 25 on the 0-255 scale


# -- bad uploads: each gets its 4xx with a readable message, and the server keeps serving -----------------


def test_oversized_upload_is_413_with_or_without_content_length(make_client):
    client = make_client(max_upload_bytes=50_000)
    big = png(np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8))
    assert len(big) > 50_000
    response = post(client, big)
    assert response.status_code == 413
    assert response.json()["detail"] == (
        f"upload is {len(big) / 1024:.0f} KiB, over this server's limit of 49 KiB "
        "(rednet serve --max-upload-mb)"
    )
    still_serves(client)

    boundary = "rednetboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'.encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )
    chunks = (body[i : i + 8192] for i in range(0, len(body), 8192))  # chunked: no Content-Length
    response = client.post(
        "/v1/restore", content=chunks, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413 and response.json()["detail"].startswith(
        "upload is over this server's limit of 49 KiB"
    )
    still_serves(client)


def test_image_over_the_pixel_limit_is_413_before_decoding(make_client):
    client = make_client(max_pixels=60 * 60)
    response = post(client, png(noisy_gray(64)[1]))
    assert response.status_code == 413
    assert response.json()["detail"].startswith("upload: 64x64 = 0.0 megapixels exceeds this server's limit")
    still_serves(client)


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 1 KB PNG whose header declares width x height gray pixels (900 megapixels by default)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    rows = zlib.compress(b"\x00" * (width + 1) * 4)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("side", "message"),
    [(30_000, "upload: 900.0 megapixels exceeds"), (9_000, "upload: 9000x9000 = 81.0 megapixels exceeds")],
)
def test_decompression_bomb_is_413_and_costs_nothing(client, side, message):
    bomb = bomb_png(side, side)  # above Pillow's own limit (179 MP), and above only the server's (16 MP)
    assert len(bomb) < 2000
    start = time.perf_counter()
    response = post(client, bomb)
    assert response.status_code == 413 and message in response.json()["detail"]
    assert time.perf_counter() - start < 5
    still_serves(client)


def test_truncated_and_empty_images_are_400(client):
    whole = png(noisy_gray(64)[1])
    response = post(client, whole[: len(whole) // 2])
    assert response.status_code == 400
    assert response.json()["detail"] == "upload: truncated or corrupt image file (image file is truncated)"
    still_serves(client)
    response = post(client, b"")
    assert response.status_code == 400 and "empty" in response.json()["detail"]
    still_serves(client)


def test_non_image_and_unsupported_formats_are_415_whatever_their_name(client):
    response = post(client, b"just some text, not pixels\n" * 10, name="photo.png")
    assert response.status_code == 415 and "not an image rednet reads" in response.json()["detail"]
    still_serves(client)
    buf = _io.BytesIO()
    Image.fromarray(noisy_gray(16)[1]).save(buf, "GIF")
    response = post(client, buf.getvalue(), name="photo.png")
    assert response.status_code == 415
    still_serves(client)


def test_error_messages_never_show_server_paths(client):
    whole = png(noisy_gray(64)[1])
    for content in (whole[:100], b"text", bomb_png()):
        detail = post(client, content).json()["detail"]
        assert "/" not in detail.replace("/v1", "") and "rednet-serve" not in detail


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task": "colorize"}, "Input should be 'denoise', 'sr', 'jpeg', 'deblur' or 'inpaint'"),
        (
            {"task": "inpaint", "model": "inpaint-mask"},
            "model inpaint-mask needs a mask, which the web API does not take (rednet restore --mask)",
        ),
        (
            {"task": "inpaint", "model": "inpaint-detect"},
            "model inpaint-detect finds damage, it does not restore: leave out the model",
        ),
        ({"task": "sr"}, "task sr needs scale"),
        ({"task": "denoise", "scale": "2"}, "task denoise takes sigma, not scale: leave out scale"),
        ({"task": "deblur", "quality": "20"}, "task deblur takes no level, not quality: leave out quality"),
        (
            {"task": "denoise", "model": "nope"},
            "unknown model 'nope'; this server has: denoise-gray (denoise)",
        ),
        ({"task": "jpeg", "fast": "true"}, "no fast model for task 'jpeg'"),
        ({"task": "denoise", "sigma": "300"}, "sigma must be 0-255, got 300"),
        ({"task": "denoise", "sigma": "nan"}, "sigma must be a finite number"),
        ({"task": "denoise", "format": "gif"}, "Input should be 'png' or 'input'"),
    ],
)
def test_bad_task_model_or_level_is_422_with_what_is_available(client, fields, message):
    response = post(client, SMALL, **fields)
    assert response.status_code == 422
    assert message in json.dumps(response.json()["detail"]).replace('\\"', '"')
    still_serves(client)


def test_a_task_without_a_shipped_model_is_422_naming_what_the_server_has(client, monkeypatch):
    shipped = {n: e for n, e in zoo.WEIGHTS.items() if e.task != "deblur"}
    monkeypatch.setattr(zoo, "WEIGHTS", shipped)
    response = post(client, SMALL, task="deblur")
    assert response.status_code == 422
    assert response.json()["detail"].startswith(
        "no shipped model for task 'deblur' yet; this server has: denoise-gray (denoise)"
    )


def test_sr_through_the_api_enlarges_by_its_scale_with_the_shipped_model(client):
    response = post(client, SMALL, task="sr", scale="3")
    assert response.status_code == 200
    assert Image.open(_io.BytesIO(response.content)).size == (96, 96)


@pytest.mark.parametrize(
    ("task", "fields", "model"), [("denoise", {}, "denoise-color-fast"), ("sr", {"scale": "2"}, "sr-fast")]
)
def test_fast_true_restores_with_the_tasks_fast_model(client, task, fields, model):
    response = post(client, SMALL, task=task, fast="true", **fields)
    assert response.status_code == 200, response.text
    assert response.headers["x-rednet-model"] == model


def test_a_file_path_from_the_client_is_never_used_as_a_model(client, tmp_path, monkeypatch):
    torch.manual_seed(0)
    weights = zoo.save_weights(tmp_path / "mine.safetensors", REDNet(RED10), {"task": "denoise"})
    opened = []
    monkeypatch.setattr(zoo, "load_weights", lambda path: opened.append(path))
    for model in (str(weights), "../weights/denoise-gray.safetensors", "denoise-gray.safetensors"):
        response = post(client, SMALL, task="denoise", model=model)
        assert response.status_code == 422 and "unknown model" in response.json()["detail"]
    assert opened == []


def test_uploads_live_only_in_a_private_temp_folder_removed_at_shutdown(tmp_path):
    settings = ServeSettings(temp_dir=str(tmp_path))
    with TestClient(create_app(settings), base_url=BASE) as client:
        for content in (SMALL, b"text", SMALL[:60]):
            post(client, content)
        folders = list(tmp_path.iterdir())
        assert len(folders) == 1 and folders[0].name.startswith("rednet-serve-")
        assert list(folders[0].iterdir()) == []  # each upload is deleted once decoded
        assert oct(folders[0].stat().st_mode & 0o777) == "0o700"
    assert list(tmp_path.iterdir()) == []


def test_foreign_host_and_cross_origin_requests_are_refused(client):
    assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 421
    response = client.post(
        "/v1/restore", files={"image": ("a.png", SMALL)}, headers={"origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert client.get("/healthz", headers={"origin": BASE}).status_code == 200
    still_serves(client)


def test_settings_default_to_loopback_and_the_cli_has_serve():
    assert ServeSettings().host == "127.0.0.1" and ServeSettings().loopback
    assert ServeSettings(host="0.0.0.0").hosts() is None and not ServeSettings(host="0.0.0.0").loopback
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.bench) == ("127.0.0.1", 8000, False)
    with pytest.raises(ValueError, match="queue_size"):
        ServeSettings(queue_size=-1)


# -- jobs, progress, the queue --------------------------------------------------------------------------


class Gate:
    """A stand-in for rednet.infer.restore that reports ``tiles`` tiles and waits for ``release()``."""

    def __init__(self, tiles: int = 3) -> None:
        self.tiles, self.open, self.entered = tiles, threading.Event(), threading.Semaphore(0)

    def __call__(self, model, x, *, on_tile=None, **options):
        on_tile(0, self.tiles)
        self.entered.release()
        for done in range(1, self.tiles + 1):
            assert self.open.wait(30)
            on_tile(done, self.tiles)
        return x

    def release(self) -> None:
        self.open.set()


def wait_for(client: TestClient, job_id: str, states: tuple[str, ...], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {states}: {job}")


def test_jobs_report_tile_progress_and_give_the_result(make_client):
    client = make_client(tile=32)
    clean, noisy = noisy_gray(96)
    response = post(client, png(noisy), path="/v1/jobs", task="denoise", preview="true")
    assert response.status_code == 202
    job = wait_for(client, response.json()["id"], ("done", "failed"))
    assert job["state"] == "done" and (job["tiles_done"], job["tiles_total"], job["progress"]) == (9, 9, 1.0)
    result = client.get(job["result"])
    assert result.status_code == 200 and psnr(decode(result.content), clean) > psnr(noisy, clean) + 3
    preview = client.get(job["input"])
    assert preview.status_code == 200 and np.array_equal(decode(preview.content), noisy)
    assert client.get(f"/v1/jobs/{'0' * 32}").status_code == 404
    assert client.get("/v1/jobs/0123").status_code == 422  # not a job id: 32 hex digits


def test_a_job_gives_its_level_by_the_tasks_own_name(client):
    for task, fields, shown in [("sr", {"scale": "2"}, {"scale": 2}), ("denoise", {}, {"sigma": None})]:
        job = wait_for(
            client, post(client, SMALL, path="/v1/jobs", task=task, **fields).json()["id"], ("done",)
        )
        assert {k: job[k] for k in shown} == shown and "level" not in job
    job = wait_for(client, post(client, SMALL, path="/v1/jobs", task="inpaint").json()["id"], ("done",))
    assert not {"level", "sigma", "scale", "quality"} & set(job)  # inpainting takes no level


def test_full_queue_answers_503_with_retry_after_and_pages_stay_responsive(make_client, monkeypatch):
    gate = Gate()
    monkeypatch.setattr(pipeline, "restore", gate)
    client = make_client(workers=1, queue_size=1)
    first = post(client, SMALL, path="/v1/jobs").json()
    assert gate.entered.acquire(timeout=30)
    second = post(client, SMALL, path="/v1/jobs").json()
    assert client.get(f"/v1/jobs/{second['id']}").json()["queue_position"] == 1
    running = client.get(f"/v1/jobs/{first['id']}").json()
    assert running["state"] == "running" and (running["tiles_done"], running["tiles_total"]) == (0, 3)
    assert client.get(f"/v1/jobs/{first['id']}/result").status_code == 409

    for path in ("/v1/restore", "/v1/jobs"):
        busy = post(client, SMALL, path=path)
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        assert busy.json()["detail"].startswith("busy: 2 restores are already accepted")
    assert client.get("/healthz").json()["active_jobs"] == 2  # answered while the worker is busy
    assert client.get("/").status_code == 200

    gate.release()
    for job in (first, second):
        assert wait_for(client, job["id"], ("done",))["progress"] == 1.0
    still_serves(client)


def test_cancel_a_queued_and_a_running_job(make_client, monkeypatch):
    gate = Gate(tiles=2)
    monkeypatch.setattr(pipeline, "restore", gate)
    client = make_client(workers=1, queue_size=2)
    running = post(client, SMALL, path="/v1/jobs").json()
    assert gate.entered.acquire(timeout=30)
    queued = post(client, SMALL, path="/v1/jobs").json()
    assert client.delete(f"/v1/jobs/{queued['id']}").json()["state"] == "cancelled"
    assert client.delete(f"/v1/jobs/{running['id']}").status_code == 200
    gate.release()
    service = client.app.state.service
    assert service.jobs[running["id"]].future.result(30) is None
    assert service.jobs[running["id"]].state == "cancelled"
    for job in (running, queued):  # a deleted job is gone
        for path in ("", "/result", "/input"):
            assert client.get(f"/v1/jobs/{job['id']}{path}").status_code == 410
    assert client.get("/healthz").json()["active_jobs"] == 0


def test_a_failing_restore_is_a_500_with_its_reason_and_the_worker_lives_on(make_client, monkeypatch):
    client = make_client()
    real = pipeline.restore

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory\nmore lines")

    monkeypatch.setattr(pipeline, "restore", broken)
    response = post(client, SMALL)
    assert response.status_code == 500 and response.json()["detail"] == "restore failed: out of memory"
    monkeypatch.setattr(pipeline, "restore", real)
    still_serves(client)


def test_bench_serve_reports_throughput_latency_errors_and_server_rss():
    result = bench_serve.bench_serve(requests=3, concurrency=2, size=32, server_args=("--threads", "1"))
    assert result["ok"] == 3 and result["errors"] == 0, result["error_samples"]
    for key in ("requests_per_s", "p50_ms", "p95_ms", "rejected_503", "peak_rss_mib", "restore_p50_ms"):
        assert isinstance(result[key], (int, float)), key
    assert result["peak_rss_mib"] > 100 and result["p95_ms"] >= result["p50_ms"] > 0


def test_serve_help_mentions_the_limits(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--max-upload-mb" in out and "--max-megapixels" in out and "--queue" in out


def test_download_name_keeps_only_safe_characters():
    assert web._download_name("C:\\Users\\me\\IMG 01.JPG", "input", "JPEG") == "IMG_01-restored.jpg"
    assert web._download_name(None, "png", "TIFF") == "image-restored.png"
    assert web._download_name("..", "png", "PNG") == "image-restored.png"


def test_demo_sample_function_matches_the_endpoint(client):
    sample = web.demo_sample()
    assert sample.shape == (1, 3, 256, 256)
    got = torch.from_numpy(decode(client.get("/v1/demo").content).copy()).permute(2, 0, 1)[None] / 255
    assert torch.allclose(got, sample, atol=1e-6)


def test_blind_inpainting_finds_the_text_and_fills_it_in_two_steps(client):
    from rednet.evaluate import EvalConfig, corrupt

    rgb = torch.from_numpy(data.astronaut()[100:196, 150:246].copy()).permute(2, 0, 1)[None] / 255.0
    damaged = corrupt(rgb, EvalConfig(task="inpaint", dataset=".", damage="text"), seed=0)
    upload = (damaged.degraded[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    response = post(client, png(upload), task="inpaint")
    assert response.status_code == 200, response.text
    assert response.headers["x-rednet-model"] == "inpaint-detect + inpaint-mask"
    clean = (rgb[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert psnr(decode(response.content), clean) > psnr(upload, clean) + 3


# -- what a gone client leaves, what errors echo, the schema -------------------------------------------------


class Endless:
    """A stand-in for rednet.infer.restore: images of side ``side`` report tiles until their job is cancelled
    (at most 60 s); any other image comes back at once."""

    def __init__(self, side: int) -> None:
        self.side = side

    def __call__(self, model, x, *, on_tile=None, **options):
        if x.shape[-1] == self.side:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                on_tile(0, 1)  # raises once the job is cancelled
                time.sleep(0.01)
        return x


@contextlib.contextmanager
def live_server(settings: ServeSettings) -> Iterator[int]:
    """uvicorn serving create_app(settings) on a free 127.0.0.1 port in a thread; yields the port."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def multipart(content: bytes) -> tuple[bytes, str]:
    boundary = "rednetboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'.encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_clients_that_disconnect_free_their_slots_for_the_next_request(monkeypatch):
    import socket

    import httpx

    monkeypatch.setattr(pipeline, "restore", Endless(side=48))
    body, content_type = multipart(png(noisy_gray(48)[1]))
    with live_server(ServeSettings(workers=1, queue_size=4)) as port:
        base = f"http://127.0.0.1:{port}"
        request = (
            f"POST /v1/restore HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        aborted = []
        for _ in range(6):  # 5 fill the queue (one runs, 4 wait), the 6th gets 503; then all hang up
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(request)
            aborted.append(sock)
            deadline = time.monotonic() + 10
            while httpx.get(f"{base}/healthz").json()["active_jobs"] < min(len(aborted), 5):
                assert time.monotonic() < deadline
                time.sleep(0.02)
        for sock in aborted:
            sock.close()
        start = time.monotonic()
        while True:
            files = {"image": ("a.png", SMALL, "image/png")}
            response = httpx.post(f"{base}/v1/restore", files=files, timeout=10)
            if response.status_code != 503 or time.monotonic() - start > 5:
                break
            time.sleep(0.1)
        assert response.status_code == 200, response.text
        assert time.monotonic() - start < 5


def test_origin_null_is_refused_like_a_foreign_origin(client):
    response = client.post("/v1/restore", files={"image": ("a.png", SMALL)}, headers={"origin": "null"})
    assert response.status_code == 403 and response.json()["detail"].endswith("(origin 'null')")
    assert client.get("/healthz", headers={"origin": "null"}).status_code == 403


def test_the_guards_refusals_carry_the_security_headers(make_client):
    client = make_client(max_upload_bytes=1000)
    refusals = [
        client.post("/v1/restore", content=b"x" * 2000, headers={"content-type": "application/octet-stream"}),
        client.get("/healthz", headers={"origin": "http://evil.example"}),
        client.get("/healthz", headers={"host": "evil.example"}),
    ]
    assert [r.status_code for r in refusals] == [413, 403, 421]
    for response in refusals:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert (
            response.headers["x-frame-options"] == "DENY"
            and response.headers["referrer-policy"] == "no-referrer"
        )


@pytest.mark.parametrize("field", ["task", "model", "format"])
def test_a_422_echoes_at_most_200_characters_of_a_1_mb_field(client, field):
    response = post(client, SMALL, **{field: "x" * 1_000_000})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(response.content) < 1000 and "x" * 150 in detail
    assert "x" * 201 not in detail


@pytest.mark.parametrize("field", ["task", "format", "sigma", "model", "ensemble"])
def test_an_empty_form_field_is_422_not_its_default(client, field):
    response = post(client, SMALL, **{field: ""})
    assert response.status_code == 422
    assert response.json()["detail"] == f"form field '{field}' is empty; leave it out for its default"


@pytest.mark.parametrize("path", ["/v1/restore", "/v1/jobs"])
def test_a_form_field_sent_twice_is_422_not_one_of_them_taken(client, path):
    """Found by rednet fuzz-api (schemathesis): two images were accepted, and one of them restored."""
    files = [("image", ("a.png", SMALL)), ("image", ("b.png", SMALL))]
    response = client.post(path, files=files)
    assert response.status_code == 422
    assert response.json()["detail"] == "form field 'image' is sent 2 times; send it once"
    response = client.post(path, files={"image": ("a.png", SMALL)}, data={"task": ["denoise", "sr"]})
    assert response.status_code == 422 and "'task' is sent 2 times" in response.json()["detail"]


@pytest.mark.parametrize("value", ["1", "0", "yes", "on"])
def test_a_boolean_form_field_is_true_or_false_only(client, value):
    """Found by rednet fuzz-api (schemathesis): fast=1 was taken for true, where the schema says boolean."""
    response = post(client, SMALL, fast=value)
    assert response.status_code == 422
    assert response.json()["detail"] == f"form field 'fast' is '{value}'; send true or false"
    assert post(client, SMALL, ensemble="False").status_code == 200


def test_every_error_has_one_body_shape_a_string_detail(client):
    responses = [
        post(client, SMALL, task="colorize"),  # FastAPI's validation
        post(client, SMALL, task="sr"),  # ours
        client.get("/v1/jobs/0123"),
        client.get(f"/v1/jobs/{'0' * 32}"),
        client.get("/nowhere"),
        client.put("/v1/jobs"),
    ]
    assert [r.status_code for r in responses] == [422, 422, 422, 404, 404, 405]
    for response in responses:
        assert list(response.json()) == ["detail"] and isinstance(response.json()["detail"], str)


def test_options_on_a_job_lists_every_method_of_the_path(client):
    response = client.options(f"/v1/jobs/{'0' * 32}")
    assert response.status_code == 405 and set(response.headers["allow"].split(", ")) == {"GET", "DELETE"}


def test_docs_load_swagger_ui_from_this_server_not_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(src.startswith("/") for src in sources), sources
    for src in sources:
        assert client.get(src).status_code == 200, src
    assert "SwaggerUIBundle" in client.get(next(s for s in sources if s.endswith(".js"))).text


def test_the_schema_documents_every_status_and_media_type_it_sends(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    upload = {"200", "400", "403", "413", "415", "421", "422", "500", "503"}
    assert set(paths["/v1/restore"]["post"]["responses"]) == upload
    assert set(paths["/v1/jobs"]["post"]["responses"]) == upload - {"200", "500"} | {"202"}
    assert {"404", "409", "410", "500"} <= set(paths["/v1/jobs/{job_id}/result"]["get"]["responses"])
    images = set(paths["/v1/restore"]["post"]["responses"]["200"]["content"])
    assert {"image/png", "image/jpeg", "image/tiff", "image/webp", "image/bmp"} == images
    error = paths["/v1/restore"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert "GetJob" in paths["/v1/jobs"]["post"]["responses"]["202"]["links"]


def test_schemathesis_with_every_default_check_finds_nothing_in_a_small_run():
    pytest.importorskip("schemathesis")
    from rednet.fuzz_api import run_api_fuzz

    result = run_api_fuzz(cases=120, seed=0)
    assert result["failures"] == 0, result["failure_samples"]
    assert result["server_errors"] == 0 and result["cases"] >= 120
    assert result["phases"]["stateful"] > 0 and result["statuses"].get("202", 0) > 0  # real job ids followed
    json.dumps(result)


def test_the_cli_has_fuzz_api_with_cases_and_seed():
    args = build_parser().parse_args(["fuzz-api", "--cases", "7", "--seed", "3"])
    assert (args.cases, args.seed, args.run.__name__) == (7, 3, "cmd_fuzz_api")
