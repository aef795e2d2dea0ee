"""rednet serve end to end: a real server process driven in headless Chromium with Playwright.

Needs the ``playwright`` Python package and Debian's ``chromium`` (``/usr/bin/chromium``, or
``$REDNET_CHROMIUM``); Playwright's own browser downloads are never used. Skips cleanly without them,
unless ``$REDNET_REQUIRE_BROWSER`` is set (as ``.ci/run`` does), where that is a failure.
With ``REDNET_SCREENSHOT=docs/img/serve.png`` it also writes the page's screenshot there (256 colours).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from rednet.bench_serve import _free_port, _wait_healthy
from rednet.web import TASKS
from rednet.zoo import WEIGHTS

CHROMIUM = os.environ.get("REDNET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # without these Chromium's connections are refused on a closed network
    "--disable-component-update",
    "--disable-sync",
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """``rednet serve`` on a free loopback port, small tiles so that progress has several steps."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    out = open(log, "w+")  # noqa: SIM115 - the server writes to it until the fixture ends
    process = subprocess.Popen(
        [sys.executable, "-m", "rednet", "serve", "--port", str(port), "--tile", "64"],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(port, process, out, 90)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)
        out.close()


def skip_or_fail(reason: str) -> None:
    """Skip, unless $REDNET_REQUIRE_BROWSER is set (CI), where a missing browser is a failure."""
    if os.environ.get("REDNET_REQUIRE_BROWSER"):
        pytest.fail(f"{reason}, and REDNET_REQUIRE_BROWSER is set")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        skip_or_fail(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set REDNET_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_page_restores_an_upload_shows_before_after_and_downloads_the_result(browser, server, tmp_path):
    from playwright import sync_api

    clean = data.camera()[160:288, 180:308]  # 128 x 128 gray
    noisy = np.clip(np.round(clean + np.random.default_rng(0).normal(0, 25, clean.shape)), 0, 255)
    upload = tmp_path / "noisy camera.png"
    Image.fromarray(noisy.astype(np.uint8)).save(upload)

    page = browser.new_page(viewport={"width": 1100, "height": 760}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server + "/")
    page.wait_for_selector("#task option[value=denoise]", state="attached")
    labels = {
        "denoise": "Denoise",
        "sr": "Super-resolution",
        "jpeg": "Remove JPEG artefacts",
        "deblur": "Deblur",
        "inpaint": "Remove text and scratches",
    }
    shipped = {entry.task for entry in WEIGHTS.values()}
    # Only the tasks GET /v1/models holds, in the order of rednet restore --task.
    assert page.locator("#task option").all_inner_texts() == [labels[t] for t in TASKS if t in shipped]
    page.set_input_files("#file", str(upload))
    page.click("#restore")
    page.wait_for_selector("#result:not([hidden])", timeout=90_000)
    assert page.locator("#error").is_hidden(), page.inner_text("#error")
    assert "4 tiles" in page.inner_text("#info")  # 128 x 128 in tiles of 64
    sizes = page.evaluate("[$('before').naturalWidth, $('after').naturalWidth, $('after').naturalHeight]")
    assert sizes == [128, 128, 128]
    zoomed = page.evaluate(
        "Array.from($('zoom-after').getContext('2d').getImageData(0, 0, 180, 180).data)"
        ".some((v, i) => i % 4 !== 3 && v !== 34)"
    )
    assert zoomed  # the crop view was drawn

    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "noisy_camera-restored.png"
    saved = tmp_path / "restored.png"
    download.value.save_as(saved)
    restored = np.asarray(Image.open(saved))
    assert restored.shape == clean.shape
    gain = psnr(restored, clean) - psnr(noisy, clean)
    assert gain > 3, f"PSNR gain {gain:.2f} dB"

    # The demo button: the server's noisy astronaut, restored the same way.
    page.click("#demo")
    sync_api.expect(page.locator("#message")).to_have_text(re.compile("^done"), timeout=90_000)
    assert page.evaluate("$('after').naturalWidth") == 256 and "denoise-color" in page.inner_text("#info")
    page.evaluate("setSplit(50); window.scrollTo(0, 0)")
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("REDNET_SCREENSHOT"):
        target = Path(os.environ["REDNET_SCREENSHOT"])
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(shot).convert("RGB").quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(
            target, optimize=True
        )
    assert errors == []
    page.close()


def test_page_sends_the_tasks_own_level_field_and_sr_enlarges_by_it(browser, server, tmp_path):
    from playwright import sync_api

    upload = tmp_path / "small.png"
    Image.fromarray(data.camera()[160:224, 180:244]).save(upload)  # 64 x 64 gray
    page = browser.new_page()
    page.goto(server + "/")
    page.wait_for_selector("#task option[value=sr]", state="attached")
    page.select_option("#task", "sr")
    assert page.inner_text("#level-name").startswith("scale") and page.input_value("#level") == "2"
    page.fill("#level", "3")
    page.set_input_files("#file", str(upload))
    page.click("#restore")
    sync_api.expect(page.locator("#message")).to_have_text(re.compile("^done"), timeout=90_000)
    assert page.locator("#error").is_hidden(), page.inner_text("#error")
    assert page.evaluate("[$('after').naturalWidth, $('after').naturalHeight]") == [192, 192]
    page.close()


def test_page_shows_the_servers_message_for_a_bad_upload(browser, server, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image\n" * 20)
    page = browser.new_page()
    page.goto(server + "/")
    page.wait_for_selector("#task option[value=denoise]", state="attached")
    page.set_input_files("#file", str(fake))
    page.click("#restore")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "not an image rednet reads" in page.inner_text("#error")
    page.close()
