"""The online half: a FastAPI service serving ONNX forecasters from the model repository."""

from typing import TYPE_CHECKING, Any

from service.settings import Settings

if TYPE_CHECKING:
    from service.app import create_app

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # `create_app` is imported on first use, so that the numpy half (`service.forecasting`) can be
    # imported without FastAPI and ONNX Runtime coming with the package.
    if name == "create_app":
        from service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
