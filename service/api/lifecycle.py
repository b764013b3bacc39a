"""Model lifecycle over HTTP: reload a model folder, and Triton's model-repository extension.

```
POST /v1/admin/models/{name}/reload      200 ModelInfo of the new version | 404 no such folder |
                                         409 it did not load (the reason; a ready old one serves) |
                                         422 not a model name
POST /v2/repository/index                Triton: [{name, version, state, reason}]
POST /v2/repository/models/{name}/load   Triton: the same reload, 200 with an empty body
```

Both need an API key, and answer 403 while FORECAST_API_KEYS is unset (`service.api.access`).
The work is `service.lifecycle.ModelLifecycle`; `TrackRequests` gives it the requests in flight,
so that a replaced model is closed only after the requests that may hold it have finished.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.dependencies import RepositoryDep
from service.api.models import model_info
from service.api.oip import json_object
from service.api.schemas import ErrorBody, ModelInfo
from service.errors import InvalidRequestError, ModelNotReadyError
from service.lifecycle import ModelLifecycle, RequestEpochs

router = APIRouter(tags=["model lifecycle"])

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no valid API key"},
    403: {"model": ErrorBody, "description": "FORECAST_API_KEYS is unset: admin is disabled"},
    404: {"model": ErrorBody, "description": "no such folder in the models directory"},
    409: {"model": ErrorBody, "description": "the folder did not load; a ready old version serves"},
    422: {"model": ErrorBody, "description": "not a model name, or load parameters were sent"},
}


class TrackRequests:
    """Pure ASGI middleware: every HTTP request enters `epochs` until its response is sent."""

    def __init__(self, app: ASGIApp, epochs: RequestEpochs) -> None:
        self.app = app
        self.epochs = epochs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        epoch = self.epochs.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.epochs.leave(epoch)


async def get_lifecycle(request: Request) -> ModelLifecycle:
    lifecycle: ModelLifecycle | None = getattr(request.app.state, "lifecycle", None)
    if lifecycle is None:  # the lifespan has not run (or has shut down)
        raise ModelNotReadyError("the model repository is not loaded")
    return lifecycle


LifecycleDep = Annotated[ModelLifecycle, Depends(get_lifecycle)]


@router.post("/v1/admin/models/{name}/reload", responses=ADMIN_ERRORS)
async def reload_model(name: str, lifecycle: LifecycleDep) -> ModelInfo:
    """Load the folder `models/{name}` again (or a new one) and swap it in only if it loads.

    Requests in flight finish on the previous version, which is closed after them.
    """
    return model_info(await lifecycle.reload(name))


# --- Triton's model repository extension (OIP v2 paths: errors are {"error": "<message>"}) -------


class OipError(BaseModel):
    error: str


def _oip_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The admin errors in the OIP's shape, `{"error": "<message>"}`, for the OpenAPI document."""
    described = {400: "the body is not a JSON object"}
    described |= {int(code): error["description"] for code, error in ADMIN_ERRORS.items()}
    return {code: {"model": OipError, "description": described[code]} for code in codes}


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


@router.post("/v2/repository/index", responses=_oip_errors(400, 401, 403, 422))
async def repository_index(
    request: Request, repository: RepositoryDep
) -> list[RepositoryIndexEntry]:
    """Every model folder the repository holds; `{"ready": true}` lists only the ready ones."""
    ready_only = _body(await request.body()).get("ready", False)
    if not isinstance(ready_only, bool):
        raise InvalidRequestError("ready must be a boolean", param="ready")
    return [
        RepositoryIndexEntry(
            name=m.name,
            version="" if m.spec is None else str(m.spec.version),
            state="READY" if m.ready else "UNAVAILABLE",
            reason=m.reason or "",
        )
        for m in repository.models.values()
        if m.ready or not ready_only
    ]


@router.post(
    "/v2/repository/models/{name}/load",
    response_class=Response,  # Triton answers an empty body: no JSON media type in the schema
    responses={
        200: {"description": "loaded (empty body)"},
        **_oip_errors(400, 401, 403, 404, 409, 422),
    },
)
async def repository_load(name: str, request: Request, lifecycle: LifecycleDep) -> Response:
    """Triton's load: the same reload as `/v1/admin/models/{name}/reload`, from the folder only."""
    if _body(await request.body()).get("parameters"):
        # Triton would load a config or files sent in the request: a model upload. Never here.
        raise InvalidRequestError(
            "load parameters (config, files) are not supported: models load only from the "
            "models directory",
            param="parameters",
        )
    await lifecycle.reload(name)
    return Response(status_code=200)


def _body(raw: bytes) -> dict[str, Any]:
    """An optional JSON object (tritonclient sends no Content-Type, and an empty index body)."""
    return json_object(raw, "request body") if raw.strip() else {}
