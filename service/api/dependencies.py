"""What the routers need from the app, as `Annotated` dependencies."""

from typing import Annotated, Any

from fastapi import Depends, Request

from service.errors import ModelNotReadyError
from service.forecasting import Limits
from service.repository import Repository
from service.settings import Settings


def repository_of(state: Any) -> Repository:
    """The app's repository (`app.state`), or a 503 before the lifespan has loaded it."""
    repository: Repository | None = getattr(state, "repository", None)
    if repository is None:  # the lifespan has not run (or has shut down)
        raise ModelNotReadyError("the model repository is not loaded")
    return repository


def settings_of(state: Any) -> Settings:
    settings: Settings = state.settings
    return settings


def limits_of(state: Any) -> Limits:
    """The request limits of the app's settings, built once per settings object."""
    settings = settings_of(state)
    cached: tuple[Settings, Limits] | None = getattr(state, "limits", None)
    if cached is None or cached[0] is not settings:
        cached = (settings, Limits.from_settings(settings))
        state.limits = cached
    return cached[1]


# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread
# pool, and two thread hops per request cost more than the model call itself (measured, py-spy).
# The forecast route, the hot path, calls `repository_of`/`settings_of` on `app.state` directly
# (`service.api.fast` answers it without FastAPI's dependency machinery).
async def get_repository(request: Request) -> Repository:
    return repository_of(request.app.state)


async def get_settings(request: Request) -> Settings:
    return settings_of(request.app.state)


RepositoryDep = Annotated[Repository, Depends(get_repository)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
