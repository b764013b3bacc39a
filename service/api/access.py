"""Access: API keys on every route but the probes, admin endpoints only with keys, optional CORS.

Pure ASGI middleware, so that it covers every route, the fast path under FastAPI's router included:

```
FORECAST_API_KEYS unset   every route open; admin endpoints 403 (they need keys to exist at all)
FORECAST_API_KEYS set     probes open; everything else, /metrics and the docs included, needs
                          `Authorization: Bearer <key>` or `X-API-Key: <key>`; else 401
```

A presented key is hashed and compared with `hmac.compare_digest` to the hash of every configured
key, without stopping at a match: the time taken says nothing about which key, or how much of one,
was right (hashing first also hides the keys' lengths). A 401 never says whether the header was
missing, malformed or wrong. Keys are never logged, echoed, or used as metric labels.
"""

import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.oip import HEADER_LENGTH
from service.api.responses import error_response
from service.errors import ForbiddenError, ForecastError, UnauthorizedError

logger = logging.getLogger(__name__)

# Liveness and readiness probes: a kubelet or compose healthcheck carries no key.
PUBLIC_PREFIXES = ("/health/", "/v2/health/")
# Model lifecycle (service/api/lifecycle.py): they change what the service serves.
ADMIN_PREFIXES = ("/v1/admin/", "/v2/repository/")

UNAUTHORIZED = (
    "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
)
ADMIN_NEEDS_KEYS = (
    "admin endpoints are disabled: they need API keys (set FORECAST_API_KEYS) to be enabled"
)


class ApiKeys:
    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self._digests = [_digest(key.encode()) for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(PUBLIC_PREFIXES):
            if not self._digests:
                if scope["path"].startswith(ADMIN_PREFIXES):
                    await _refuse(ForbiddenError(ADMIN_NEEDS_KEYS), scope, receive, send)
                    return
            elif not self.authorized(scope["headers"]):
                logger.debug("401 on %s %s", scope["method"], scope["path"])
                await _refuse(UnauthorizedError(UNAUTHORIZED), scope, receive, send)
                return
        await self.app(scope, receive, send)

    def authorized(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """Whether any presented key is a configured one, in time independent of which."""
        valid = False
        for presented in _presented_keys(headers):
            digest = _digest(presented)
            for key in self._digests:
                valid |= hmac.compare_digest(digest, key)
        return valid


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _presented_keys(headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    keys = []
    for name, value in headers:  # ASGI header names are lower case
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
        elif name == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys


async def _refuse(error: ForecastError, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(error.status_code, error.type, error.message, path=scope["path"])
    if error.status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    await response(scope, receive, send)


def add_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Starlette's CORSMiddleware for `origins` only, with the methods and headers this API uses.

    No credentials mode: keys travel in headers, not cookies. Add it after `ApiKeys` (outside it),
    so that a preflight, which carries no key, is answered and a 401 still has the CORS headers.
    """
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type", HEADER_LENGTH],
        expose_headers=["Retry-After", "WWW-Authenticate", HEADER_LENGTH],
        max_age=600,
    )
