"""Data side of training: the synthetic generator, windowing, scaling and the CSV loader's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.datasets import (
    Scaling,
    detect_format,
    generate_time_series,
    load_csv,
    load_long_csv,
    load_m4_wide,
    seq2seq_targets,
    split_series,
    synthetic_windows,
    window_series,
)
from training.errors import DataError
from training.evaluation import LinearBaseline, errors, interval_coverage, naive_forecast
from training.tasks import TaskConfig, build_task


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
        (
            "date,rides\n2020-01-01,1\n2020-01-02,\n2020-01-03,3\n",
            {},
            "1 empty values \\(NA or blank\\), the first at row 3",
        ),
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


FIXTURES = Path(__file__).parent / "fixtures"


def test_csv_dayfirst_and_date_format_keep_the_series_in_order(tmp_path: Path) -> None:
    # Monthly, on the 1st: every date reads day-first (monthly) or month-first (daily in January).
    monthly = "".join(f"01/{m:02d}/1981,{m}\n" for m in range(1, 13))
    path = write(tmp_path, "Date,t\n" + monthly)
    with pytest.raises(DataError, match="read either day-first"):
        load_csv(path, "Date", "t")
    for kwargs in ({"dayfirst": True}, {"date_format": "%d/%m/%Y"}):
        series = load_csv(path, "Date", "t", **kwargs)
        assert series.frequency == "MS"
        np.testing.assert_array_equal(series.values[:, 0], np.arange(1, 13))
        assert [str(d)[:10] for d in series.dates[:2]] == ["1981-01-01", "1981-02-01"]
    january = pd.date_range("1981-01-01", "1981-02-28", freq="D")
    daily = "".join(f"{d:%d/%m/%Y},{d.month * 100 + d.day}\n" for d in january)
    path = write(tmp_path, "Date,t\n" + daily)
    series = load_csv(path, "Date", "t", dayfirst=True)
    assert series.frequency == "D"
    assert str(series.dates[31])[:10] == "1981-02-01"
    np.testing.assert_array_equal(series.values[29:33, 0], [130, 131, 201, 202])
    assert series.notes == []
    # Without the flag the one order that fits every row is used, and said (13/01 proves it).
    unflagged = load_csv(path, "Date", "t")
    np.testing.assert_array_equal(unflagged.values, series.values)
    assert unflagged.notes[0].startswith("read 'Date' day-first (%d/%m/%Y): row 14 ('13/01/1981')")


def test_csv_date_columns_categorical_and_interpolated_na(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "No,year,month,day,hour,pm2.5,TEMP,cbwd\n"
        "1,2010,1,1,0,NA,-11,NW\n"
        "2,2010,1,1,1,10,-12,cv\n"
        "3,2010,1,1,2,,-11,NW\n"
        "4,2010,1,1,3,30,-10,SE\n",
    )
    with pytest.raises(
        DataError, match=r"'pm2.5' has 2 empty values \(NA or blank\), the first at"
    ):
        load_csv(path, "date", "pm2.5", ("TEMP",), date_columns=("year", "month", "day", "hour"))
    series = load_csv(
        path,
        "date",
        "pm2.5",
        ("TEMP", "cbwd"),
        fill_gaps="interpolate",
        categorical=("cbwd",),
        date_columns=("year", "month", "day", "hour"),
    )
    assert series.frequency == "h"
    assert series.features == ["pm2.5", "TEMP", "cbwd=NW", "cbwd=SE", "cbwd=cv"]
    assert series.numeric == 2
    np.testing.assert_array_equal(series.dates, np.datetime64("2010-01-01T00", "h") + np.arange(4))
    np.testing.assert_allclose(series.values[:, 0], [10, 10, 20, 30])
    np.testing.assert_array_equal(
        series.values[:, 2:], [[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]]
    )
    assert "interpolated 2 empty values in column 'pm2.5'" in series.notes


def test_csv_epoch_seconds_and_time_zones(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,v\n" + "".join(f"{1577836800 + 3600 * i},{i}\n" for i in range(5)))
    with pytest.raises(DataError, match="--date-unit s or --date-unit ms"):
        load_csv(path, "ts", "v")
    series = load_csv(path, "ts", "v", date_unit="s")
    assert series.frequency == "h"
    assert str(series.dates[0]) == "2020-01-01T00:00:00.000000000"
    assert series.notes == ["read 'ts' as Unix epoch seconds (UTC)"]
    # Berlin across the spring DST change: offsets +01:00 then +02:00, one hour apart in UTC.
    stamps = ["2020-03-29T00:00+01:00", "2020-03-29T01:00+01:00", "2020-03-29T03:00+02:00"]
    path = write(tmp_path, "date,v\n" + "".join(f"{s},{i}\n" for i, s in enumerate(stamps)))
    series = load_csv(path, "date", "v")
    assert series.frequency == "h"
    np.testing.assert_array_equal(
        series.dates,
        np.array(["2020-03-28T23:00", "2020-03-29T00:00", "2020-03-29T01:00"], "datetime64[ns]"),
    )
    assert "to UTC" in series.notes[0]


def test_csv_non_numeric_covariate_suggests_categorical(tmp_path: Path) -> None:
    path = write(tmp_path, "date,rides,weather\n2020-01-01,1,sun\n2020-01-02,2,rain\n")
    with pytest.raises(DataError, match="for a categorical covariate pass --categorical weather"):
        load_csv(path, "date", "rides", ("weather",))
    with pytest.raises(DataError, match="the target must be numeric"):
        load_csv(path, "date", "rides", categorical=("rides",))


def test_csv_frequency_must_be_current_and_fit_the_dates(tmp_path: Path) -> None:
    path = write(tmp_path, "Month,s\n1960-01,1\n1960-02,2\n1960-03,3\n")
    assert load_csv(path, "Month", "s").frequency == "MS"
    with pytest.raises(DataError, match="pass ME \\(month end\\) or MS"):
        load_csv(path, "Month", "s", frequency="M")
    with pytest.raises(DataError, match=r"not on the 'ME' grid .* \(inferred: MS\)"):
        load_csv(path, "Month", "s", frequency="ME")
    with pytest.raises(DataError, match="--frequency 'h' is finer than the dates, which are at"):
        load_csv(path, "Month", "s", frequency="h")


def test_long_csv_reads_each_series_in_time_order() -> None:
    panel = load_long_csv(FIXTURES / "panel_long.csv")
    assert panel.ids == ["A", "B", "C"]
    assert panel.frequency == "D"
    assert [len(v) for v in panel.values] == [12, 10, 6]
    np.testing.assert_array_equal(panel.values[1][:3], [100, 101, 102])
    assert panel.starts is not None
    assert [str(s)[:10] for s in panel.starts] == ["2024-01-01", "2024-01-03", "2024-01-07"]


def test_long_csv_refuses_gaps_and_mixed_frequencies(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "unique_id,ds,y\n"
        + "".join(f"a,2024-01-{d:02d},{d}\n" for d in (1, 2, 3, 5))
        + "".join(f"b,2024-01-{d:02d},{d}\n" for d in (1, 2, 3, 4)),
    )
    with pytest.raises(DataError, match="series 'a': 1 missing dates at frequency 'D'"):
        load_long_csv(path, frequency="D")
    filled = load_long_csv(path, frequency="D", fill_gaps="interpolate")
    np.testing.assert_allclose(filled.values[0], [1, 2, 3, 4, 5])
    path = write(
        tmp_path,
        "unique_id,ds,y\n"
        + "".join(f"a,2024-01-{d:02d},{d}\n" for d in (1, 2, 3, 4))
        + "".join(f"b,2024-01-{d:02d},{d}\n" for d in (1, 8, 15, 22)),
    )
    with pytest.raises(DataError, match="series 'a' is at frequency D but series 'b' at W-MON"):
        load_long_csv(path)


def test_m4_wide_strips_trailing_empties_and_refuses_holes(tmp_path: Path) -> None:
    panel = load_m4_wide(FIXTURES / "m4_train.csv")
    assert panel.ids == ["W1", "W2", "W3", "W4"]
    assert [len(v) for v in panel.values] == [10, 12, 8, 5]
    assert panel.frequency is None
    assert panel.starts is None
    path = write(tmp_path, '"V1","V2","V3","V4"\n"W1","1",,"3"\n')
    with pytest.raises(DataError, match="series 'W1' \\(row 2\\) is empty in column 'V3' before"):
        load_m4_wide(path)
    assert detect_format(FIXTURES / "m4_train.csv") == "m4"
    assert detect_format(FIXTURES / "panel_long.csv") == "long"


def test_panel_task_windows_each_series_scaled_by_its_own_level() -> None:
    config = TaskConfig(
        data=str(FIXTURES / "m4_train.csv"),
        test_data=str(FIXTURES / "m4_test.csv"),
        input_length=4,
        horizon=2,
        kind="seq2vec",
        frequency="W",
    )
    task = build_task(config)
    assert task.panel_ids == ["W1", "W2", "W3"]  # W4 (5 points) is under 4 + 2 x 2
    assert any("dropped 1 of 4 series" in n and "W4" in n for n in task.notes)
    assert task.frequency == "W"
    assert task.scaling.method == "none"
    assert task.series_scales is not None
    np.testing.assert_allclose(task.series_scales, [4.5, 11.0, 7.5])  # mean of all but the last 2
    # Training windows lie wholly before the last 2 points: 8 - 6 + 1 = 3 for W1, 5 for W2, 1 W3.
    assert task.train.x.shape == (9, 4, 1)
    assert task.train.y.shape == (9, 2)
    np.testing.assert_allclose(task.train.x[0, :, 0] * 4.5, [1, 2, 3, 4])
    np.testing.assert_allclose(task.train.y[2] * 4.5, [7, 8])
    assert len(task.valid) == 3
    np.testing.assert_allclose(task.valid.x[0, :, 0] * 4.5, [5, 6, 7, 8])
    np.testing.assert_allclose(task.valid.y[0] * 4.5, [9, 10])
    assert task.drift is not None
    np.testing.assert_allclose(task.drift.x[1, :, 0] * 11.0, [18, 20, 22, 24])
    np.testing.assert_allclose(task.drift.y[1] * 11.0, [25, 26])
    sample = task.sample_inputs(5, 9, np.random.default_rng(0))
    assert sample.shape == (5, 9, 1)  # only W2 (12 points) and W1 (10) are that long
    capped = build_task(TaskConfig(**{**config.to_json(), "max_windows_per_series": 2}))
    assert len(capped.train) == 2 + 2 + 1
    np.testing.assert_allclose(capped.train.y[1] * 4.5, [7, 8])  # the most recent ones


def test_long_panel_task_tests_on_the_following_rows() -> None:
    config = TaskConfig(
        data=str(FIXTURES / "panel_long.csv"),
        test_data=str(FIXTURES / "panel_long_test.csv"),
        input_length=2,
        horizon=2,
    )
    task = build_task(config)
    assert task.features == ["y"]
    assert task.panel_ids == ["A", "B", "C"]
    assert task.frequency == "D"
    assert task.train.y.shape[1:] == (2, 2)  # seq2seq
    assert task.drift is not None
    assert task.series_scales is not None
    np.testing.assert_allclose(task.drift.y[2, -1] * task.series_scales[2], [7, 8])
    rebuilt = build_task(TaskConfig(**config.to_json()))  # export --run rebuilds from run.json
    np.testing.assert_array_equal(rebuilt.train.x, task.train.x)
    with pytest.raises(DataError, match="--covariates apply to one-series CSVs"):
        build_task(TaskConfig(**{**config.to_json(), "covariates": ["x"]}))
    wrong = TaskConfig(**{**config.to_json(), "test_data": str(FIXTURES / "panel_long.csv")})
    with pytest.raises(DataError, match="series 'A' starts at 2024-01-01, not right after"):
        build_task(wrong)
