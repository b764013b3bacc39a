"""Statistical baselines and M4 metrics (training/baselines.py) on synthetic series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training import baselines as b


def trend_season(n: int, season: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    out: np.ndarray = 200 + 0.5 * t + 20 * np.sin(2 * np.pi * t / season) + rng.normal(0, 1, n)
    return out


def test_seasonal_naive_is_exact_on_a_periodic_series() -> None:
    pattern = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    series = np.tile(pattern, 20)
    origins = [49, 63, 70, 100]
    history = np.stack([series[o - 21 : o] for o in origins])
    truth = np.stack([series[o : o + 10] for o in origins])
    np.testing.assert_array_equal(b.seasonal_naive(history, 10, 7), truth)
    last = b.seasonal_naive(history, 3, 1)
    np.testing.assert_array_equal(last, np.repeat(history[:, -1:], 3, axis=1))


def test_seasonal_naive_needs_a_season_of_history() -> None:
    with pytest.raises(ValueError, match="season 7"):
        b.seasonal_naive(np.zeros((2, 5)), 3, 7)


def test_ets_beats_naive_on_trend_and_season() -> None:
    y = trend_season(500)
    origins = list(range(300, 490, 10))
    result = b.ets_forecasts(y, origins, 10, season=12, levels=(80, 95))
    truth = np.stack([y[o : o + 10] for o in origins])
    history = np.stack([y[o - 12 : o] for o in origins])
    ets_mae = b.mae_per_step(result.mean, truth).mean()
    assert ets_mae < 0.5 * b.mae_per_step(b.seasonal_naive(history, 10, 1), truth).mean()
    assert ets_mae < b.mae_per_step(b.seasonal_naive(history, 10, 12), truth).mean()
    assert "season 12" in result.note
    assert "fitted on 300 points" in result.note
    assert set(result.intervals) == {"lo-80", "hi-80", "lo-95", "hi-95"}
    assert (result.intervals["lo-95"] <= result.intervals["lo-80"]).all()
    assert (result.intervals["hi-80"] <= result.intervals["hi-95"]).all()
    inside = (truth >= result.intervals["lo-95"]) & (truth <= result.intervals["hi-95"])
    assert inside.mean() > 0.7


def test_ets_falls_back_to_non_seasonal_and_says_so() -> None:
    y = trend_season(400, season=52)
    long_season = b.ets_forecasts(y, [300, 310], 5, season=52)
    assert "seasons up to 24, not 52" in long_season.note
    assert long_season.mean.shape == (2, 5)
    short = b.ets_forecasts(y, [20, 30], 5, season=12)
    assert "too few for season 12" in short.note
    tiny = b.ets_forecasts(y, [5, 6], 3, season=1)
    assert "naive" in tiny.note
    np.testing.assert_array_equal(tiny.mean[:, 0], y[[4, 5]])


def test_ets_window_forecasts_fit_each_window_alone() -> None:
    windows = [trend_season(n, seed=n)[: n - 8] for n in (60, 150, 300)]
    truths = [trend_season(n, seed=n)[n - 8 :] for n in (60, 150, 300)]
    forecast, notes = b.ets_window_forecasts(windows, 8, season=12)
    assert forecast.shape == (3, 8)
    naive = np.stack([np.full(8, w[-1]) for w in windows])
    truth = np.stack(truths)
    assert b.mae_per_step(forecast, truth).mean() < b.mae_per_step(naive, truth).mean()
    # NaN-padded 2-D windows: the padding is ignored; a too-short window falls back, with a note.
    padded = np.full((2, 40), np.nan)
    padded[0] = trend_season(40)
    padded[1, -5:] = [1.0, 2.0, 3.0, 4.0, 5.0]
    forecast, notes = b.ets_window_forecasts(padded, 4, season=12)
    np.testing.assert_array_equal(forecast[1], np.full(4, 5.0))
    assert any("too short" in note for note in notes)


def test_mase_is_one_for_the_in_sample_naive_forecast() -> None:
    # By construction: the one-step naive forecasts of the in-sample data have the MAE that scales.
    walk = np.cumsum(np.random.default_rng(3).normal(size=300))
    for season in (1, 7):
        forecast, truth = walk[:-season, None], walk[season:, None]
        scale = b.mase_scale(walk, season)
        assert b.mase(forecast, truth, scale) == pytest.approx(1.0)


def test_mase_by_hand() -> None:
    assert b.mase_scale(np.array([1.0, 3.0, 2.0, 5.0]), 1)[0] == pytest.approx(2.0)
    assert b.mase_scale(np.array([1.0, 3.0, 2.0, 5.0]), 2)[0] == pytest.approx(1.5)
    forecast = np.array([[1.0, 2.0], [3.0, 4.0]])
    truth = np.array([[2.0, 2.0], [3.0, 6.0]])
    np.testing.assert_allclose(b.mase_per_step(forecast, truth, [1.0, 2.0]), [0.5, 0.5])
    np.testing.assert_allclose(b.mae_per_step(forecast, truth), [0.5, 1.0])
    assert b.mase(forecast, truth, 0.5) == pytest.approx(1.5)


def test_smape_and_owa_by_hand() -> None:
    # 200 |y - f| / (|y| + |f|): 200/3 and 0 -> mean 33.33 %.
    assert b.smape([1.0, 2.0], [2.0, 2.0]) == pytest.approx(100 / 3)
    assert b.smape([[-1.0], [0.0]], [[1.0], [0.0]]) == pytest.approx(100.0)  # 200 and 0 (0/0)
    assert b.smape([110.0, 90.0], [100.0, 100.0]) == pytest.approx(
        (200 * 10 / 210 + 200 * 10 / 190) / 2
    )
    assert b.owa(10.0, 0.8, 20.0, 1.0) == pytest.approx(0.65)
    assert b.owa(13.5, 1.7, 13.5, 1.7) == pytest.approx(1.0)


def test_naive2_reseasonalises_a_seasonal_series_and_is_naive1_otherwise() -> None:
    indices = np.array([0.8, 1.2, 1.0, 0.6, 1.4])
    periodic = 50 * np.tile(indices, 12)
    assert b.seasonality_test(periodic, 5)
    np.testing.assert_allclose(b.seasonal_indices(periodic, 5), indices)
    np.testing.assert_allclose(b.naive2(periodic[:-7], 7, 5)[0], periodic[-7:])
    noise = np.random.default_rng(0).normal(10, 1, 60)
    assert not b.seasonality_test(noise, 5)
    np.testing.assert_array_equal(b.naive2(noise, 4, 5), np.full((1, 4), noise[-1]))
    # Weekly data in M4 has frequency 1: no test, Naive2 is Naive1; under 3 seasons: no test.
    assert not b.seasonality_test(periodic, 1)
    assert not b.seasonality_test(periodic[:14], 5)
    # Even seasons use the 2 x m centred moving average.
    even = 10 * np.tile([1.5, 0.5, 1.0, 1.0], 10)
    np.testing.assert_allclose(b.naive2(even, 4, 4)[0], [15.0, 5.0, 10.0, 10.0])


def test_comparison_table_rows_marks_and_units() -> None:
    rows = {
        "model": [10.0, 12.0, 14.0],
        "naive": [11.0, 15.0, 19.0],
        "seasonal_naive_7": [9.0, 13.0, 14.5],
    }
    table = b.comparison_table(rows, scale=20.0, unit_name="riders")
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["MAE", "(riders)", "t+1", "t+2", "t+3"]
    assert lines[1].startswith("model ")
    assert lines[3].startswith("seasonal_naive_7 *")  # overall 12.17 < 15
    assert "*" not in lines[1] + lines[2]
    assert lines[-1] == "* best baseline (lowest overall MAE): seasonal_naive_7"
    assert lines[1].split()[-2:] == ["12.00", "0.600"]  # 3 digits of 9.00; MASE 12 / 20


def test_comparison_table_collapses_long_horizons_and_separates_thousands() -> None:
    rows = {"m": [12345.6] * 14 + [23456.7] * 14, "naive": [100_000.0] * 28}
    table = b.comparison_table(rows, scale=math.nan, model="m")
    head = table.splitlines()[0].split()
    assert head == ["MAE", "t+1", "t+14", "t+28", "overall", "MASE"]
    assert "12,346" in table
    assert "23,457" in table
    assert "100,000" in table
    assert "n/a" in table  # no MASE without a scale


def test_gate() -> None:
    passed = b.gate([1.0, 2.0], {"naive": [2.0, 2.0], "ets": [1.5, 1.6]})
    assert passed.passed
    assert passed.best_baseline == "ets"
    assert passed.ratio == pytest.approx(1.5 / 1.55)
    failed = b.gate([2.0, 3.0], {"naive": [2.0, 2.0], "ets": [1.5, 1.6]})
    assert not failed.passed
    assert failed.best_overall == pytest.approx(1.55)
    assert failed.model_overall == 2.5
    assert "worse than the best baseline ets" in failed.message
    assert b.gate([1.0], {"naive": [1.0]}).passed  # a tie passes


@pytest.mark.parametrize(
    ("frequency", "season"),
    [("h", 24), ("D", 7), ("W-SUN", 52), ("MS", 12), ("ME", 12), ("QS-OCT", 4), ("2h", 1)],
)
def test_season_for_frequency(frequency: str, season: int) -> None:
    assert b.season_for_frequency(frequency) == season
    assert b.season_for_frequency(None) == 1
