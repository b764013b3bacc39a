"""Schemathesis against the service's own OpenAPI schema: no 5xx, and every answer as documented.

The CLI runs every operation the schema lists (routes added later included) against a live
uvicorn serving tiny models, with API keys on so that the admin routes are reached too, a fixed
seed and a bounded number of examples per operation: reproducible, and a few tens of seconds.
"""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import write_test_models
from tests.service.test_tritonclient_live import REPO, free_port

pytest.importorskip("schemathesis")

KEY = "fuzz-key"
START_TIMEOUT = 30.0

# Every check schemathesis has (`all`), configured where our API needs it said:
#
# - positive_data_acceptance: a request the schema allows must not be rejected. A 422 is allowed
#   too: it is a request well-formed for the schema that the chosen model cannot serve (shorter
#   than its min_length, another number of features, covariates it does not take, tensor names
#   and shapes of its graph, a configured limit), which only the model's forecaster.json knows.
#   Any other rejection of schema-valid data (400: "not the documented shape") still fails.
# - ignored_auth, object_level_authorization, use_after_free, ensure_resource_availability run,
#   and have nothing to check while the schema declares no security scheme and no DELETE.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`http://host:port` of a uvicorn serving `tiny` and `multi`, with an API key required."""
    root = write_test_models(tmp_path_factory.mktemp("fuzz") / "models", {"method": "none"})
    port = free_port()
    env = {
        # One process with its own metrics (an earlier test may have left a multiprocess folder set).
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "FORECAST_MODELS_DIR": str(root),
        "FORECAST_DEVICE": "cpu",
        "FORECAST_API_KEYS": KEY,
    }
    command = [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if server.poll() is not None:
                stderr = server.stderr.read().decode() if server.stderr else ""
                pytest.fail(f"uvicorn exited with {server.returncode}: {stderr[-2000:]}")
            try:
                if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn not ready on {url} after {START_TIMEOUT}s")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        if server.stderr:
            server.stderr.close()


def test_every_answer_matches_the_schema_under_fuzzing(keyed_server: str, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [
            cli,
            "--config-file",
            str(config),
            "run",
            f"{keyed_server}/openapi.json",
            "--header",
            f"Authorization: Bearer {KEY}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--no-color",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "passed" in result.stdout
