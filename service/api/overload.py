"""Overload protection as pure ASGI middleware, so that it covers every route (fast paths included).

```
in-flight limit   at most `max_in_flight` requests in flight in this worker; beyond, an immediate
                  503 `overloaded` with `Retry-After`, before the body is read: a refused request
                  costs microseconds, and the queue in front of the models cannot grow without bound
deadline          no answer started within `timeout_s`: 504 `deadline_exceeded`, and the handler is
                  cancelled (a batcher job still queued is dropped, a running ORT call's result is
                  discarded); an answer that has started is never cut off
```

Probes (`/health...`, `/v2/health...`) and `/metrics` pass through: an orchestrator must see a busy
worker as alive, and a scrape during overload is when the numbers matter most.

The deadlines are kept by one watchdog task per worker, which looks at the requests in flight every
`tick` (a tenth of the timeout, at most a second): a per-request timer or task cost 25-40 us of CPU
per request under uvicorn (measured, next-step at c=64: -10% throughput), this costs a dict entry.
At a deadline the watchdog sends the 504 itself and cancels the handler's task, so the answer goes
out on time even when the handler is slow to unwind; the handler's later messages go nowhere.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.responses import error_response
from service.errors import DeadlineExceededError, ForecastError, OverloadedError
from service.metrics import IN_FLIGHT

logger = logging.getLogger(__name__)

# Never refused and never timed out: probes and scrapes.
UNLIMITED_PREFIXES: Final = ("/health", "/v2/health", "/metrics")


@dataclass(eq=False, slots=True)
class _Request:
    scope: Scope
    receive: Receive
    send: Send
    deadline: float
    answering: bool = False  # the response has started: too late for a 504
    expired: bool = False  # the 504 is going out: the handler's messages go nowhere
    done: bool = False  # its answer is out: its slot is free
    answer: "asyncio.Task[None] | None" = None  # the watchdog's 504


@dataclass(eq=False)
class Overload:
    """One worker's requests in flight, their bound and their deadlines; shared by every
    `OverloadProtection` built on it.

    A separate object because the middleware may be built more than once in one app (the forecast
    fast path builds its own stack, `service.api.fast`): the bound is per worker, not per stack.
    One event loop per process, so no lock; with several workers the service holds up to
    workers x max_in_flight.
    """

    max_in_flight: int
    retry_after_s: int
    timeout_s: float
    in_flight: int = 0
    requests: dict["asyncio.Task[object]", _Request] = field(default_factory=dict)
    _watchdog: "asyncio.Task[None] | None" = None

    @property
    def tick(self) -> float:
        return min(1.0, max(0.005, self.timeout_s / 10))

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the watchdog on `loop` unless it runs there already (tests run several loops)."""
        watchdog = self._watchdog
        if watchdog is None or watchdog.done() or watchdog.get_loop() is not loop:
            if watchdog is not None and watchdog.get_loop() is not loop:
                # The previous loop has gone, and its requests with it.
                self.requests.clear()
                self.in_flight = 0
            self._watchdog = loop.create_task(self._watch(), name="overload-watchdog")

    def release(self, request: _Request) -> None:
        if not request.done:
            request.done = True
            self.in_flight -= 1

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.tick)
            try:
                self._check(loop)
            except Exception:  # a bug here must not end the deadlines of the whole worker
                logger.exception("overload watchdog")

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        IN_FLIGHT.set(self.in_flight)  # sampled: an inc and a dec per request cost more
        now = loop.time()
        expired = [
            (task, request)
            for task, request in self.requests.items()
            if now >= request.deadline and not request.answering and not request.expired
        ]
        for task, request in expired:
            request.expired = True
            task.cancel()
            request.answer = loop.create_task(self._answer_deadline(request))

    async def _answer_deadline(self, request: _Request) -> None:
        error = DeadlineExceededError(
            f"no answer within request_timeout_s={self.timeout_s:g}s; the request was cancelled"
        )
        try:
            await _answer(error, request.scope, request.receive, request.send)
        except Exception as exc:  # the client has gone: nobody to tell
            logger.debug("504 not delivered: %r", exc)
        finally:
            self.release(request)


class OverloadProtection:
    """The in-flight limit and the deadline of `overload`, for every route but the probes."""

    def __init__(self, app: ASGIApp, overload: Overload) -> None:
        self.app = app
        self.overload = overload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNLIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        overload = self.overload
        if overload.in_flight >= overload.max_in_flight:
            error = OverloadedError(
                f"server overloaded: {overload.in_flight} requests in flight "
                f"(max_in_flight={overload.max_in_flight}); retry after {overload.retry_after_s}s"
            )
            headers = {"Retry-After": str(overload.retry_after_s)}
            await _answer(error, scope, receive, send, headers)
            return

        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        overload.watch(loop)
        request = _Request(scope, receive, send, loop.time() + overload.timeout_s)
        overload.in_flight += 1
        overload.requests[task] = request

        async def send_tracked(message: Message) -> None:
            if request.expired:
                return
            if message["type"] == "http.response.start":
                request.answering = True
            await send(message)
            # The slot is free as soon as the answer is out, not when the app returns (a loop
            # turn or more later): a client that sends its next request at once must find it free.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                overload.release(request)

        try:
            await self.app(scope, receive, send_tracked)
        except asyncio.CancelledError:
            # The watchdog's cancel, answered by its 504: done here. Any other cancel goes on.
            if not request.expired or task.uncancel() > 0:
                raise
        except Exception:
            if not request.expired:
                raise
            logger.debug("handler failed after its deadline", exc_info=True)
        finally:
            overload.requests.pop(task, None)
            if not request.expired:  # an expired request's slot is freed when its 504 is out
                overload.release(request)
        if request.answer is not None:
            await request.answer  # the server must not see the app return before its 504


async def _answer(
    error: ForecastError,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: dict[str, str] | None = None,
) -> None:
    response = error_response(error.status_code, error.type, error.message, path=scope["path"])
    response.headers.update(headers or {})
    await response(scope, receive, send)
