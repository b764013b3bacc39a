"""Tasks: calibration always gets held-out windows, the season follows the frequency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.tasks import MIN_CALIBRATION_WINDOWS, TaskConfig, build_task


def daily_csv(path: Path, days: int) -> Path:
    dates = pd.date_range("2020-01-01", periods=days, freq="D")
    values = 10 + np.sin(np.arange(days) * 2 * np.pi / 7)
    path.write_text(
        "date,value\n"
        + "".join(f"{d:%Y-%m-%d},{v:.4f}\n" for d, v in zip(dates, values, strict=True))
    )
    return path


def test_without_test_end_the_rows_after_validation_are_held_out(tmp_path: Path) -> None:
    data = daily_csv(tmp_path / "d.csv", 600)
    task = build_task(TaskConfig(data=str(data), input_length=14, horizon=7))  # 70/20/10
    assert task.test is not None
    assert task.test_origins is not None
    assert task.test_origins[0] == 540  # the first row after validation (70% + 20% of 600)
    assert len(task.test) == 600 - 540 - 7 + 1
    assert any("no --test-end" in note and "held out" in note for note in task.notes)
    assert task.config.season == 7  # daily data: a week


def test_validation_up_to_the_end_gives_its_last_third_to_calibration(tmp_path: Path) -> None:
    data = daily_csv(tmp_path / "d.csv", 600)
    config = TaskConfig(
        data=str(data), input_length=14, horizon=7, train_end="2020-12-31", valid_end="2021-08-22"
    )
    task = build_task(config)
    assert task.test is not None
    assert task.valid_origins is not None
    assert task.test_origins is not None
    valid_rows = 600 - 366
    cut = 366 + valid_rows * 2 // 3
    assert task.valid_origins[-1] + 7 <= cut  # validation targets end before the held-out part
    assert task.test_origins[0] == cut
    assert len(task.test) == 600 - cut - 7 + 1


def test_few_held_out_windows_are_warned_about(tmp_path: Path) -> None:
    data = daily_csv(tmp_path / "d.csv", 200)
    task = build_task(TaskConfig(data=str(data), input_length=14, horizon=7))
    assert task.test is not None
    assert len(task.test) < MIN_CALIBRATION_WINDOWS
    assert any(note.startswith("warning:") for note in task.notes)


@pytest.mark.parametrize(("frequency", "season"), [("h", 24), ("D", 7), ("MS", 12), ("W", 52)])
def test_the_season_follows_the_frequency_unless_given(
    tmp_path: Path, frequency: str, season: int
) -> None:
    dates = pd.date_range("2000-01-01", periods=400, freq=frequency)
    path = tmp_path / "s.csv"
    path.write_text(
        "date,value\n" + "".join(f"{d.isoformat()},{i % 5}\n" for i, d in enumerate(dates))
    )
    assert build_task(TaskConfig(data=str(path), input_length=8, horizon=2)).config.season == season
    given = TaskConfig(data=str(path), input_length=8, horizon=2, season=3)
    assert build_task(given).config.season == 3
