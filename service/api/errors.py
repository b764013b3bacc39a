"""Map every error to `{"error": {"type", "message"}}`: ours, request validation, HTTP, the rest.

On the standard protocols' paths the shape is theirs instead (`responses.error_response`)."""

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from service.api.responses import error_response
from service.errors import ForecastError

logger = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ForecastError, _forecast_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


def exception_response(exc: Exception, method: str, path: str) -> Response:
    """The answer to an exception a handler raised: ours, request validation, or anything else
    (logged with its traceback; the client learns nothing about the internals). The app's handlers
    and the forecast fast path (`service.api.fast`) both answer through this."""
    if isinstance(exc, ForecastError):
        return error_response(exc.status_code, exc.type, exc.message, path=path, param=exc.param)
    if isinstance(exc, RequestValidationError):
        return validation_error_response(exc.errors(), path)
    logger.error("unexpected error on %s %s", method, path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error", path=path)


async def _forecast_error(request: Request, exc: ForecastError) -> Response:
    return exception_response(exc, request.method, request.url.path)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return exception_response(exc, request.method, request.url.path)


def validation_error_response(errors: Sequence[Any], path: str) -> Response:
    """400 for a body that is not JSON, else 422 naming the first few fields at fault."""
    if any(e.get("type") == "json_invalid" for e in errors):
        error = errors[0]
        detail = error.get("ctx", {}).get("error", error.get("msg"))
        return error_response(400, "malformed_json", f"body is not valid JSON: {detail}", path=path)
    return error_response(422, "validation_error", describe_validation_errors(errors), path=path)


def describe_validation_errors(errors: Sequence[Any], limit: int = 3) -> str:
    """`field.path: message` for the first few errors; `body` is left out of the path.

    A value that fits no member of a union (a series is numbers or rows) fails once per member, with
    the member in the path (`series.list[float].2`): only the member that read furthest into the
    value is kept, since the client meant that one.
    """
    errors = _furthest_union_member(errors)
    parts = []
    for error in errors[:limit]:
        loc = [str(p) for p in error.get("loc", ()) if p != "body" and not _is_member(p)]
        parts.append(f"{'.'.join(loc) or 'body'}: {error.get('msg', 'invalid')}")
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _is_member(part: object) -> bool:
    return isinstance(part, str) and "[" in part  # pydantic's union member tags: `list[float]`


def _split_at_member(loc: Sequence[Any]) -> tuple[tuple[Any, ...], str, tuple[int, ...]] | None:
    """(path to the union, member tag, how far into the value the member read) or None."""
    for k, part in enumerate(loc):
        if _is_member(part):
            return (
                tuple(loc[:k]),
                part,
                tuple(p if isinstance(p, int) else -1 for p in loc[k + 1 :]),
            )
    return None


def _furthest_union_member(errors: Sequence[Any]) -> list[Any]:
    first_failure: dict[tuple[Any, ...], dict[str, tuple[int, ...]]] = defaultdict(dict)
    for error in errors:
        if split := _split_at_member(error.get("loc", ())):
            union, member, reached = split
            failures = first_failure[union]
            failures[member] = min(failures.get(member, reached), reached)
    best = {u: max(f, key=lambda m: f[m]) for u, f in first_failure.items()}
    kept = []
    for error in errors:
        split = _split_at_member(error.get("loc", ()))
        if split is None or best[split[0]] == split[1]:
            kept.append(error)
    return kept


async def _http_error(request: Request, exc: HTTPException) -> Response:
    response = error_response(exc.status_code, "http_error", str(exc.detail), path=request.url.path)
    # Starlette's 405 names the route's methods in `Allow`, which RFC 9110 requires: keep it.
    response.headers.update(exc.headers or {})
    return response


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return exception_response(exc, request.method, request.url.path)
