"""Graceful shutdown of `python -m service`: SIGTERM stops accepting, drains, then exits 0."""

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import service.__main__
from tests.service.conftest import write_test_models
from tests.service.live import REPO, free_port

START_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 20  # FORECAST_SHUTDOWN_TIMEOUT_S of the server under test
# Several seconds of work for the tiny model on 2 cores: 30 series x 1000 MC paths, 200 rollout
# steps. Long enough that the in-flight gauge (sampled once a second by the overload watchdog)
# sees it well before it ends, so that SIGTERM comes while it runs (a 1.5 s request was seen late,
# once, in CI: it ended within uvicorn's first 0.1 s of shutdown).
SLOW = {
    "batch": [[math.sin(t / 3) for t in range(12)]] * 30,
    "horizon": 600,
    "uncertainty": {"samples": 1000, "seed": 1},
}


def in_flight(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=2.0).text
    lines = [x for x in text.splitlines() if x.startswith("forecast_requests_in_flight")]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_main_passes_the_shutdown_timeout_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    handlers: list[Any] = []

    def run(*args: Any, **kwargs: Any) -> None:
        handlers.append(signal.getsignal(signal.SIGTERM))
        calls.append(kwargs)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("FORECAST_SHUTDOWN_TIMEOUT_S", "12")
    before = signal.getsignal(signal.SIGTERM)

    service.__main__.main()

    assert calls[0]["timeout_graceful_shutdown"] == 12
    # While uvicorn runs, its re-raised SIGTERM exits 0; afterwards the old handler is back.
    assert handlers == [service.__main__._exit_zero]
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_drains_the_request_in_flight_then_exits_0(tmp_path: Path) -> None:
    root = write_test_models(tmp_path / "models", {"method": "none"})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        # One process: its own metrics (an earlier test may have left a multiprocess folder set).
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "FORECAST_MODELS_DIR": str(root),
        "FORECAST_DEVICE": "cpu",
        "FORECAST_HOST": "127.0.0.1",
        "FORECAST_PORT": str(port),
        "FORECAST_WORKERS": "1",
        "FORECAST_LOG_LEVEL": "info",
        "FORECAST_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT),
    }
    command = [sys.executable, "-m", "service"]
    server = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if httpx.get(f"{base}/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready after {START_TIMEOUT}s"
            time.sleep(0.1)

        outcome: dict[str, Any] = {}

        def slow_request() -> None:
            url = f"{base}/v1/models/tiny/forecast"
            response = httpx.post(url, json=SLOW, timeout=60.0)
            outcome["status"], outcome["at"] = response.status_code, time.monotonic()
            outcome["forecasts"] = len(response.json().get("forecasts", []))

        client = threading.Thread(target=slow_request)
        client.start()
        deadline = time.monotonic() + 10
        while in_flight(base) < 1:
            assert time.monotonic() < deadline, "the slow request never arrived"
            time.sleep(0.02)

        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)  # uvicorn closes its listening socket first
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health/live", timeout=2.0)
        refused_while_draining = client.is_alive()

        client.join(timeout=60)
        returncode = server.wait(timeout=SHUTDOWN_TIMEOUT + 10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        stderr = server.stderr.read() if server.stderr else ""
        if server.stderr:
            server.stderr.close()

    assert refused_while_draining, "the slow request ended before the refusal was checked"
    assert outcome["status"] == 200
    assert outcome["forecasts"] == 30
    assert outcome["at"] > signalled  # it was in flight when the signal came, and still answered
    assert returncode == 0, stderr[-2000:]
    assert "Waiting for connections to close" in stderr
    assert "Finished server process" in stderr
