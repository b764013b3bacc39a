"""A real uvicorn serving a models folder on a free 127.0.0.1 port, for the live-server tests."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from loadtest.server import free_port

__all__ = ["REPO", "free_port", "live_uvicorn"]

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0


@contextmanager
def live_uvicorn(
    root: Path, env: dict[str, str] | None = None, ready_path: str = "/health/ready"
) -> Iterator[str]:
    """`host:port` of `uvicorn --factory service.app:create_app` on `root`, once `ready_path`
    answers 200; terminated (then killed) on exit. `env` adds FORECAST_* settings."""
    port = free_port()
    full_env = {
        # One process with its own metrics (an earlier test may have left a multiprocess folder set).
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "FORECAST_MODELS_DIR": str(root),
        "FORECAST_DEVICE": "cpu",
        **(env or {}),
    }
    command = [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=REPO, env=full_env, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if server.poll() is not None:
                stderr = server.stderr.read().decode() if server.stderr else ""
                pytest.fail(f"uvicorn exited with {server.returncode}: {stderr[-2000:]}")
            try:
                if httpx.get(f"http://{address}{ready_path}", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn not ready on {address} after {START_TIMEOUT}s")
            time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        if server.stderr:
            server.stderr.close()
