"""The hot route, `POST /v1/models/{name}/forecast`, answered before FastAPI's router.

For a next-step forecast the model call costs tens of microseconds; what FastAPI does around it
costs more: Starlette's middleware stack, matching the path against every route (the protocols add
dozens), building a `Request`, solving the route's parameters, the exception middleware (measured
with py-spy under `make bench`: about half of the event loop's time on lstm next-step at c=64).

`ForecastApp` is a FastAPI app whose `__call__` sends that one route to `_handle` through the
app's own user middleware (metrics, body limit, access, overload...: the same classes, built once
around the handler instead of around the router), so every rule that applies to the other routes
applies here too; everything else goes through FastAPI as before. The route stays registered with
FastAPI (`service.api.forecast`), so it is in the OpenAPI document, and the two share `answer`:
same validation, same errors, same bodies.
"""

import orjson
from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import forecast
from service.api.errors import exception_response
from service.api.forecast import answer

PREFIX = "/v1/models/"
SUFFIX = "/forecast"
JSON_HEADERS = [(b"content-type", b"application/json")]


def forecast_model(path: str) -> str | None:
    """The `{name}` of a forecast path, or None for any other path (FastAPI answers those)."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        if name and "/" not in name:
            return name
    return None


class ForecastApp(FastAPI):
    """FastAPI, with the forecast route short-circuited (module docstring)."""

    _fast: ASGIApp | None = None
    _route: BaseRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            name = forecast_model(scope["path"])
            if name is not None:
                if self._fast is None:
                    self._fast, self._route = self._build_fast()
                scope["app"] = self
                # What the router would have set: metrics label the request by route template.
                scope["route"] = self._route
                scope["path_params"] = {"name": name}
                await self._fast(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _build_fast(self) -> tuple[ASGIApp, BaseRoute | None]:
        app: ASGIApp = self._handle
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app, forecast.router.routes[0]

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        response: Response
        try:
            content = orjson.dumps(
                await answer(self.state, scope["path_params"]["name"], body),
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
        except Exception as exc:  # answered as the app's exception handlers answer it
            response = exception_response(exc, "POST", path)
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*JSON_HEADERS, (b"content-length", b"%d" % len(content))],
                }
            )
            await send({"type": "http.response.body", "body": content})
            return
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
