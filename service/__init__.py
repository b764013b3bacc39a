"""The online half: a FastAPI service serving ONNX forecasters from the model repository."""

from service.app import create_app
from service.settings import Settings

__all__ = ["Settings", "create_app"]
