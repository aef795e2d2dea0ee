"""``rednet fuzz-api``: schemathesis against the HTTP API of ``rednet serve``, in process, all default checks.

The app of :func:`rednet.web.create_app` is called through ASGI (no socket, nothing leaves the process).
schemathesis reads its OpenAPI schema and runs its phases: the schema's examples, coverage (boundary and
schema-violating values), fuzzing, and the stateful phase, which follows the schema's links from a new job's
id (``POST /v1/jobs``) to ``GET /v1/jobs/{id}``, ``/result``, ``/input`` and ``DELETE``. Each response goes
through all of schemathesis' default checks: no server error, status code, content type, headers and body
conform to the schema, schema-violating requests are refused and valid ones accepted, methods the schema
does not list are answered 405, and so on. Half the uploads are a real 16 x 16 PNG (the others are what
schemathesis makes up), so that jobs are accepted and the stateful phase has real ids to follow. A body with
an empty array for a field is left out: multipart sends nothing for it, so the request is not the invalid one
that the case describes.
"""

from __future__ import annotations

import io as _io
import time
from collections import Counter
from typing import Any

__all__ = ["run_api_fuzz"]


def _png() -> bytes:
    """A 16 x 16 gray PNG: an upload that the API accepts and restores."""
    import numpy as np
    from PIL import Image

    buf = _io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _config(seed: int, per_operation: int) -> Any:
    """schemathesis' settings: ``seed``, no cache or example database (the same seed, the same run),
    ``per_operation`` examples per operation, and the refusals each operation may give valid-looking data."""
    import schemathesis

    accepted = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # the check's default
    return schemathesis.Config.from_dict(
        {
            "seed": seed,
            "cache": {"enabled": False},  # no state between runs: the same seed, the same run
            "generation": {"max-examples": per_operation, "database": "none"},
            "operations": [
                {  # refusals that depend on the image's bytes or on rules across fields (task x level x
                    # model x fast), which a JSON schema cannot state: valid-looking data may get them
                    "include-operation-id": operation,
                    "checks": {"positive_data_acceptance": {"expected-statuses": [*accepted, *refusals]}},
                }
                for operation, refusals in [
                    ("restore_now", ["400", "413", "415", "422"]),
                    ("submit", ["400", "413", "415", "422"]),
                    ("job_state", ["410"]),  # a job deleted (cancelled) before
                    ("job_result", ["410"]),
                    ("job_input", ["410"]),
                ]
            ],
        }
    )


def run_api_fuzz(cases: int, seed: int = 0) -> dict[str, Any]:
    """Fuzz the API of ``rednet serve`` with schemathesis (all default checks, stateful phase included).

    Args:
        cases: the size of the run: examples per operation in the generating phases are ``cases`` divided by
            the number of operations (at least 1); the number actually sent is ``cases`` in the result.
        seed: schemathesis' seed (the same seed, the same cases).

    Returns:
        A JSON-able dict: ``cases`` (requests sent), ``failures`` (distinct failures found),
        ``failures_by_check`` (check name -> count), ``failure_samples`` (the first few, one line each),
        ``server_errors`` (5xx responses), ``statuses`` (status code -> count), ``phases`` (phase -> cases),
        ``seconds``, ``seed`` and ``examples_per_operation``.
    """
    import schemathesis
    from hypothesis import strategies as st
    from schemathesis.engine import events, from_schema

    from rednet.web import ServeSettings, create_app

    start = time.perf_counter()
    # schemathesis' in-process client sends Host: testserver; a queue long enough that it never fills (a
    # full one answers 503, which is a server error to schemathesis: that path has its own tests)
    app = create_app(ServeSettings(tile=64, queue_size=100_000, allowed_hosts=("testserver",)))
    png = _png()
    probe = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = sum(1 for result in probe.get_all_operations() if hasattr(result, "ok"))
    per_operation = max(1, cases // max(1, operations))
    config = _config(seed, per_operation)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        """Half the uploads: the real PNG instead of made-up bytes. Only where the upload is a file (bytes or
        text): an image that a negative case made an array or an object stays so, to be refused."""
        if isinstance(body, dict) and isinstance(body.get("image"), (bytes, str)):
            return st.sampled_from([body, {**body, "image": png}])
        return st.just(body)

    @schema.hook
    def filter_body(context: Any, body: Any) -> bool:
        """Leave out bodies with an empty array for a field: multipart sends nothing for it, so the request
        is one that leaves the field out (valid), whatever the case says it violates."""
        return not (isinstance(body, dict) and any(value == [] for value in body.values()))

    sent: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    by_check: Counter[str] = Counter()
    samples: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    try:
        for event in from_schema(schema).execute():
            if isinstance(event, events.FatalError):
                raise RuntimeError(f"schemathesis stopped: {event.exception}") from event.exception
            if not isinstance(event, events.ScenarioFinished):
                continue
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                del case_id
                sent[event.phase.value] += 1
                if interaction.response is not None:
                    statuses[str(interaction.response.status_code)] += 1
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    key = (check.name, failure.title, recorder.cases[case_id].value.operation.label)
                    if key in seen:
                        continue
                    seen.add(key)
                    by_check[check.name] += 1
                    if len(samples) < 20:
                        samples.append(f"{key[2]}: {check.name}: {failure.title}: {failure.message}"[:300])
    finally:
        app.state.service.close()
    return {
        "cases": sum(sent.values()),
        "failures": sum(by_check.values()),
        "failures_by_check": dict(sorted(by_check.items())),
        "failure_samples": samples,
        "server_errors": sum(n for code, n in statuses.items() if code.startswith("5")),
        "statuses": dict(sorted(statuses.items())),
        "phases": dict(sorted(sent.items())),
        "examples_per_operation": per_operation,
        "operations": operations,
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 1),
    }
