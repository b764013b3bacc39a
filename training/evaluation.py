"""Metrics and baselines, in numpy: per-horizon-step errors of a forecast against its targets.

The book's metric for seq2seq models is the MSE of the forecast made at the LAST time step of the
window; `last_step` turns both seq2seq targets [N, T, H] and seq2vec targets [N, H] into [N, H].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from training.baselines import seasonal_naive
from training.datasets import FloatArray, Windows


def last_step(y: NDArray[np.floating]) -> FloatArray:
    return np.asarray(y[:, -1, :] if y.ndim == 3 else y, dtype=np.float32)


def errors(
    pred: NDArray[np.floating], truth: NDArray[np.floating], unit: float = 1.0
) -> dict[str, object]:
    """MSE and MAE overall and per horizon step, for [N, H] forecasts in model (scaled) units.

    With `unit` != 1 (the target's scale), MAE is also given in the data's own units (riders).
    """
    diff = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    out: dict[str, object] = {
        "mse": float(np.mean(diff**2)),
        "mae": float(np.mean(np.abs(diff))),
        "mse_final_step": float(np.mean(diff[:, -1] ** 2)),
        "mse_per_step": [float(v) for v in np.mean(diff**2, axis=0)],
        "mae_per_step": [float(v) for v in np.mean(np.abs(diff), axis=0)],
    }
    if unit != 1.0:
        out["mae_original_units"] = float(f"{float(np.mean(np.abs(diff))) * unit:.6g}")
        out["mae_original_units_per_step"] = [
            float(f"{float(v) * unit:.6g}") for v in np.mean(np.abs(diff), axis=0)
        ]
    return out


def naive_forecast(windows: Windows, target: int = 0, season: int = 1) -> FloatArray:
    """Repeat the last `season` target values (season 1: the last value; 7: the same weekday)."""
    horizon = last_step(windows.y).shape[1]
    return seasonal_naive(windows.x[:, :, target], horizon, season).astype(np.float32)


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


def calibrate_spread(
    samples: NDArray[np.floating], truth: NDArray[np.floating], levels: tuple[float, ...]
) -> list[float]:
    """Per horizon step, the factor on the MC spread (around the MC mean) that brings the central
    intervals' empirical coverage closest to nominal, summed over `levels`: samples [S, N, H]."""
    mean = samples.mean(axis=0)
    grid = np.exp(np.linspace(np.log(0.25), np.log(30.0), 121))
    factors = []
    for h in range(samples.shape[2]):
        deviation = samples[:, :, h] - mean[:, h]
        best, best_gap = 1.0, np.inf
        for factor in grid:
            scaled = mean[:, h] + factor * deviation
            coverage = interval_coverage(scaled[:, :, None], truth[:, h : h + 1], levels)
            gap = sum(abs(coverage[f"{level:g}"][0] - level) for level in levels)
            if gap < best_gap - 1e-9:
                best, best_gap = float(factor), gap
        factors.append(round(best, 4))
    return factors


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


CONFORMAL_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)


def conformal_scores(
    samples: NDArray[np.floating],
    truth: NDArray[np.floating],
    levels: tuple[float, ...] = CONFORMAL_LEVELS,
) -> list[list[float]]:
    """Split-conformal quantiles of the normalised residual |y - MC mean| / MC std, per horizon
    step (rows) and central level (columns): samples [S, N, H], truth [N, H].

    The ceil((n + 1) * level)-th smallest score of n held-out windows, so that on exchangeable
    data the interval mean +- q * std covers at least `level` of new truths.
    """
    mean, std = samples.mean(axis=0), samples.std(axis=0)
    scores = np.abs(np.asarray(truth, np.float64) - mean) / np.maximum(std, 1e-12)
    ordered = np.sort(scores, axis=0)  # [N, H]
    n = len(ordered)
    rows = [min(n - 1, int(np.ceil((n + 1) * level)) - 1) for level in levels]
    return [[round(float(v), 4) for v in ordered[rows, h]] for h in range(ordered.shape[1])]
