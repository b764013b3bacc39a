"""The training CLI: bad input stops with one clear message (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training import cli
from training.cli import main
from training.errors import TrainingError
from training.tasks import Task, TaskConfig, build_task

# Sixty daily rows, 2020-01-01..2020-02-29, rides = day number.
DAILY = "date,rides\n" + "".join(
    f"2020-{1 + (d - 1) // 31:02d}-{(d - 1) % 31 + 1:02d},{d}\n" for d in range(1, 61)
)
FIXTURES = Path(__file__).parent / "fixtures"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("csv", "extra", "message"),
    [
        (None, [], "data file not found"),
        ("date,rides\n2020-01-01,1\n2020-01-02,x\n2020-01-03,2\n", [], "'rides' is not numeric"),
        (
            "date,rides\n" + "".join(f"2020-01-{d:02d},{d}\n" for d in range(1, 20)),
            [],
            "too few for a window of 50 inputs",
        ),
        (
            "date,rides\n2020-01-01,1\n2020-01-02,\n2020-01-03,2\n2020-01-04,NA\n",
            [],
            "column 'rides' has 2 empty values (NA or blank), the first at row 3; fill them or "
            "pass --fill-gaps interpolate",
        ),
        ("date,rides\n2020-01-01,1\n2020-01-02,2\n", ["--covariates", "bus"], "bus not found"),
        (
            "date,rides\n" + "".join(f"01/{m:02d}/2020,{m}\n" for m in range(1, 13)),
            [],
            "dates such as '01/02/2020' (rows 3, 4, 5) read either day-first (%d/%m/%Y) or "
            "month-first (%m/%d/%Y); pass --dayfirst if the day comes first, or --date-format "
            "'%m/%d/%Y' if the month does",
        ),
        (
            "date,rides\n12/01/2020,1\n13/01/2020,2\n01/13/2020,3\n",
            [],
            "column 'date' is inconsistent: row 3 ('13/01/2020') read only day-first (%d/%m/%Y), "
            "row 4 ('01/13/2020') only month-first (%m/%d/%Y)",
        ),
        (
            "date,rides\n01/01/2020,1\n01/02/2020,2\n01/13/2020,3\n",
            ["--dayfirst"],
            "inconsistent with --dayfirst: row 4 ('01/13/2020') are not day-first dates",
        ),
        (
            "date,rides\n1577836800,1\n1577923200,2\n1578009600,3\n",
            [],
            "holds numbers, not dates (row 2: '1577836800'); for Unix epoch times pass "
            "--date-unit s or --date-unit ms",
        ),
        (
            "date,rides\n2020-01-01T00:00+01:00,1\n2020-01-01T01:00,2\n2020-01-01T02:00,3\n",
            [],
            "mixes dates with a UTC offset (row 2: '2020-01-01T00:00+01:00') and without (row 3",
        ),
        (DAILY, ["--frequency", "M"], "--frequency 'M' is an old pandas alias"),
        (DAILY, ["--frequency", "H"], "pass h"),
        (DAILY, ["--frequency", "T"], "pass min"),
        (DAILY, ["--frequency", "fortnightly"], "--frequency 'fortnightly' is not a pandas"),
        (DAILY, ["--frequency", "W"], "is not on the 'W' grid"),
        (
            DAILY,
            ["--train-end", "2020-02-10", "--valid-end", "2020-01-20"],
            "split dates out of order: --train-end 2020-02-10 must come before --valid-end "
            "2020-01-20",
        ),
        (
            DAILY,
            ["--train-start", "2020-01-15", "--train-end", "2020-01-10"],
            "--train-start 2020-01-15 must come before --train-end 2020-01-10",
        ),
        (
            DAILY,
            ["--train-end", "2020-01-20", "--valid-end", "2020-02-10", "--test-end", "2021-01-01"],
            "--test-end 2021-01-01 is after the last date of the data (2020-01-01..2020-02-29)",
        ),
        (
            DAILY,
            ["--train-end", "20.01.2020"],
            "--train-end '20.01.2020' is not a date: write it as ISO 8601",
        ),
        (DAILY, ["--drift-eval", "2020-02-01"], "--drift-eval '2020-02-01' is not START:END"),
        (
            "date,rides,weather\n2020-01-01,1,sun\n2020-01-02,2,rain\n2020-01-03,3,sun\n",
            ["--covariates", "weather"],
            "column 'weather' is not numeric (row 2: 'sun'); for a categorical covariate pass "
            "--categorical weather",
        ),
        (
            DAILY.replace("2020-01-05,5", "2020-01-05,0"),
            ["--scaling", "window", "--kind", "seq2vec"],
            "--scaling window divides each window by its mean, but column 'rides' has values <= 0 "
            "in the training data (minimum 0)",
        ),
        (DAILY, ["--date-unit", "s"], "--date-unit s reads Unix epoch numbers, but row 2"),
        (DAILY, ["--format", "m4"], "all 60 series are shorter than input_length + 2 x horizon"),
        (DAILY, ["--test-data", "x.csv"], "--test-data gives the test continuation of a panel"),
    ],
)
def test_bad_data_fails_with_one_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    csv: str | None,
    extra: list[str],
    message: str,
) -> None:
    path = tmp_path / "data.csv"
    if csv is not None:
        path.write_text(csv)
    code, err = run(
        capsys, "train", "--model", "lstm", "--data", str(path), "--target", "rides", *extra
    )
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def built(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> Task:
    """The task `train` builds from these arguments; training itself (TensorFlow) is not reached."""
    tasks: list[Task] = []

    def build_and_stop(config: TaskConfig) -> Task:
        tasks.append(build_task(config))
        raise TrainingError("stop before training")

    monkeypatch.setattr(cli, "build_task", build_and_stop)
    code, err = run(capsys, "train", "--model", "lstm", *argv)
    assert (code, err) == (2, "error: stop before training\n")
    return tasks[0]


def test_train_reads_dayfirst_dates_and_split_dates_in_the_file_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "temps.csv"
    rows = pd.date_range("1981-01-01", periods=90, freq="D")
    path.write_text("Date,Temp\n" + "".join(f"{d:%d/%m/%Y},{i}\n" for i, d in enumerate(rows)))
    task = built(
        monkeypatch,
        capsys,
        "--data",
        str(path),
        "--date-column",
        "Date",
        "--target",
        "Temp",
        "--dayfirst",
        "--input-length",
        "7",
        "--horizon",
        "2",
        "--train-end",
        "28/02/1981",
        "--valid-end",
        "1981/03/15",
        "--test-end",
        "31/03/1981",
    )
    assert task.config.dayfirst
    assert task.frequency == "D"
    assert "train 1981-01-01..1981-02-28, validation until 1981-03-15" in task.description
    assert task.scaled_series is not None
    raw = np.asarray(task.scaled_series[:, 0]) * task.scaling.scale[0] + task.scaling.mean[0]
    np.testing.assert_allclose(raw, np.arange(90), atol=1e-4)  # in order: no month-first rows


def test_train_reads_date_columns_categorical_and_na_with_interpolation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pollution.csv"
    hours = pd.date_range("2010-01-01", periods=80, freq="h")
    winds = ["NW", "cv", "SE"]
    path.write_text(
        "No,year,month,day,hour,pm2.5,TEMP,cbwd\n"
        + "".join(
            f"{i + 1},{h.year},{h.month},{h.day},{h.hour},{'NA' if i in (0, 5) else i},"
            f"{-i},{winds[i % 3]}\n"
            for i, h in enumerate(hours)
        )
    )
    task = built(
        monkeypatch,
        capsys,
        "--data",
        str(path),
        "--date-columns",
        "year",
        "month",
        "day",
        "hour",
        "--target",
        "pm2.5",
        "--covariates",
        "TEMP",
        "--categorical",
        "cbwd",
        "--fill-gaps",
        "interpolate",
        "--input-length",
        "8",
        "--horizon",
        "2",
    )
    assert task.features == ["pm2.5", "TEMP", "cbwd=NW", "cbwd=SE", "cbwd=cv"]
    assert task.numeric_features == 2
    assert task.frequency == "h"
    assert task.scaling.mean[2:] == [0.0, 0.0, 0.0]  # one-hot columns are not scaled
    assert task.scaling.scale[2:] == [1.0, 1.0, 1.0]
    assert task.scaled_series is not None
    np.testing.assert_array_equal(task.scaled_series[:3, 2:], [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    pm = task.scaled_series[:, 0] * task.scaling.scale[0] + task.scaling.mean[0]
    np.testing.assert_allclose(pm[:7], [1, 1, 2, 3, 4, 5, 6], atol=1e-4)  # NA at rows 2 and 7
    assert "interpolated 2 empty values in column 'pm2.5'" in task.notes


def test_train_reads_epoch_seconds_and_converts_zones_to_utc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "epoch.csv"
    path.write_text("ts,v\n" + "".join(f"{1577836800 + 86400 * i},{i}\n" for i in range(40)))
    task = built(
        monkeypatch, capsys, "--data", str(path), "--date-column", "ts", "--target", "v",
        "--date-unit", "s", "--input-length", "5", "--horizon", "2", "--train-end", "2020-01-25",
    )  # fmt: skip
    assert task.frequency == "D"
    assert "train 2020-01-01..2020-01-25" in task.description
    assert task.notes[0] == "read 'ts' as Unix epoch seconds (UTC)"
    path = tmp_path / "berlin.csv"
    stamps = pd.date_range("2020-03-28", periods=48, freq="h", tz="Europe/Berlin")
    path.write_text("date,v\n" + "".join(f"{t.isoformat()},{i}\n" for i, t in enumerate(stamps)))
    task = built(
        monkeypatch, capsys, "--data", str(path), "--target", "v", "--input-length", "5",
        "--horizon", "2", "--train-end", "2020-03-28T12:00+01:00",
    )  # fmt: skip
    assert task.frequency == "h"  # 23:00 UTC on the 27th, hourly through the DST change
    assert "train 2020-03-27..2020-03-28" in task.description
    assert task.notes[0] == (
        "converted the time-zone-aware dates in 'date' (UTC offsets +01:00, +02:00) to UTC and "
        "dropped the zone"
    )


def test_train_reads_an_m4_panel_with_its_test_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    task = built(
        monkeypatch, capsys, "--data", str(FIXTURES / "m4_train.csv"), "--test-data",
        str(FIXTURES / "m4_test.csv"), "--frequency", "W", "--input-length", "4", "--horizon",
        "2", "--kind", "seq2vec", "--max-windows-per-series", "2",
    )  # fmt: skip
    assert task.config.data_format == "auto"
    assert task.config.max_windows_per_series == 2
    assert task.panel_ids == ["W1", "W2", "W3"]
    assert (len(task.train), len(task.valid)) == (5, 3)
    assert task.test is task.valid  # calibration and the gate: never the --test-data
    assert task.drift is not None
    assert len(task.drift) == 3
    assert task.frequency == "W"


def test_export_needs_a_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "export", "--run", str(tmp_path), "--out", str(tmp_path / "m"))
    assert code == 2
    assert "run.json not found" in err


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "lstm", "--horizon", "0"])
    assert exc.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err
