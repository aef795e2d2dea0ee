"""The settings of ``rednet serve`` (:class:`ServeSettings`) and the names its API offers."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rednet.tasks import TASK_NAMES
from rednet.tasks import TASKS as ALL_TASKS

TASKS = TASK_NAMES
"""The task names of ``rednet restore --task``."""

Task = Literal["denoise", "sr", "jpeg", "deblur", "inpaint"]

HIDDEN = ("mask", "detect")
"""Model variants the API does not offer: the mask-aware model needs a mask (command line only); the damage
model is the first step of blind inpainting, which the API runs when no model is named."""

LEVELS: dict[str, dict[str, Any]] = {name: task.restore_level.as_json() for name, task in ALL_TASKS.items()}
"""Each task's level: its form field's name (``sigma``, ``scale``, ``quality``, as the flags of ``rednet
restore``; None when it takes none), range and meaning."""

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_OUTPUT_TYPES = {  # Pillow format read -> (suffix written, media type)
    "PNG": (".png", "image/png"),
    "JPEG": (".jpg", "image/jpeg"),
    "MPO": (".jpg", "image/jpeg"),
    "TIFF": (".tif", "image/tiff"),
    "BMP": (".bmp", "image/bmp"),
    "WEBP": (".webp", "image/webp"),
}
_STATIC = Path(__file__).resolve().parents[1] / "static"


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
