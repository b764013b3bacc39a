"""`python -m training backtest`: rolling origins through a real `python -m service` subprocess on
the shipped lstm (input_length 50, horizon 10, univariate, no scaling), against the baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.backtest import (
    BacktestConfig,
    frequency_kind,
    load_panel,
    local_service,
    m4_scores,
    plan_origins,
    run,
    run_panel,
)
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


# --- panel mode: M4-style scoring of a global model -----------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures"
M4_TRAIN, M4_TEST = FIXTURES / "m4_train.csv", FIXTURES / "m4_test.csv"
# m4_train.csv: W1 = 1..10, W2 = 2, 4, ..., 24, W3 = 5..12, W4 = 7 x 5; m4_test.csv the next two.


def write_last_value_model(
    root: Path, name: str = "last", *, input_length: int = 8, min_length: int = 6, horizon: int = 2
) -> Path:
    """A forecaster that repeats the window's last value, times the mean of its one MC-dropout
    mask (1 with dropout off): ONNX built with `onnx.helper`, no TensorFlow."""
    import json

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    units = 16
    nodes = [
        helper.make_node("Gather", ["x", "last_index"], ["last"], axis=1),  # [B, 1]
        helper.make_node("ReduceMean", ["mc_mask_0"], ["keep"], axes=[1], keepdims=1),  # [B, 1]
        helper.make_node("Mul", ["last", "keep"], ["level"]),
        helper.make_node("Mul", ["level", "ones"], ["y"]),  # [B, H]
    ]
    graph = helper.make_graph(
        nodes,
        "last_value",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 1]),
            helper.make_tensor_value_info("mc_mask_0", TensorProto.FLOAT, ["B", units]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", horizon])],
        initializer=[
            numpy_helper.from_array(np.array(-1, dtype=np.int64), "last_index"),
            numpy_helper.from_array(np.ones((1, horizon), dtype=np.float32), "ones"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    folder = root / name
    (folder / "1").mkdir(parents=True)
    onnx.save(model, folder / "1" / "model.onnx")
    spec = {
        "schema_version": 1,
        "name": name,
        "version": 1,
        "architecture": "last_value",
        "input_length": input_length,
        "min_length": min_length,
        "horizon": horizon,
        "output": "vector",
        "features": ["value"],
        "target": 0,
        "frequency": None,
        "scaling": {"method": "none", "mean": [0.0], "scale": [1.0]},
        "onnx": {
            "file": "1/model.onnx",
            "opset": 17,
            "input": {"name": "x", "dtype": "float32", "shape": [None, None, 1]},
            "output": {"name": "y", "dtype": "float32", "shape": [None, horizon]},
            "mc_dropout": {
                "method": "mask_inputs",
                "rate": 0.2,
                "masks": [{"name": "mc_mask_0", "size": units}],
                "repeat_rows": False,
            },
        },
    }
    (folder / "forecaster.json").write_text(json.dumps(spec))
    return folder


def test_m4_scores_by_hand() -> None:
    histories = [
        np.arange(1.0, 11.0),
        np.arange(2.0, 25.0, 2.0),
        np.arange(5.0, 13.0),
        np.full(5, 7.0),
    ]
    truth = np.array([[11.0, 12.0], [25.0, 26.0], [13.0, 14.0], [8.0, 9.0]])
    naive = np.array([[y[-1]] * 2 for y in histories])
    perfect = truth.copy()
    partial = np.where(np.arange(4)[:, None] < 2, truth + 1.0, np.nan)  # W1, W2 only
    scores = m4_scores(histories, truth, {"naive": naive, "perfect": perfect, "partial": partial})
    assert list(scores) == ["naive", "perfect", "partial", "Naive2"]  # Naive2 (m = 1): naive
    terms = [1 / 21, 2 / 22, 1 / 49, 2 / 50, 1 / 25, 2 / 26, 1 / 15, 2 / 16]
    assert scores["naive"].smape == pytest.approx(200 * np.mean(terms))
    # MASE: W4 is constant (scale 0), left out; W1 and W3 step 1, W2 step 2.
    assert scores["naive"].mase == pytest.approx(np.mean([1.5, 0.75, 1.5]))
    assert scores["naive"].owa == pytest.approx(1.0)
    assert scores["Naive2"] == scores["naive"]
    assert (scores["perfect"].smape, scores["perfect"].mase, scores["perfect"].owa) == (0, 0, 0)
    # The partial method is scored on W1 and W2, against Naive2 on those two.
    smape = 200 * np.mean([1 / 23, 1 / 25, 1 / 51, 1 / 53])
    naive2_smape = 200 * np.mean(terms[:4])
    mase, naive2_mase = np.mean([1.0, 0.5]), np.mean([1.5, 0.75])
    assert scores["partial"].series == 2
    assert scores["partial"].smape == pytest.approx(smape)
    assert scores["partial"].owa == pytest.approx(0.5 * (smape / naive2_smape + mase / naive2_mase))


def test_frequency_kind() -> None:
    assert frequency_kind(None, ["W1", "W22"]) == "W"
    assert frequency_kind(None, ["W1", "M2"]) is None
    assert frequency_kind(None, ["series_a"]) is None
    assert frequency_kind("W-SUN") == "W"
    assert frequency_kind("MS") == "M"
    assert frequency_kind("ms") is None  # milliseconds, not month start
    assert frequency_kind("h") == "H"
    assert frequency_kind("2h") is None


def test_panel_backtest_through_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    model = write_last_value_model(models)
    out = tmp_path / "quality" / "last.md"
    with local_service(models, "last", 60.0) as url:
        # Dropout off: the served mean is each series' last value, exactly the naive forecast.
        code = main(
            [
                "backtest",
                *("--model", str(model), "--data", str(M4_TRAIN), "--test-data", str(M4_TEST)),
                *("--url", url, "--samples", "0", "--jobs", "1", "--out", str(out)),
            ]
        )
        assert code == 0
        printed = capsys.readouterr().out
        assert "last on 4 series" in printed
        assert "M4 seasonality 1, seasonal naive 52" in printed
        report = out.read_text()
        assert "python -m training backtest --model" in report
        assert "--test-data" in report
        assert "--format m4 --season 1" in report
        assert "| last (served) | 12.688 | 1.250 | 1.000 | 4 |" in report
        assert "| Naive2 | 12.688 | 1.250 | 1.000 | 4 |" in report
        assert "1 of 4 series have fewer than min_length=6 points" in report  # W4 (5 points)
        assert "1 series with a constant history" in report  # W4 again, left out of MASE
        assert "seasonal_naive_52: 4 of 4 series shorter than the season" in report
        assert "no model intervals" in report
        assert "| ES-RNN (M4 winner) | 7.817 | 2.356 | 0.851 |" in report
        assert "not comparable" in report

        result = run_panel(
            BacktestConfig(
                model=model,
                data=M4_TRAIN,
                test_data=M4_TEST,
                url=url,
                samples=40,
                season=2,
                ets=False,
                jobs=1,
            ),
            log=lambda line: None,
        )
    assert result.served_series == 3
    assert list(result.forecasts) == ["last", "Naive2", "naive", "SES", "Theta"]
    assert list(result.scores) == ["last", "Naive2", "naive", "SES", "Theta"]
    assert result.season == 2
    assert result.naive_season == 52
    assert result.samples == 40
    assert set(result.coverage) == {"80", "95"}
    assert all(0.0 <= value <= 1.0 for value in result.coverage.values())
    # The MC mean is the last value times the mean of the masks, about 1: near the naive forecast.
    served = result.forecasts["last"][:3]
    np.testing.assert_allclose(served, result.forecasts["naive"][:3], rtol=0.1)
    assert result.forecasts["last"][3].tolist() == [7.0, 7.0]  # W4: too short, naive
    assert "AutoETS skipped (--no-ets)" in result.notes


def test_panel_mix_ups_fail_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_last_value_model(tmp_path / "models")
    panel = ("--model", str(model), "--data", str(M4_TRAIN), "--test-data", str(M4_TEST))
    err = cli_error(capsys, *panel, "--start", "2021-01-01")
    assert "--start apply to a one-series CSV; with --test-data" in err
    err = cli_error(capsys, "--model", str(model), "--data", str(M4_TRAIN))
    assert "--start and --end are required for a one-series CSV (a panel: --test-data FILE)" in err
    err = cli_error(capsys, "--model", str(model), "--data", str(M4_TRAIN), "--format", "m4")
    assert "--format m4 is a panel: give --test-data" in err
    longer = write_last_value_model(tmp_path / "models", "longer", horizon=3)
    err = cli_error(capsys, *panel[2:], "--model", str(longer))
    assert "holds 2 values per series, but the model forecasts 3 steps" in err
    err = cli_error(capsys, *panel, "--format", "wide")
    assert "reads as one series (--format wide)" in err
    err = cli_error(capsys, *panel[:4], "--test-data", str(tmp_path / "missing.csv"))
    assert "test data file not found" in err


def test_load_panel_reads_long_files_as_train_does() -> None:
    config = BacktestConfig(
        model=Path("unused"),
        data=FIXTURES / "panel_long.csv",
        test_data=FIXTURES / "panel_long_test.csv",
    )
    data = load_panel(config, 3)  # the target "value" is read as Nixtla's y, as train reads it
    assert data.data_format == "long"
    assert data.kind == "D"  # M4's m = 1 for daily; the seasonal naive row uses 7
    assert data.truth.shape == (len(data.ids), 3)
    assert data.truth[0].tolist() == [22.0, 23.0, 24.0]
    assert data.histories[0][-1] == 21.0  # A's history ends the day before its test rows
    with pytest.raises(TrainingError, match="holds 3 values per series, but the model forecasts 2"):
        load_panel(config, 2)
