"""`python -m training backtest`: rolling origins through a real `python -m service` subprocess on
the shipped lstm (input_length 50, horizon 10, univariate, no scaling), against the baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.backtest import BacktestConfig, local_service, plan_origins, run
from training.cli import main
from training.errors import TrainingError

REPO = Path(__file__).resolve().parents[2]
LSTM = REPO / "models" / "lstm"


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    """200 days of the book's kind of series (two sines and noise), the scale lstm was trained on."""
    rng = np.random.default_rng(0)
    t = np.arange(200)
    values = (
        0.5 * np.sin(t * 15 / 59) + 0.2 * np.sin(t * 30 / 59 + 1) + 0.1 * (rng.random(200) - 0.5)
    )
    dates = np.arange(np.datetime64("2021-01-01"), np.datetime64("2021-01-01") + 200)
    path = tmp_path / "series.csv"
    path.write_text(
        "day,value\n" + "".join(f"{d},{v:.6f}\n" for d, v in zip(dates, values, strict=True))
    )
    return path


def config(csv: Path, tmp_path: Path, **overrides: object) -> BacktestConfig:
    settings: dict[str, object] = {
        "model": LSTM,
        "data": csv,
        "date_column": "day",
        "frequency": "D",
        "start": "2021-03-01",
        "end": "2021-05-31",
        "stride": 15,
        "samples": 50,
        "out": tmp_path / "report.md",
    }
    settings.update(overrides)
    return BacktestConfig(**settings)  # type: ignore[arg-type]


def test_plan_origins() -> None:
    dates = np.arange(np.datetime64("2021-01-01"), np.datetime64("2021-01-01") + 100)
    origins, notes = plan_origins(dates, 50, 10, 7, "2021-01-10", "2021-04-30", season=7)
    assert origins == [50, 57, 64, 71, 78, 85]  # history before 2021-02-20; horizon in the data
    assert len(notes) == 2
    origins, notes = plan_origins(dates, 20, 5, 5, "2021-02-01", "2021-02-11", season=7)
    assert origins == [31, 36, 41]
    assert notes == []
    with pytest.raises(TrainingError, match="no date of the data"):
        plan_origins(dates, 20, 5, 5, "2022-01-01", "2022-02-01")
    with pytest.raises(TrainingError, match="no forecast origin"):
        plan_origins(dates, 20, 5, 5, "2021-01-02", "2021-01-10")
    with pytest.raises(TrainingError, match="not a date"):
        plan_origins(dates, 20, 5, 5, "yesterday-ish", None)


def test_backtest_through_the_service(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(config(csv, tmp_path))
    # Origins 2021-03-01 (index 59) to 2021-05-31 every 15 days: 59, 74, ..., 149.
    assert result.dates == [
        "2021-03-01",
        "2021-03-16",
        "2021-03-31",
        "2021-04-15",
        "2021-04-30",
        "2021-05-15",
        "2021-05-30",
    ]
    assert list(result.forecasts) == ["lstm", "naive", "seasonal_naive_7", "AutoETS"]
    assert result.truth.shape == (7, 10)
    for name in result.forecasts:
        assert any(line.startswith(name) for line in result.table.splitlines())
    assert "* best baseline" in result.table
    assert set(result.coverage) == {"lstm", "AutoETS"}
    for levels in result.coverage.values():
        assert set(levels) == {"80", "95"}
        assert all(0.0 <= value <= 1.0 for value in levels.values())
    # The served model knows these sines; the naive forecast does not.
    assert result.mae["lstm"][0] < result.mae["naive"][0]
    assert result.gate.passed
    printed = capsys.readouterr().out
    assert "lstm on 7 origins" in printed
    assert "interval coverage" in printed
    report = (tmp_path / "report.md").read_text()
    assert "python -m training backtest --model" in report
    assert "7 origins every 15 steps" in report
    assert result.table in report
    assert "step-1 MAE: lstm (served)" in report
    assert "| lstm |" in report
    assert "| AutoETS |" in report


def test_cli_backtest_against_a_running_service(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "quality" / "lstm.md"
    with local_service(REPO / "models", "lstm", 60.0) as url:
        code = main(
            [
                "backtest",
                *("--model", str(LSTM), "--data", str(csv), "--date-column", "day"),
                *("--frequency", "D", "--start", "2021-04-01", "--end", "2021-04-30"),
                *("--url", url, "--samples", "0", "--season", "14", "--out", str(out)),
            ]
        )
    assert code == 0
    printed = capsys.readouterr().out
    assert "seasonal_naive_14" in printed  # --season; the stride defaults to the horizon (10)
    assert "lstm on 3 origins" in printed
    report = out.read_text()
    assert "--url http" in report
    assert "--stride 10" in report
    assert "no model intervals" in report


def cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["backtest", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    return err


def test_bad_input_fails_with_one_message(
    csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--data", str(csv), "--date-column", "day", "--frequency", "D")
    period = ("--start", "2021-03-01", "--end", "2021-03-31")
    err = cli_error(capsys, "--model", str(tmp_path), *common, *period)
    assert "forecaster.json not found" in err
    err = cli_error(capsys, "--model", str(LSTM), *common, "--start", "2030-01-01", "--end", "2030")
    assert "no date of the data (2021-01-01 to 2021-07-19)" in err
    err = cli_error(capsys, "--model", str(LSTM), *common, "--target", "rides", *period)
    assert "rides" in err


def test_a_service_that_cannot_start_is_reported_with_its_stderr(
    csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORECAST_INTRA_OP_THREADS", "0")  # refused by the service's settings
    with pytest.raises(TrainingError, match=r"exited with status 1.*intra_op_threads"):
        run(config(csv, tmp_path))


def test_a_model_the_service_cannot_load_is_reported(csv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models" / "lstm"
    (folder / "1").mkdir(parents=True)
    (folder / "forecaster.json").write_text((LSTM / "forecaster.json").read_text())
    (folder / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(TrainingError, match="did not load model 'lstm'"):
        run(config(csv, tmp_path, model=folder))
