"""The baseline gate of every training run: the exported model against naive, seasonal naive, the
linear baseline and AutoETS on the same validation and test windows, in the data's own units.

A model that loses to the best baseline over the horizon on the held-out windows is not exported
unless the caller allows it (`--allow-worse-than-baseline`); the comparison is stored in
forecaster.json (`metrics.baselines`) and so shown by `GET /v1/models/{name}`.
TensorFlow-free: numpy, statsforecast (training.baselines) and the windows of a Task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.baselines import (
    comparison_table,
    ets_forecasts,
    ets_window_forecasts,
    gate,
    mae_per_step,
    mase_per_step,
    mase_scale,
    seasonal_naive,
)
from training.datasets import FloatArray, Windows
from training.evaluation import LinearBaseline, last_step
from training.tasks import Task

Forecaster = Callable[[FloatArray], FloatArray]  # windows x [N, T, F] -> forecasts [N, H]


def _target_units(task: Task) -> tuple[float, float]:
    """(mean, scale) that turn model units of the target into the data's units."""
    if task.scaling.method == "none":
        return 0.0, 1.0
    return float(task.scaling.mean[0]), float(task.scaling.scale[0])


def _ets(
    task: Task, windows: Windows, origins: NDArray[np.intp] | None, season: int
) -> tuple[FloatArray, list[str]]:
    """AutoETS forecasts of the windows in model units: on the one series at its origins when the
    task has one (fitted once before the first origin), else one fit per window on the window."""
    offset, unit = _target_units(task)
    horizon = last_step(windows.y).shape[1]
    if origins is not None and task.scaled_series is not None:
        series = task.scaled_series[:, 0].astype(np.float64) * unit + offset
        result = ets_forecasts(series, [int(o) for o in origins], horizon, season)
        notes = [result.note] if result.note else []
        mean = result.mean
    else:
        raw = windows.x[:, :, 0].astype(np.float64) * unit + offset
        mean, notes = ets_window_forecasts(raw, horizon, season)
    return ((mean - offset) / unit).astype(np.float32), notes


def compare(
    task: Task,
    windows: Windows,
    model: Forecaster,
    origins: NDArray[np.intp] | None,
    season: int,
    split: str,
) -> dict[str, Any]:
    """MAE per step and overall, and MASE, of the model and each baseline on `windows`, in the
    data's units. MASE's scale is the seasonal naive's in-sample MAE: over the training part for
    one series, over each window's own context for windows of many series."""
    _offset, unit = _target_units(task)
    truth = last_step(windows.y)
    horizon = truth.shape[1]
    target = windows.x[:, :, 0]
    forecasts: dict[str, FloatArray] = {"model": model(windows.x)}
    forecasts["naive"] = seasonal_naive(target, horizon, 1).astype(np.float32)
    if season > 1 and target.shape[1] >= season:
        forecasts[f"seasonal_naive_{season}"] = seasonal_naive(target, horizon, season).astype(
            np.float32
        )
    forecasts["linear"] = LinearBaseline(task.train).predict(windows.x)
    forecasts["auto_ets"], notes = _ets(task, windows, origins, season)
    if origins is not None and task.scaled_series is not None and task.train_rows is not None:
        history = task.scaled_series[task.train_rows, 0].astype(np.float64)
        scale: Any = float(mase_scale(history, season)[0]) * unit
    else:
        scale = mase_scale(target.astype(np.float64), season) * unit
    methods = {}
    for name, forecast in forecasts.items():
        per_step = mae_per_step(forecast, truth) * unit
        mase = mase_per_step(forecast * unit, truth * unit, scale)
        methods[name] = {
            "mae_per_step": [float(f"{v:.6g}") for v in per_step],
            "mae": float(f"{np.mean(per_step):.6g}"),
            "mase": round(float(np.nanmean(mase)), 4),
        }
    return {
        "split": split,
        "windows": len(windows),
        "season": season,
        "units": "data" if task.scaling.method != "none" else "model",
        "mase_scale": float(f"{np.nanmean(scale):.6g}"),
        "methods": methods,
        "notes": notes,
    }


def table(comparison: dict[str, Any]) -> str:
    """The printed table of one comparison (helper for the CLI and the export log)."""
    rows = {name: m["mae_per_step"] for name, m in comparison["methods"].items()}
    text = comparison_table(rows, comparison["mase_scale"], model="model")
    head = f"{comparison['split']} windows: {comparison['windows']}, season {comparison['season']}"
    return "\n".join([head, text, *(f"note: {n}" for n in comparison["notes"])])


def decide(comparisons: dict[str, dict[str, Any]], allow_worse: bool) -> dict[str, Any]:
    """The gate on the held-out test windows when there are some (never trained or early-stopped
    on), else on validation: passed when the model's MAE over the horizon is at most the best
    baseline's."""
    split = "test" if "test" in comparisons else "validation"
    methods = comparisons[split]["methods"]
    baselines = {k: v["mae_per_step"] for k, v in methods.items() if k != "model"}
    result = gate(methods["model"]["mae_per_step"], baselines)
    return {
        "split": split,
        "passed": result.passed,
        "best_baseline": result.best_baseline,
        "ratio": round(result.ratio, 4),
        "message": result.message,
        "allowed_worse": bool(allow_worse and not result.passed),
    }
