"""Liveness and readiness probes."""

from typing import Any

from fastapi import APIRouter, Request

from service.api.responses import OrjsonResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get(
    "/ready",
    responses={
        503: {
            "description": "not ready: no model, or (FORECAST_STRICT_READINESS, the default) "
            "a model that did not load"
        }
    },
)
async def ready(request: Request) -> OrjsonResponse:
    repository = getattr(request.app.state, "repository", None)
    models: dict[str, Any] = (
        {} if repository is None else {m.name: m.ready for m in repository.models.values()}
    )
    is_ready = repository is not None and repository.ready
    return OrjsonResponse(
        {"status": "ready" if is_ready else "not ready", "models": models},
        status_code=200 if is_ready else 503,
    )
