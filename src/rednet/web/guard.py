"""The request checks of ``rednet serve`` that run before FastAPI: host, origin and body size
(:class:`_Guard`)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rednet.web.settings import ServeSettings

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
