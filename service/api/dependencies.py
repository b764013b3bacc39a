"""What the routers need from the app, as `Annotated` dependencies."""

from typing import Annotated

from fastapi import Depends, Request

from service.errors import ModelNotReadyError
from service.repository import Repository
from service.settings import Settings


# Both are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread pool, and
# two thread hops per request cost more than the model call itself (measured with py-spy).
async def get_repository(request: Request) -> Repository:
    repository: Repository | None = getattr(request.app.state, "repository", None)
    if repository is None:  # the lifespan has not run (or has shut down)
        raise ModelNotReadyError("the model repository is not loaded")
    return repository


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RepositoryDep = Annotated[Repository, Depends(get_repository)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
