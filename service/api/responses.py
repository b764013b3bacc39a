"""orjson responses: numpy arrays are serialised directly, without a Python list in between."""

from typing import Any

import orjson
from starlette.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(status_code: int, type: str, message: str) -> OrjsonResponse:
    """The one error shape: `{"error": {"type": ..., "message": ...}}`."""
    return OrjsonResponse({"error": {"type": type, "message": message}}, status_code=status_code)
