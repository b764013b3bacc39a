"""The baseline gate: every method on the same windows, in data units, and the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.comparison import compare, decide, table
from training.datasets import FloatArray
from training.evaluation import last_step
from training.tasks import Task, TaskConfig, build_task


def weekly_task(tmp_path: Path) -> Task:
    days = 700
    dates = pd.date_range("2020-01-01", periods=days, freq="D")
    rng = np.random.default_rng(0)
    values = 100 + 10 * np.sin(np.arange(days) * 2 * np.pi / 7) + rng.normal(size=days)
    path = tmp_path / "w.csv"
    path.write_text(
        "date,value\n"
        + "".join(f"{d:%Y-%m-%d},{v:.4f}\n" for d, v in zip(dates, values, strict=True))
    )
    return build_task(TaskConfig(data=str(path), input_length=21, horizon=7))


def test_every_method_is_scored_on_the_same_windows_in_data_units(tmp_path: Path) -> None:
    task = weekly_task(tmp_path)
    assert task.test is not None

    def perfect(x: FloatArray) -> FloatArray:  # an oracle: the targets themselves
        return last_step(task.test.y) if len(x) == len(task.test) else last_step(task.valid.y)

    result = compare(task, task.test, perfect, task.test_origins, 7, "test")
    methods = result["methods"]
    assert set(methods) == {"model", "naive", "seasonal_naive_7", "linear", "auto_ets"}
    assert methods["model"]["mae"] == 0
    # In data units: the seasonal naive misses by about the noise (sd 1, so MAE ~ 1.1), not by
    # the z-scored value.
    assert 0.8 < methods["seasonal_naive_7"]["mae"] < 1.6
    assert methods["naive"]["mae"] > methods["seasonal_naive_7"]["mae"]
    assert result["windows"] == len(task.test)
    printed = table(result)
    assert "seasonal_naive_7" in printed
    assert "auto_ets" in printed


def test_the_gate_uses_the_held_out_windows_and_names_the_best_baseline(tmp_path: Path) -> None:
    task = weekly_task(tmp_path)
    assert task.test is not None

    def naive(x: FloatArray) -> FloatArray:  # the last value repeated: loses to the season
        return np.repeat(x[:, -1:, 0], 7, axis=1)

    comparisons = {
        "validation": compare(task, task.valid, naive, task.valid_origins, 7, "validation"),
        "test": compare(task, task.test, naive, task.test_origins, 7, "test"),
    }
    verdict = decide(comparisons, allow_worse=False)
    assert verdict["split"] == "test"
    assert not verdict["passed"]
    assert verdict["best_baseline"] in {"seasonal_naive_7", "linear", "auto_ets"}
    assert not verdict["allowed_worse"]
    assert decide(comparisons, allow_worse=True)["allowed_worse"]
