"""The OpenAPI document, completed: every status a route can answer, in its path's error shape.

FastAPI documents what a route declares. Middleware answers on every route without declaring
anything (401 API keys, 413 body size, 503 overload, 504 deadline), the routes that parse their own
bodies raise 400 and 422 that FastAPI cannot see, and FastAPI's own 422 is documented with its
`HTTPValidationError` body, which no route of ours sends. `complete` adds these to every operation,
in the error shape of the protocol that owns the path (`responses.error_response`): a route's own
declaration wins. Probes (`/health...`, `/v2/health...`) answer for themselves and are left alone.
"""

import json
from typing import Any

from pydantic import BaseModel

from service.api.oip import INFERENCE_REQUEST, INFERENCE_RESPONSE
from service.api.overload import UNLIMITED_PREFIXES
from service.api.responses import OIP_PREFIX, TIMESERIES_PREFIX
from service.api.schemas import ErrorBody
from service.api.timeseries import TimeSeriesForecastRequest

REF = "#/components/schemas/"
FASTAPI_422 = REF + "HTTPValidationError"

DESCRIPTIONS = {
    400: "malformed body: not JSON, or not an object of the documented shape",
    401: "missing or invalid API key (only when FORECAST_API_KEYS is set)",
    404: "no such model (or version)",
    413: "body larger than FORECAST_MAX_BODY_BYTES",
    422: "well-formed but invalid, in general or for this model (too short for its min_length, "
    "its number of features, a configured limit): the message names the field and the limit",
    503: "overloaded: FORECAST_MAX_IN_FLIGHT requests in flight, retry after `Retry-After` "
    "seconds (error type `overloaded`); or the model is not ready",
    504: "no answer within FORECAST_REQUEST_TIMEOUT_S; the request was cancelled "
    "(error type `deadline_exceeded`)",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying (FORECAST_RETRY_AFTER_S), when overloaded",
        "schema": {"type": "integer", "minimum": 0},
    }
}
OIP_ERROR = {
    "title": "OipError",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
TIMESERIES_ERROR = {
    "title": "TimeSeriesError",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "type"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "type": {"type": "string"},
            },
        }
    },
}


def model_components(*models: type[BaseModel]) -> dict[str, Any]:
    """The JSON schemas of `models` and of the models they use, as OpenAPI components."""
    components: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF + "{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return components


def error_shape(path: str) -> str:
    """The component name of the error body on `path` (`responses.error_response` decides)."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        return "OipError"
    if path.startswith(TIMESERIES_PREFIX):
        return "TimeSeriesError"
    return "ErrorBody"


def error_statuses(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses `operation` can answer, whatever it declares itself."""
    statuses = {401, 503, 504}
    if "requestBody" in operation or method in {"post", "put", "patch"}:
        statuses |= {400, 404, 413, 422}  # 404: a body may name a model too (KServe time series)
    if "{" in path:
        statuses |= {404, 422}
    return statuses


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error responses and the hand-parsed bodies' schemas to an OpenAPI document."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(model_components(ErrorBody, TimeSeriesForecastRequest))
    components.update(
        {
            "OipError": OIP_ERROR,
            "TimeSeriesError": TIMESERIES_ERROR,
            "InferenceRequest": INFERENCE_REQUEST,
            "InferenceResponse": INFERENCE_RESPONSE,
        }
    )
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(UNLIMITED_PREFIXES):
            continue
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            body = {"application/json": {"schema": {"$ref": REF + error_shape(path)}}}
            for status in sorted(error_statuses(path, method, operation)):
                documented = responses.get(str(status))
                if documented is None or _is_fastapi_422(documented):
                    responses[str(status)] = {"description": DESCRIPTIONS[status], "content": body}
            responses["503"].setdefault("headers", RETRY_AFTER)
    for unused in ("HTTPValidationError", "ValidationError"):  # in this order: one uses the other
        others = {k: v for k, v in components.items() if k != unused}
        if REF + unused not in json.dumps([schema["paths"], others]):
            components.pop(unused, None)
    return schema


def _is_fastapi_422(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == FASTAPI_422)
