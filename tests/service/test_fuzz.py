"""Schemathesis against the service's own OpenAPI schema: no 5xx, and every answer as documented.

The CLI runs every operation the schema lists (routes added later included) against a live
uvicorn serving tiny models, with API keys on so that the admin routes are reached too, a fixed
seed and a bounded number of examples per operation: reproducible, and a few tens of seconds.
"""

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.conftest import write_test_models
from tests.service.live import live_uvicorn

pytest.importorskip("schemathesis")

KEY = "fuzz-key"

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
    with live_uvicorn(root, {"FORECAST_API_KEYS": KEY}) as address:
        yield f"http://{address}"


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
