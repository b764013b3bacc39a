"""`create_app`: the FastAPI application over a model repository."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.api import forecast, health, models, oip, timeseries
from service.api.body_limit import BodySizeLimit
from service.api.errors import install_error_handlers
from service.api.responses import OrjsonResponse
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
        repository = await run_in_threadpool(load_repository, settings)
        app.state.repository = repository
        yield
        app.state.repository = None
        await run_in_threadpool(repository.close)

    app = FastAPI(
        title="Forecast service",
        summary="Neural time-series forecasters over ONNX Runtime, with MC-dropout error bars.",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    app.state.repository = None
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)  # added last: outermost, so it times the 413s too
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(forecast.router)
    app.include_router(timeseries.router)
    app.include_router(oip.router)
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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
