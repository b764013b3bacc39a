"""The calibration map: how served MC paths follow from raw ones and forecaster.json."""

import numpy as np
import pytest

from forecaster_format import conformal_map, signed_scores, spread_map


def test_conformal_known_values() -> None:
    # One step, paths [1, -1, 1, -1]: mean 0, std 1; ranks (stable) 2, 0, 3, 1, so
    # u = 0.25, -0.75, 0.75, -0.25 and q(0.25) = 0.5 (halfway to level 0.5), q(0.75) = 1.0
    # (the last score beyond the last level).
    paths = np.array([[1.0], [-1.0], [1.0], [-1.0]])
    mapped = conformal_map(paths, [0.5], [[1.0]])
    np.testing.assert_array_equal(mapped, [[0.5], [-1.0], [1.0], [-0.5]])
    assert mapped.dtype == np.float64


def test_conformal_steps_beyond_the_scores_reuse_the_last_row() -> None:
    paths = np.array([[1.0, 3.0, 5.0], [-1.0, 1.0, 3.0]])  # u = +-0.5: q is the score at 0.5
    mapped = conformal_map(paths, [0.5], [[2.0], [3.0]])
    np.testing.assert_array_equal(mapped, [[2.0, 5.0, 7.0], [-2.0, -1.0, 1.0]])


def test_the_table_is_sign_u_times_q() -> None:
    table = signed_scores([0.5, 0.9], [[1.0, 2.0]], 4, 2)
    np.testing.assert_allclose(table, [[-1.625, -1.625], [-0.5, -0.5], [0.5, 0.5], [1.625, 1.625]])


def test_spread_known_values() -> None:
    paths = np.array([[0.0, 1.0, 1.0], [2.0, 3.0, 5.0]])  # mean [1, 2, 3]
    np.testing.assert_array_equal(spread_map(paths, [3.0, 0.5]), [[-2, 1.5, 2], [4, 2.5, 4]])


def test_spread_keeps_float32_paths_centred_in_float32() -> None:
    """The exporter's samples are float32: (paths - mean) in float32, then float64 factors."""
    paths = np.random.default_rng(0).standard_normal((50, 4, 3)).astype(np.float32)
    factors = [1.5, 2.0, 2.5]
    mean = paths.mean(axis=0)
    np.testing.assert_array_equal(
        spread_map(paths, factors), mean + np.asarray(factors) * (paths - mean)
    )


def _per_step(paths: np.ndarray, levels: list[float], scores: list[list[float]]) -> np.ndarray:
    """The conformal map as it was written first: ranks, then one `np.interp` per step."""
    mean, std = paths.mean(axis=0), paths.std(axis=0)
    ranks = np.argsort(np.argsort(paths, axis=0, kind="stable"), axis=0, kind="stable")
    u = 2.0 * (ranks + 0.5) / len(paths) - 1.0
    grid = np.concatenate([[0.0], levels])
    mapped = np.empty_like(paths)
    for step in range(paths.shape[-1]):
        row = np.concatenate([[0.0], scores[min(step, len(scores) - 1)]])
        q = np.interp(np.abs(u[..., step]), grid, row)
        mapped[..., step] = mean[..., step] + np.sign(u[..., step]) * q * std[..., step]
    return mapped


@pytest.mark.parametrize("count", [1, 2, 5, 100, 101])
def test_conformal_is_the_per_step_map_bit_for_bit(count: int) -> None:
    levels, scores = [0.5, 0.8, 0.9, 0.95], [[0.6, 1.2, 1.6, 2.0], [0.7, 1.3, 1.7, 2.2]]
    rng = np.random.default_rng(count)
    for paths in (
        rng.standard_normal((count, 10)),
        np.round(rng.standard_normal((count, 3))),  # ties
        rng.standard_normal((count, 6, 4)),  # [S, N, H]: N windows at once, as the exporter maps
    ):
        expected = _per_step(paths, levels, scores)
        np.testing.assert_array_equal(conformal_map(paths, levels, scores), expected)
        table = signed_scores(levels, scores, count, paths.shape[-1])
        np.testing.assert_array_equal(conformal_map(paths, levels, scores, table), expected)


def test_windows_at_once_or_one_by_one() -> None:
    """The exporter maps [S, N, H] for its coverage; the service maps each series' [S, H]."""
    rng = np.random.default_rng(1)
    samples = rng.standard_normal((50, 3, 5)) * [1.0, 2.0, 3.0, 4.0, 5.0] + 10
    levels, scores = [0.5, 0.9], [[0.7, 1.8], [1.0, 2.5], [1.2, 3.0]]
    together = conformal_map(samples, levels, scores)
    for series in range(3):
        alone = conformal_map(samples[:, series, :], levels, scores)
        np.testing.assert_allclose(alone, together[:, series, :], rtol=1e-15)
    spread = spread_map(samples, [2.0, 3.0])
    for series in range(3):
        np.testing.assert_allclose(spread_map(samples[:, series], [2.0, 3.0]), spread[:, series])


def test_conformal_intervals_are_mean_plus_score_times_std() -> None:
    """With many paths, the mapped central interval at a stored level is mean +- score * std."""
    paths = np.random.default_rng(3).standard_normal((10_001, 2))
    mapped = conformal_map(paths, [0.5, 0.8], [[0.6, 1.5]])
    mean, std = paths.mean(axis=0), paths.std(axis=0)
    for level, score in ((0.5, 0.6), (0.8, 1.5)):
        hi = np.quantile(mapped, (1 + level) / 2, axis=0)
        np.testing.assert_allclose(hi - mean, score * std, rtol=2e-3)
