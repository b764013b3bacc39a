"""Prometheus metrics: what is measured, the ASGI middleware that times requests, and `/metrics`.

```
forecast_request_duration_seconds{method, route, model, status}   histogram, per route template
forecast_ort_run_duration_seconds{model}                           histogram, one `session.run`
forecast_ort_batch_rows{model}                                     histogram, rows per ORT call
forecast_mc_samples{model}                                         histogram, samples per MC request
forecast_errors_total{type}                                        counter, by error type
forecast_model_reloads_total{model, outcome}                       counter, loaded or failed
forecast_requests_in_flight                                        gauge, sampled, summed over workers
```

The metrics live at module level, once per process, as prometheus-client intends. With several
worker processes (FORECAST_WORKERS > 1) every process writes its values to files under
`PROMETHEUS_MULTIPROC_DIR` and `/metrics` sums them, whichever worker answers; prometheus-client
reads that variable when it is imported, so it must be set before the service starts
(`python -m service` picks a fresh temporary folder itself when workers > 1 and it is unset).
"""

import os
import time
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# Probes and scrapes are frequent and uninteresting: they would drown the request histograms.
EXCLUDED_PREFIXES: Final = ("/health", "/v2/health", "/metrics")
# A path that matched no route is labelled with this, never with the raw path (bounded labels).
UNMATCHED: Final = "<unmatched>"
# Decided once, as prometheus-client decides at its own import whether values go to files.
MULTIPROCESS: Final = bool(os.environ.get(MULTIPROC_ENV))

REQUEST_DURATION = Histogram(
    "forecast_request_duration_seconds",
    "HTTP request latency, from the first byte of the request to the end of the response.",
    ["method", "route", "model", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)
ORT_RUN_DURATION = Histogram(
    "forecast_ort_run_duration_seconds",
    "Time inside one ONNX Runtime session.run call.",
    ["model"],
    buckets=(
        0.00005,
        0.0001,
        0.0002,
        0.0005,
        0.001,
        0.002,
        0.005,
        0.01,
        0.02,
        0.05,
        0.1,
        0.2,
        0.5,
        1.0,
    ),
)
ORT_BATCH_ROWS = Histogram(
    "forecast_ort_batch_rows",
    "Rows (series x MC samples) in one ONNX Runtime call.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536),
)
MC_SAMPLES = Histogram(
    "forecast_mc_samples",
    "MC-dropout sample paths asked for per series, per request with uncertainty.",
    ["model"],
    buckets=(1, 10, 20, 50, 100, 200, 500, 1000),
)
ERRORS = Counter(
    "forecast_errors",
    "Error responses by error type (the `error.type` of the body).",
    ["type"],
)
# `model` names a folder that exists (service.lifecycle): bounded, never a client's raw string.
MODEL_RELOADS = Counter(
    "forecast_model_reloads",
    "Model reloads (admin endpoint or poll) by outcome: loaded, or failed (a ready old version kept serving).",
    ["model", "outcome"],
)
# Set by the overload watchdog each tick (service/api/overload.py; probes and scrapes not counted);
# livesum: the workers alive, summed.
IN_FLIGHT = Gauge(
    "forecast_requests_in_flight",
    "Requests admitted and not yet answered (the overload limit is FORECAST_MAX_IN_FLIGHT per worker).",
    multiprocess_mode="livesum",
)


def observe_ort_run(model: str, rows: int, started: float) -> None:
    """Record one ORT call that began at `started` (a `time.perf_counter()` reading)."""
    seconds = time.perf_counter() - started
    children = _ORT_CHILDREN.get(model)
    if children is None:
        children = _ORT_CHILDREN[model] = (
            ORT_RUN_DURATION.labels(model),
            ORT_BATCH_ROWS.labels(model),
        )
    children[0].observe(seconds)
    children[1].observe(rows)


# Per model, as `_REQUEST_CHILDREN` below: the batcher thread records every call holding the GIL,
# and two `labels()` lookups were ~3% of an in-process next-step request (py-spy).
_ORT_CHILDREN: dict[str, tuple[Any, Any]] = {}


def count_error(type: str) -> None:
    ERRORS.labels(type).inc()


class RequestMetrics:
    """Pure ASGI middleware timing every HTTP request, labelled by the route template.

    The route is read after the app has run, from the `route` FastAPI puts in the scope, so a
    request for `/v1/models/lstm/forecast` counts under `/v1/models/{name}/forecast`, model `lstm`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXCLUDED_PREFIXES):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template: str = (
                getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED
            )
            _request_histogram(scope["method"], template, _model_label(scope), status).observe(
                time.perf_counter() - started
            )


def _model_label(scope: Scope) -> str:
    """The `{name}` of the path when it names a model of the repository, else "": a client may
    send any name (a 404, a 422 before the lookup), and labels must stay bounded."""
    name = scope.get("path_params", {}).get("name")
    if not name:
        return ""
    repository = getattr(getattr(scope.get("app"), "state", None), "repository", None)
    models = getattr(repository, "models", None)
    return str(name) if models is not None and name in models else ""


# The labelled histograms by label values: `labels()` takes a lock and rebuilds its key on every
# call; the label values are bounded (methods x route templates x models x statuses).
_REQUEST_CHILDREN: dict[tuple[str, str, str, int], Any] = {}


def _request_histogram(method: str, route: str, model: str, status: int) -> Any:
    key = (method, route, model, status)
    child = _REQUEST_CHILDREN.get(key)
    if child is None:
        child = _REQUEST_CHILDREN[key] = REQUEST_DURATION.labels(method, route, model, str(status))
    return child


def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics` in the Prometheus text format; sums all workers in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
