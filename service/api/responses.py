"""orjson responses: numpy arrays are serialised directly, without a Python list in between."""

from typing import Any

import orjson
from starlette.responses import JSONResponse

from service.metrics import count_error

# The standard protocols own these paths and each has its own error shape (docs/protocols.md).
OIP_PREFIX = "/v2"
TIMESERIES_PREFIX = "/v1/timeseries/"


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(
    status_code: int, type: str, message: str, *, path: str = "", param: str | None = None
) -> OrjsonResponse:
    """The one error shape, `{"error": {"type": ..., "message": ...}}`, except on protocol paths.

    The Open Inference Protocol (`/v2...`) wants `{"error": "<message>"}`: tritonclient fails while
    decoding anything else. The KServe time-series API (`/v1/timeseries/...`) wants
    `{"error": {"code": "<status>", "message", "param", "type"}}`.
    """
    count_error(type)
    body: dict[str, Any]
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        body = {"error": message}
    elif path.startswith(TIMESERIES_PREFIX):
        body = {"error": timeseries_error(status_code, type, message, param)}
    else:
        body = {"error": {"type": type, "message": message}}
    return OrjsonResponse(body, status_code=status_code)


def timeseries_error(
    status_code: int, type: str, message: str, param: str | None = None
) -> dict[str, Any]:
    """KServe's time-series `Error`: the status code as a string, the field at fault as `param`."""
    return {"code": str(status_code), "message": message, "param": param, "type": type}
