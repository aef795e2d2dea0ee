"""``rednet serve``."""

from __future__ import annotations

import argparse
import json

from rednet.cli.flags import add_device_flags
from rednet.extras import require


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet serve``."""
    p = sub.add_parser(
        "serve",
        help="web page and JSON HTTP API: upload, restore, compare (loopback only unless --host)",
        description="Serve the rednet web page and HTTP API (docs/web.md). With --bench, start a server on a "
        "free loopback port instead, load it with --requests restores and print JSON.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=32.0, help="largest upload in MiB (default 32)")
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=16.0,
        help="largest image, checked before decoding (default 16)",
    )
    p.add_argument("--queue", type=int, default=4, help="jobs that may wait; more get HTTP 503 (default 4)")
    p.add_argument("--workers", type=int, default=1, help="restores run at once (default 1)")
    p.add_argument("--threads", type=int, help="PyTorch threads (default: one per core)")
    p.add_argument("--tile", type=int, default=512, help="tile side; progress is per tile (default 512)")
    add_device_flags(p)
    p.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="Host header to accept, repeatable (default: loopback names when bound to loopback, else any)",
    )
    p.add_argument("--bench", action="store_true", help="load-test a fresh server and print JSON")
    p.add_argument("--requests", type=int, default=200, help="--bench: restores to send (default 200)")
    p.add_argument("--concurrency", type=int, default=8, help="--bench: client threads (default 8)")
    p.add_argument("--size", type=int, default=256, help="--bench: image side (default 256)")
    p.add_argument(
        "--channels", type=int, default=1, choices=[1, 3], help="--bench: 1 gray, 3 RGB (default 1)"
    )
    p.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    for module in ("fastapi", "uvicorn", "multipart", "fastapi_offline"):
        require(module, "web", "rednet serve")
    from rednet import bench_serve, web

    settings = web.ServeSettings(
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        queue_size=args.queue,
        workers=args.workers,
        threads=args.threads,
        tile=args.tile,
        bf16=args.bf16,
        device=args.device,
        allowed_hosts=tuple(args.allowed_host) if args.allowed_host else None,
    )
    if not args.bench:
        web.serve(settings)
        return 0
    server_args = [
        f"--{flag}={value}"
        for flag, value, default in [
            ("max-upload-mb", args.max_upload_mb, 32.0),
            ("max-megapixels", args.max_megapixels, 16.0),
            ("queue", args.queue, 4),
            ("workers", args.workers, 1),
            ("threads", args.threads, None),
            ("tile", args.tile, 512),
            ("device", args.device, "auto"),
        ]
        if value != default
    ]
    if args.bf16 is not None:
        server_args.append("--bf16" if args.bf16 else "--no-bf16")
    result = bench_serve.bench_serve(
        requests=args.requests,
        concurrency=args.concurrency,
        size=args.size,
        channels=args.channels,
        server_args=tuple(server_args),
    )
    print(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0
