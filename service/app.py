"""`create_app`: the FastAPI application over a model repository."""

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.api import forecast, health, lifecycle, models, oip, timeseries
from service.api import openapi as openapi_document
from service.api.access import ApiKeys, add_cors
from service.api.body_limit import BodySizeLimit
from service.api.errors import install_error_handlers
from service.api.fast import ForecastApp
from service.api.overload import Overload, OverloadProtection
from service.api.responses import OrjsonResponse
from service.lifecycle import ModelLifecycle, RequestEpochs
from service.metrics import RequestMetrics, metrics_endpoint
from service.repository import load_repository
from service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; settings are read from the environment when not given.

    The models are loaded by the lifespan, not here, so building an app is cheap and import-safe;
    `uvicorn --factory service.app:create_app` builds one per worker process.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        switch_interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
        if settings.gil_switch_interval_ms > 0:  # per process: each worker's lifespan sets it
            sys.setswitchinterval(settings.gil_switch_interval_ms / 1e3)
        try:
            repository = await run_in_threadpool(load_repository, settings)
            app.state.repository = repository
            app.state.lifecycle = ModelLifecycle(repository, settings, epochs)
            app.state.lifecycle.start()  # the poll of FORECAST_MODEL_POLL_S, when set
            if settings.gc_threshold > 0:  # settings.py: the app as loaded is never walked again
                gc.collect()
                gc.freeze()
                gc.set_threshold(settings.gc_threshold, *thresholds[1:])
            yield
            await app.state.lifecycle.close()
            app.state.lifecycle = None
            app.state.repository = None
            await run_in_threadpool(repository.close)
        finally:
            sys.setswitchinterval(switch_interval)
            if settings.gc_threshold > 0:
                gc.unfreeze()
                gc.set_threshold(*thresholds)

    app = ForecastApp(  # FastAPI, with the forecast route answered before the router
        title="Forecast service",
        summary="Neural time-series forecasters over ONNX Runtime, with MC-dropout error bars.",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    app.state.repository = None
    app.state.lifecycle = None
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # The requests in flight, so that a reloaded model's old session closes after them.
    epochs = RequestEpochs()
    app.add_middleware(lifecycle.TrackRequests, epochs=epochs)
    # Outside the body limit: the deadline covers reading the body, and an overloaded worker
    # refuses before reading it. Inside the metrics, which time the 503s and 504s too. One
    # `Overload` per app: every stack built from this entry (fast path included) shares it.
    overload = Overload(settings.max_in_flight, settings.retry_after_s, settings.request_timeout_s)
    app.add_middleware(OverloadProtection, overload=overload)
    # Outside the overload limit: a request without a valid key takes no slot. CORS outside the
    # keys: a preflight carries none, and a 401 needs the CORS headers for a browser to read it.
    app.add_middleware(ApiKeys, keys=[k.get_secret_value() for k in settings.api_keys])
    if settings.cors_origins:
        add_cors(app, settings.cors_origins)
    app.add_middleware(RequestMetrics)  # added last: outermost, so it times the 413s too
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(forecast.router)
    app.include_router(timeseries.router)
    app.include_router(oip.router)
    app.include_router(lifecycle.router)
    _describe_parsed_bodies(app)
    return app


def _describe_parsed_bodies(app: FastAPI) -> None:
    """Add the schemas of bodies that routes parse themselves to the OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                forecast.openapi_components()
            )
            app.openapi_schema = openapi_document.complete(schema)  # every error status
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
