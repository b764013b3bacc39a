"""Schemathesis against the service's own OpenAPI schema, bounded: bad input never yields a 5xx.

Runs the CLI against the live uvicorn of the tritonclient tests (tiny models), with a fixed seed and
a bounded number of examples per operation, so the run is reproducible and takes a few seconds.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.test_tritonclient_live import live  # noqa: F401  (the live-server fixture)

pytest.importorskip("schemathesis")


def test_no_server_errors_under_fuzzing(live: tuple[str, Path], tmp_path: Path) -> None:  # noqa: F811
    url, _ = live
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None
    result = subprocess.run(
        [
            cli,
            "run",
            f"http://{url}/openapi.json",
            "--checks",
            "not_a_server_error",
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
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
