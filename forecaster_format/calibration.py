"""The calibration map: how a model's `calibration` turns raw MC paths into served ones.

Paths are [S, ..., H]: S sample paths on the first axis, horizon steps on the last (the service
maps one series' [S, H], the exporter N windows' [S, N, H] at once; each window and step is mapped
on its own). Steps beyond the calibration's lists reuse the last entry.

- `spread_factor`: paths = mean + factor * (paths - mean), per step.
- `conformal`: the path of rank r among the S paths of its window and step becomes
  mean + sign(u) q(|u|) std, with u = 2 (r + 0.5) / S - 1 its signed central level and q the step's
  scores interpolated over the levels (0 at level 0, the last score beyond the last level), so the
  central interval at level L is mean +- q(L) * std.

Fitting the scores and factors is training's (training.evaluation); applying them is the format's.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Array64 = NDArray[np.float64]


def spread_map(paths: NDArray[np.floating], factors: Sequence[float]) -> Array64:
    """`spread_factor`: each step's spread around the MC mean times its (float64) factor, in
    float64. float32 paths are centred in float32 first, as the exporter always measured them."""
    steps = paths.shape[-1]
    per_step = np.asarray(factors, dtype=np.float64)[np.minimum(np.arange(steps), len(factors) - 1)]
    mean = paths.mean(axis=0)
    return np.asarray(mean + per_step * (paths - mean), dtype=np.float64)  # no copy: float64


def signed_scores(
    levels: Sequence[float], scores: Sequence[Sequence[float]], count: int, steps: int
) -> Array64:
    """sign(u) q(|u|) [count, steps] for the ranks r of `count` paths, u = 2 (r + 0.5) / count - 1:
    what `conformal_map` adds to the mean, in units of std, at each rank and step."""
    u = 2.0 * (np.arange(count) + 0.5) / count - 1.0
    grid = np.concatenate([[0.0], levels])
    columns = []
    for step in range(steps):
        row = np.concatenate([[0.0], scores[min(step, len(scores) - 1)]])
        columns.append(np.sign(u) * np.interp(np.abs(u), grid, row))
    table: Array64 = np.stack(columns, axis=1)
    return table


def conformal_map(
    paths: NDArray[np.floating],
    levels: Sequence[float],
    scores: Sequence[Sequence[float]],
    table: Array64 | None = None,
) -> Array64:
    """`conformal`: map paths [S, ..., H] by rank to mean + sign(u) q(|u|) std, in float64.

    `table` is `signed_scores(levels, scores, S, H)` when the caller keeps one (the service caches
    them per shape); ties keep the paths' order (a stable sort).
    """
    values = np.asarray(paths, dtype=np.float64)
    count, steps = values.shape[0], values.shape[-1]
    if table is None:
        table = signed_scores(levels, scores, count, steps)
    mean, std = values.mean(axis=0), values.std(axis=0)
    order = np.argsort(values, axis=0, kind="stable")  # [rank, ..., step] -> path
    by_rank = table.reshape(count, *[1] * (values.ndim - 2), steps)
    mapped: Array64 = np.empty_like(values)
    np.put_along_axis(mapped, order, mean + by_rank * std, 0)
    return mapped
