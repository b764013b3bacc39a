"""`export --input-length`: a model that reads only the last rows of its window, served on longer ones."""

import json
from pathlib import Path

import pytest

from training.cli import main


def test_export_input_length_needs_a_model_reading_the_last_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = {"data": "synthetic", "input_length": 28, "season": 7, "scaling": "window"}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for training, message in (
        ({}, "only of models that read its last rows"),
        ({"profile_weeks": 4}, "shorter than the 28 steps"),
    ):
        (run_dir / "run.json").write_text(
            json.dumps({"name": "m", "architecture": "gru", "task": task, "training": training})
        )
        code = main(
            ["export", "--run", str(run_dir), "--out", str(tmp_path / "m"), "--input-length", "21"]
        )
        assert code == 2
        assert message in capsys.readouterr().err
