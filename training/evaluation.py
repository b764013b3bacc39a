"""Metrics and baselines, in numpy: per-horizon-step errors of a forecast against its targets.

The book's metric for seq2seq models is the MSE of the forecast made at the LAST time step of the
window; `last_step` turns both seq2seq targets [N, T, H] and seq2vec targets [N, H] into [N, H].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from training.datasets import FloatArray, Windows


def last_step(y: NDArray[np.floating]) -> FloatArray:
    return np.asarray(y[:, -1, :] if y.ndim == 3 else y, dtype=np.float32)


def errors(pred: NDArray[np.floating], truth: NDArray[np.floating]) -> dict[str, object]:
    """MSE and MAE overall and per horizon step, for [N, H] forecasts."""
    diff = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return {
        "mse": float(np.mean(diff**2)),
        "mae": float(np.mean(np.abs(diff))),
        "mse_final_step": float(np.mean(diff[:, -1] ** 2)),
        "mse_per_step": [float(v) for v in np.mean(diff**2, axis=0)],
        "mae_per_step": [float(v) for v in np.mean(np.abs(diff), axis=0)],
    }


def naive_forecast(windows: Windows, target: int = 0, season: int = 1) -> FloatArray:
    """Repeat the last `season` target values (season 1: the last value; 7: the same weekday)."""
    history = windows.x[:, :, target]
    horizon = last_step(windows.y).shape[1]
    steps = np.arange(horizon)
    return history[:, history.shape[1] - season + steps % season].astype(np.float32)


class LinearBaseline:
    """Least squares from the flattened window to the H next target values (the book's linear model)."""

    def __init__(self, train: Windows) -> None:
        design = self._design(train.x)
        self.coef, *_ = np.linalg.lstsq(design, last_step(train.y).astype(np.float64), rcond=None)

    @staticmethod
    def _design(x: NDArray[np.floating]) -> NDArray[np.float64]:
        flat = x.reshape(len(x), -1).astype(np.float64)
        return np.hstack([flat, np.ones((len(x), 1))])

    def predict(self, x: NDArray[np.floating]) -> FloatArray:
        return (self._design(x) @ self.coef).astype(np.float32)


def interval_coverage(
    samples: NDArray[np.floating], truth: NDArray[np.floating], levels: tuple[float, ...]
) -> dict[str, list[float]]:
    """Empirical coverage per horizon step of central intervals of MC samples [S, N, H]."""
    out: dict[str, list[float]] = {}
    for level in levels:
        lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
        inside = (truth >= lo) & (truth <= hi)
        out[f"{level:g}"] = [round(float(v), 4) for v in inside.mean(axis=0)]
    return out
