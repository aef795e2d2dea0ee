"""``rednet serve --bench``: the web server under load, from client threads on loopback."""

from __future__ import annotations

import http.client
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["bench_serve"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _multipart(fields: dict[str, str], data: bytes, filename: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _peak_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return None


@dataclass
class _Tally:
    """What the client threads of :func:`bench_serve` saw, under ``lock``: latencies (ms, waits included),
    the server's own restore times (ms, from Server-Timing), counts of 503s and errors, and the last image."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=lambda: {"rejected_503": 0, "errors": 0})
    latencies: list[float] = field(default_factory=list)
    restore_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    last: list[bytes] = field(default_factory=list)


def _client(i: int, port: int, body: bytes, content_type: str, max_wait_s: float, tally: _Tally) -> None:
    """Request ``i``: POST /v1/restore until it is not a 503 (waiting its Retry-After times a random 0.5-1.5)
    or ``max_wait_s`` has passed, and record the outcome in ``tally``."""
    start = time.perf_counter()
    jitter = random.Random(i)
    while time.perf_counter() - start < max_wait_s:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            conn.request("POST", "/v1/restore", body=body, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            payload = resp.read()
            if resp.status == 503:
                with tally.lock:
                    tally.counts["rejected_503"] += 1
                time.sleep(float(resp.getheader("Retry-After", "1")) * jitter.uniform(0.5, 1.5))
                continue
            with tally.lock:
                if resp.status == 200:
                    tally.latencies.append((time.perf_counter() - start) * 1000)
                    timing = re.search(r"restore;dur=([\d.]+)", resp.getheader("Server-Timing", ""))
                    if timing:
                        tally.restore_ms.append(float(timing.group(1)))
                    tally.last[:] = [payload]
                else:
                    tally.counts["errors"] += 1
                    tally.error_samples.append(f"{resp.status} {payload[:200]!r}")
            return
        except OSError as e:
            with tally.lock:
                tally.counts["errors"] += 1
                tally.error_samples.append(repr(e))
            return
        finally:
            conn.close()
    with tally.lock:
        tally.counts["errors"] += 1
        tally.error_samples.append(f"still 503 after {max_wait_s:g} s")


def bench_serve(
    *,
    requests: int = 200,
    concurrency: int = 8,
    size: int = 256,
    channels: int = 1,
    server_args: tuple[str, ...] = (),
    max_wait_s: float = 1800.0,
    startup_timeout: float = 120.0,
) -> dict[str, Any]:
    """Load-test ``rednet serve``: start it on a free loopback port, send ``requests`` restores of a noisy
    ``size`` x ``size`` image from ``concurrency`` client threads, stop it, and report.

    A client that gets 503 waits its ``Retry-After`` (times a random 0.5-1.5, so that waiting clients do not
    retry in step) and sends again, for up to ``max_wait_s``; each 503 counts in ``rejected_503``, every
    other failure in ``errors``. Latency runs from a request's first send to its image, waits
    included.

    Returns:
        JSON-ready: requests_per_s, p50_ms, p95_ms, p99_ms, max_ms, mean_ms, restore_p50_ms (server time in
        the model), errors, rejected_503, peak_rss_mib (the server process's VmHWM), and the settings used.
    """
    import numpy as np
    from skimage import data as skdata

    from rednet import degrade, io
    from rednet.metrics import psnr

    clean = io.array_to_tensor(skdata.astronaut()[:size, :size].copy())
    if channels == 1:
        clean = clean.mean(dim=1, keepdim=True)
    noisy = degrade.quantize(degrade.gaussian_noise(clean, 25.0, generator=np.random.default_rng(0)))
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="rednet-bench-") as tmp:
        path = io.write_image(Path(tmp) / "noisy.png", noisy)
        image = path.read_bytes()
        body, content_type = _multipart({"task": "denoise"}, image, "noisy.png")
        cmd = [
            sys.executable,
            "-m",
            "rednet",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *server_args,
        ]
        log = open(Path(tmp) / "server.log", "w+")  # noqa: SIM115 - closed with the folder
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            _wait_healthy(port, server, log, startup_timeout)
            tally = _Tally()

            def one(i: int) -> None:
                _client(i, port, body, content_type, max_wait_s, tally)

            start = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(one, range(requests)))
            wall = time.perf_counter() - start
            rss = _peak_rss_mib(server.pid)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()
        gain = None
        if tally.last:
            out = Path(tmp) / "restored.png"
            out.write_bytes(tally.last[0])
            restored, _ = io.read_image(out)
            gain = float(psnr(restored, clean)[0] - psnr(noisy, clean)[0])
    lat = np.array(tally.latencies) if tally.latencies else np.array([np.nan])
    return {
        "requests": requests,
        "concurrency": concurrency,
        "image": f"{size}x{size} {'gray' if channels == 1 else 'rgb'} PNG, astronaut, noise sigma 25",
        "task": "denoise",
        "server": " ".join(["rednet serve", *server_args]) or "rednet serve",
        "ok": len(tally.latencies),
        "errors": tally.counts["errors"],
        "rejected_503": tally.counts["rejected_503"],
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(tally.latencies) / wall, 3),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(np.max(lat)), 1),
        "mean_ms": round(float(np.mean(lat)), 1),
        "restore_p50_ms": round(float(np.median(tally.restore_ms)), 1) if tally.restore_ms else None,
        "psnr_gain_db": None if gain is None else round(gain, 2),
        "peak_rss_mib": None if rss is None else round(rss, 1),
        "error_samples": tally.error_samples[:5],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }


def _wait_healthy(port: int, server: subprocess.Popen, log: Any, timeout: float) -> None:
    """Wait until the server at ``port`` answers ``/healthz``; raise with its log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"rednet serve exited with {server.returncode}: {log.read()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
        finally:
            conn.close()
    raise RuntimeError(f"rednet serve did not answer /healthz within {timeout:g} s")
