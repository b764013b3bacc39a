"""What the routers need from the app, as `Annotated` dependencies."""

from typing import Annotated

from fastapi import Depends, Request

from service.errors import ModelNotReadyError
from service.repository import Repository
from service.settings import Settings


def repository_of(request: Request) -> Repository:
    repository: Repository | None = getattr(request.app.state, "repository", None)
    if repository is None:  # the lifespan has not run (or has shut down)
        raise ModelNotReadyError("the model repository is not loaded")
    return repository


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread
# pool, and two thread hops per request cost more than the model call itself (measured, py-spy).
# The forecast route, the hot path, calls `repository_of`/`settings_of` directly: resolving
# dependencies costs FastAPI ~0.17 ms of CPU per request (docs/deployment.md).
async def get_repository(request: Request) -> Repository:
    return repository_of(request)


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


RepositoryDep = Annotated[Repository, Depends(get_repository)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
