"""Overload protection: the in-flight limit refuses at once with 503, the deadline answers 504."""

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.types import Message, Receive, Scope, Send

from service import Settings, create_app
from service.api.overload import Overload, OverloadProtection
from service.runtime import OnnxModel

SERIES = [0.1, 0.3, 0.5, 0.4, 0.2, 0.0, -0.2, -0.3, -0.1, 0.1]
FORECAST = "/v1/models/tiny/forecast"


class Gate:
    """Holds every model call until opened; counts the calls waiting and the ones cancelled."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.waiting = 0
        self.cancelled = 0

    async def until_waiting(self, n: int) -> None:
        async with asyncio.timeout(5):
            while self.waiting < n:
                await asyncio.sleep(0.001)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Gate:
    gate = Gate()
    run_steps = OnnxModel.run_steps

    async def gated(self: OnnxModel, steps: Any, masks: Mapping[str, Any]) -> Any:
        gate.waiting += 1
        try:
            await gate.opened.wait()
        except asyncio.CancelledError:
            gate.cancelled += 1
            raise
        finally:
            gate.waiting -= 1
        return await run_steps(self, steps, masks)

    monkeypatch.setattr(OnnxModel, "run_steps", gated)
    return gate


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, behind an in-process client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def forecast(client: httpx.AsyncClient) -> "asyncio.Task[httpx.Response]":
    return asyncio.create_task(client.post(FORECAST, json={"series": SERIES, "horizon": 1}))


async def in_flight_gauge(expected: float) -> float:
    """`forecast_requests_in_flight` once it shows `expected` (the watchdog samples it each tick)."""
    deadline = time.monotonic() + 2.0
    while (value := counted("forecast_requests_in_flight")) != expected:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    return value


def test_the_request_beyond_max_in_flight_is_refused_at_once(
    settings: Settings, gate: Gate
) -> None:
    limits = {"max_in_flight": 2, "retry_after_s": 7, "request_timeout_s": 2.0}  # a 0.2-s tick
    app = create_app(settings.model_copy(update=limits))
    refused_before = counted("forecast_errors_total", type="overloaded")

    async def main() -> None:
        async with serving(app) as client:
            held = [forecast(client) for _ in range(2)]
            await gate.until_waiting(2)
            assert await in_flight_gauge(2) == 2

            started = time.perf_counter()
            refused = await client.post(FORECAST, json={"series": SERIES})
            elapsed = time.perf_counter() - started
            # Probes and scrapes are never refused, however busy the worker is.
            probes = [await client.get(p) for p in ("/health/live", "/v2/health/live", "/metrics")]

            gate.opened.set()
            answered = await asyncio.gather(*held)
            after = await client.post(FORECAST, json={"series": SERIES})
            assert await in_flight_gauge(0) == 0

        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "7"
        assert refused.json()["error"]["type"] == "overloaded"
        assert "max_in_flight=2" in refused.json()["error"]["message"]
        assert elapsed < 0.5  # refused, not queued behind the held requests
        assert [p.status_code for p in probes] == [200, 200, 200]
        assert [r.status_code for r in answered] == [200, 200]
        assert after.status_code == 200

    asyncio.run(main())
    assert counted("forecast_errors_total", type="overloaded") - refused_before == 1


def test_refusals_speak_the_protocol_of_the_path(settings: Settings, gate: Gate) -> None:
    # The held forecast goes through the fast path's own middleware stack, the others through
    # FastAPI's router: one bound for the worker all the same (`overload.Overload`).
    app = create_app(settings.model_copy(update={"max_in_flight": 1}))

    async def main() -> list[httpx.Response]:
        async with serving(app) as client:
            held = forecast(client)
            await gate.until_waiting(1)
            oip = await client.post("/v2/models/tiny/infer", content=b"{}")
            kserve = await client.post("/v1/timeseries/forecast", content=b"{}")
            gate.opened.set()
            await held
            return [oip, kserve]

    oip, kserve = asyncio.run(main())

    assert (oip.status_code, kserve.status_code) == (503, 503)
    assert "overloaded" in oip.json()["error"]  # OIP: {"error": "<message>"}
    assert kserve.json()["error"]["code"] == "503"
    assert kserve.json()["error"]["type"] == "overloaded"
    assert oip.headers["retry-after"] == kserve.headers["retry-after"] == "1"


def test_the_deadline_answers_504_and_cancels_the_handler(settings: Settings, gate: Gate) -> None:
    app = create_app(settings.model_copy(update={"request_timeout_s": 0.1, "max_in_flight": 1}))
    timed_out_before = counted("forecast_errors_total", type="deadline_exceeded")

    async def main() -> tuple[httpx.Response, float, httpx.Response]:
        async with serving(app) as client:
            started = time.perf_counter()
            late = await client.post(FORECAST, json={"series": SERIES})
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.01)  # the cancellation reaches the handler
            gate.opened.set()
            # The slot of the timed-out request is free again (max_in_flight=1).
            return late, elapsed, await client.post(FORECAST, json={"series": SERIES})

    late, elapsed, after = asyncio.run(main())

    assert late.status_code == 504
    assert late.json()["error"]["type"] == "deadline_exceeded"
    assert "request_timeout_s=0.1s" in late.json()["error"]["message"]
    assert 0.1 <= elapsed < 1.0
    assert gate.cancelled == 1
    assert after.status_code == 200
    assert counted("forecast_errors_total", type="deadline_exceeded") - timed_out_before == 1


def deadline(app: Any, timeout_s: float) -> OverloadProtection:
    return OverloadProtection(
        app, Overload(max_in_flight=100, retry_after_s=1, timeout_s=timeout_s)
    )


async def call(app: Any, path: str = "/v1/models/x/forecast") -> tuple[int, bytes, float]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        started = time.perf_counter()
        response = await client.get(path)
        return response.status_code, response.content, time.perf_counter() - started


def test_the_504_goes_out_on_time_while_the_handler_unwinds() -> None:
    unwound: list[float] = []

    async def stubborn(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(5.0)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # cleanup that takes its time
            unwound.append(time.perf_counter())
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise

    async def main() -> list[tuple[float, Message]]:
        # Straight to the ASGI app: a server sends each message as it comes, while httpx's
        # ASGITransport answers only once the app has returned.
        sent: list[tuple[float, Message]] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append((time.perf_counter(), message))

        scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": []}
        await deadline(stubborn, 0.05)(scope, receive, send)
        return sent

    started = time.perf_counter()
    sent = asyncio.run(main())

    (t_start, start), (_, body) = sent  # the 504 only: the late 200 went nowhere
    assert start["status"] == 504
    assert b"deadline_exceeded" in body["body"]
    assert t_start - started < 0.3  # at the deadline (0.05 s, checked every 5 ms)...
    (t_unwound,) = unwound
    assert t_unwound - started >= 0.5  # ...not after the handler's cleanup


def test_an_answer_that_has_started_is_not_cut_off() -> None:
    async def slow_stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"all of it"})

    status, body, _ = asyncio.run(call(deadline(slow_stream, 0.05)))

    assert (status, body) == (200, b"all of it")


def test_probes_have_no_deadline() -> None:
    async def slow_probe(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"live"})

    status, body, _ = asyncio.run(call(deadline(slow_probe, 0.01), "/health/live"))

    assert (status, body) == (200, b"live")


def test_overload_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_MAX_IN_FLIGHT", "8")
    monkeypatch.setenv("FORECAST_RETRY_AFTER_S", "3")
    monkeypatch.setenv("FORECAST_REQUEST_TIMEOUT_S", "2.5")
    monkeypatch.setenv("FORECAST_SHUTDOWN_TIMEOUT_S", "9")

    settings = Settings()

    assert (settings.max_in_flight, settings.retry_after_s) == (8, 3)
    assert (settings.request_timeout_s, settings.shutdown_timeout_s) == (2.5, 9)
    # `make bench` drives 64 concurrent connections: the default must admit them all.
    assert Settings.model_fields["max_in_flight"].default > 64
