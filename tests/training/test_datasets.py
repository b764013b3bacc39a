"""Data side of training: the synthetic generator, windowing, scaling and the CSV loader's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.datasets import (
    Scaling,
    generate_time_series,
    load_csv,
    seq2seq_targets,
    split_series,
    synthetic_windows,
    window_series,
)
from training.errors import DataError
from training.evaluation import LinearBaseline, errors, interval_coverage, naive_forecast


def test_generator_is_seeded_and_shaped() -> None:
    a = generate_time_series(4, 60, seed=1)
    assert a.shape == (4, 60, 1)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, generate_time_series(4, 60, seed=1))
    assert not np.array_equal(a, generate_time_series(4, 60, seed=2))


def test_seq2seq_targets_are_the_next_values_at_every_step() -> None:
    series = np.arange(15, dtype=np.float32)[None, :]
    y = seq2seq_targets(series, input_length=10, horizon=5)
    assert y.shape == (1, 10, 5)
    np.testing.assert_array_equal(y[0, 0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y[0, -1], [10, 11, 12, 13, 14])


def test_synthetic_windows_follow_the_book_split() -> None:
    splits = synthetic_windows(50, 10, "seq2seq", sizes=(70, 20, 10))
    assert splits.train.x.shape == (70, 50, 1)
    assert splits.train.y.shape == (70, 50, 10)
    assert len(splits.valid) == 20
    assert len(splits.test) == 10
    vec = synthetic_windows(50, 10, "seq2vec", sizes=(70, 20, 10))
    np.testing.assert_array_equal(vec.train.y, splits.train.y[:, -1, :])


def test_window_series_seq2vec_and_too_short() -> None:
    values = np.stack([np.arange(20.0), -np.arange(20.0)], axis=1).astype(np.float32)
    windows = window_series(values, 5, 3, "seq2vec")
    assert windows.x.shape == (13, 5, 2)
    np.testing.assert_array_equal(windows.y[0], [5, 6, 7])
    with pytest.raises(DataError, match="too few for a window of 18 inputs"):
        window_series(values, 18, 3, "seq2vec", name="training")


def test_scaling_is_fitted_and_inverted() -> None:
    values = np.array([[1.0, 10.0], [3.0, 10.0]])
    scaling = Scaling.fit(values)
    assert scaling.mean == [2.0, 10.0]
    assert scaling.scale == [1.0, 1.0]  # a constant column keeps scale 1, no division by zero
    np.testing.assert_allclose(scaling.apply(values), [[-1, 0], [1, 0]])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def test_csv_loads_drops_duplicates_and_sorts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "date,rides,bus\n2020-01-02,2,20\n2020-01-01,1,10\n2020-01-03,3,30\n2020-01-03,3,30\n",
    )
    series = load_csv(path, "date", "rides", ("bus",))
    np.testing.assert_array_equal(series.values, [[1, 10], [2, 20], [3, 30]])
    assert series.frequency == "D"
    assert series.notes == ["dropped 1 duplicate rows"]
    train, valid, test = split_series(series, "2020-01-01", "2020-01-02")
    assert (train, valid, test) == (slice(0, 1), slice(1, 2), slice(2, 3))


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("date,rides\n2020-01-01,1\n", {"target": "riders"}, "column\\(s\\) riders not found"),
        ("date,rides\n2020-01-01,1\n2020-01-02,lots\n2020-01-03,3\n", {}, "'rides' is not numeric"),
        ("date,rides\n2020-01-01,1\n2020-01-01,2\n2020-01-02,3\n", {}, "appears twice"),
        ("date,rides\n2020-01-01,1\n2020-01-02,2\n2020-01-05,3\n", {"frequency": "D"}, "2 missing"),
        ("date,rides\n2020-01-01,1\n2020-01-02,\n2020-01-03,3\n", {}, "empty values"),
        ("date,rides\nmonday,1\ntuesday,2\nfriday,3\n", {}, "not dates"),
        ("date,rides\n2020-01-01,1\n", {}, "only 1 rows"),
    ],
)
def test_csv_errors_name_the_problem(
    tmp_path: Path, text: str, kwargs: dict[str, str], message: str
) -> None:
    path = write(tmp_path, text)
    args = {"date_column": "date", "target": "rides", **kwargs}
    with pytest.raises(DataError, match=message):
        load_csv(path, **args)  # type: ignore[arg-type]


def test_csv_gaps_can_be_interpolated(tmp_path: Path) -> None:
    path = write(tmp_path, "date,rides\n2020-01-01,1\n2020-01-02,\n2020-01-03,3\n2020-01-05,5\n")
    series = load_csv(path, "date", "rides", frequency="D", fill_gaps="interpolate")
    np.testing.assert_allclose(series.values[:, 0], [1, 2, 3, 4, 5])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data file not found"):
        load_csv(tmp_path / "nope.csv", "date", "rides")


def test_baselines_and_metrics() -> None:
    splits = synthetic_windows(20, 5, "seq2vec", sizes=(400, 100, 1))
    naive = naive_forecast(splits.valid)
    np.testing.assert_array_equal(naive[:, 0], splits.valid.x[:, -1, 0])
    linear = LinearBaseline(splits.train).predict(splits.valid.x)
    assert errors(linear, splits.valid.y)["mse"] < errors(naive, splits.valid.y)["mse"]
    report = errors(naive, splits.valid.y)
    assert len(report["mse_per_step"]) == 5  # type: ignore[arg-type]
    weekly = naive_forecast(splits.valid, season=3)
    np.testing.assert_array_equal(weekly[:, 3], splits.valid.x[:, -3, 0])


def test_interval_coverage_counts_truth_inside_the_band() -> None:
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((2000, 500, 1))
    truth = rng.standard_normal((500, 1))
    coverage = interval_coverage(samples, truth, (0.5, 0.95))
    assert abs(coverage["0.5"][0] - 0.5) < 0.08
    assert abs(coverage["0.95"][0] - 0.95) < 0.04
