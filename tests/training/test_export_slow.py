"""Train -> export -> ONNX Runtime -> service, end to end on a small synthetic task (TensorFlow: slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SMALL = ["--epochs", "2", "--units", "12", "--synthetic-sizes", "600", "300", "10"]
SMALL += ["--allow-worse-than-baseline"]  # a two-epoch model is not meant to beat them
SMALL += ["--normalization", "global"]  # these tests assert the vector head; instance: below


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


def train_cli(workdir: Path, model: str, *extra: str) -> int:
    from training.cli import main

    return main(
        [
            "train",
            "--model",
            model,
            *SMALL,
            *extra,
            "--out",
            str(workdir / "models" / model),
            "--runs-dir",
            str(workdir / "runs"),
        ]
    )


@pytest.mark.parametrize("architecture", ["lstm", "gru", "wavenet"])
def test_train_export_and_serve_in_ort(workdir: Path, architecture: str) -> None:
    import keras
    import onnxruntime as ort

    import training.architectures  # noqa: F401  (registers the custom layers for loading)
    from forecaster_format import draw_masks
    from training.datasets import generate_time_series
    from training.evaluation import last_step
    from training.fit import predict

    assert train_cli(workdir, architecture) == 0
    folder = workdir / "models" / architecture
    spec = json.loads((folder / "forecaster.json").read_text())
    assert spec["name"] == architecture
    assert spec["input_length"] == 50
    assert spec["horizon"] == 10
    assert 2 <= spec["min_length"] <= 50
    assert (folder / "report.png").stat().st_size > 10_000
    assert spec["metrics"]["checks"]["parity_max_abs_diff"] <= 1e-5
    for key in ("model", "model_mc_mean", "naive", "linear"):
        assert len(spec["metrics"][key]["mse_per_step"]) == 10
    assert set(spec["metrics"]["mc_interval_coverage"]) == {"0.5", "0.8", "0.95"}

    # Seq2seq models export as vectors: the recurrent heads run on the last step (onnx_head.py),
    # the WaveNet's chain on the last step's receptive field (onnx_crop.py).
    assert spec["output"] == "vector"
    assert spec["onnx"]["output"]["shape"] == [None, 10]
    # The shipped artifact, called as the service calls it, equals Keras with dropout off.
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"))
    model = keras.models.load_model(workdir / "runs" / architecture / "model.keras")
    masks = spec["onnx"]["mc_dropout"]["masks"]
    assert [m["name"] for m in masks] == ["mc_mask_0", "mc_mask_1"]
    for batch, length in ((1, 30), (7, 50), (256, 200)):
        x = generate_time_series(batch, length, seed=batch)
        ones = {m["name"]: np.ones((batch, m["size"]), np.float32) for m in masks}
        got = session.run(["y"], {"x": x, **ones})[0]
        assert got.shape == (batch, 10)
        assert np.max(np.abs(last_step(got) - last_step(predict(model, x)))) <= 1e-5

    # MC dropout: samples differ within one call, and a seed repeats from a new session.
    x = np.repeat(generate_time_series(1, 50, seed=3), 32, axis=0)
    widths = [m["size"] for m in masks]
    rate = spec["onnx"]["mc_dropout"]["rate"]

    def sample(sess: ort.InferenceSession, seed: int) -> np.ndarray:
        drawn = draw_masks(np.random.default_rng(seed), 32, widths, rate)
        feeds = {"x": x, **{m["name"]: d for m, d in zip(masks, drawn, strict=True)}}
        return last_step(sess.run(["y"], feeds)[0])

    first = sample(session, 5)
    assert first.std(axis=0).min() > 0
    np.testing.assert_array_equal(
        first, sample(ort.InferenceSession(str(folder / "1" / "model.onnx")), 5)
    )
    assert not np.array_equal(first, sample(session, 6))


def test_exported_models_are_served(workdir: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    if not (workdir / "models" / "lstm" / "forecaster.json").exists():
        assert train_cli(workdir, "lstm") == 0
    settings = Settings(models_dir=workdir / "models")
    series = [float(v) for v in np.sin(np.arange(60) / 5)]
    with TestClient(create_app(settings)) as client:
        listing = client.get("/v1/models").json()["models"]
        assert {m["name"] for m in listing} >= {"lstm"}
        assert all(m["ready"] for m in listing)
        body = {"series": series, "horizon": 25, "uncertainty": {"samples": 50, "seed": 1}}
        response = client.post("/v1/models/lstm/forecast", json=body)
        assert response.status_code == 200, response.text
        forecast = response.json()["forecasts"][0]
        assert len(forecast["mean"]) == 25
        assert response.json()["strategy"] == "recursive"


def test_export_refuses_a_model_that_fails_parity(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import training.export

    monkeypatch.setattr(training.export, "PARITY_TOLERANCE", 0.0)
    code = train_cli(workdir, "lstm", "--name", "refused", "--epochs", "1")
    assert code == 2
    assert "ORT differs from Keras" in capsys.readouterr().err
    assert not (workdir / "models" / "refused").exists()


def test_csv_multivariate_window_model_exports_and_serves(workdir: Path) -> None:
    """CTA ridership, bus + next-day type, window-normalised seq2vec: export checks, calibration,
    drift metrics, and a rollout in the service fed with future covariates."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from training.cli import main

    data = (
        Path(__file__).parents[2] / "data" / "cta" / "CTA_-_Ridership_-_Daily_Boarding_Totals.csv"
    )
    out = workdir / "csv-models" / "cta"
    code = main(
        [
            "train",
            "--model",
            "gru",
            "--name",
            "cta",
            "--data",
            str(data),
            "--date-column",
            "service_date",
            "--target",
            "rail_boardings",
            "--covariates",
            "bus",
            "--known-ahead",
            "day_type",
            "--train-start",
            "2017-01-01",
            "--train-end",
            "2018-12-31",
            "--valid-end",
            "2019-05-31",
            "--test-end",
            "2020-02-29",
            "--drift-eval",
            "2021-06-01:2021-11-30",
            "--input-length",
            "28",
            "--horizon",
            "7",
            "--kind",
            "seq2vec",
            "--season",
            "7",
            "--scaling",
            "window",
            "--profile-weeks",
            "4",
            "--skip-steps",
            "7",
            "--loss",
            "huber",
            "--huber-delta",
            "0.05",
            "--epochs",
            "2",
            "--units",
            "8",
            "--allow-worse-than-baseline",
            "--out",
            str(out),
            "--runs-dir",
            str(workdir / "runs"),
        ]
    )
    assert code == 0
    spec = json.loads((out / "forecaster.json").read_text())
    assert spec["features"] == [
        "rail_boardings",
        "bus",
        "next_day_type=A",
        "next_day_type=U",
        "next_day_type=W",
    ]
    assert spec["output"] == "vector"
    assert spec["min_length"] >= 7
    assert spec["metrics"]["checks"]["parity_max_abs_diff"] <= 1e-5
    assert spec["metrics"]["model"]["mae_original_units"] > 0
    assert "naive_7" in spec["metrics"]["drift"]
    assert spec["min_length"] == 28  # the median profile reads the last 4 weeks
    assert spec["training"]["loss"] == "huber(0.05)"
    assert spec["training"]["skip_steps"] == 7
    calibration = spec["calibration"]
    assert calibration["method"] == "conformal"
    assert calibration["split"] == "interleaved"
    assert len(calibration["scores"]) == 7
    assert all(len(row) == len(calibration["levels"]) for row in calibration["scores"])
    assert set(calibration["coverage_calibrated"]) == {"0.5", "0.8", "0.95"}
    assert set(calibration["check_halves"]["coverage_calibrated"]) == {"0.5", "0.8", "0.95"}

    rows = [[600_000.0 + 1000 * (d % 7), 700_000.0, 0.0, 0.0, 1.0] for d in range(40)]
    future = [[700_000.0, 0.0, 0.0, 1.0]] * 14
    with TestClient(create_app(Settings(models_dir=out.parent))) as client:
        body = {
            "series": rows,
            "horizon": 20,
            "future_covariates": future,
            "uncertainty": {"samples": 20, "seed": 1},
        }
        response = client.post("/v1/models/cta/forecast", json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["calibrated"] is True
        mean = result["forecasts"][0]["mean"]
        assert len(mean) == 20
        assert 100_000 < float(np.mean(mean)) < 2_000_000  # riders in, riders out
        missing = client.post("/v1/models/cta/forecast", json={"series": rows, "horizon": 20})
        assert missing.status_code == 422
        assert "future_covariates" in missing.json()["error"]["message"]


def level_shift_csv(path: Path) -> Path:
    """Two sines + noise whose level jumps by 8 after the training part: daily, 900 days."""
    rng = np.random.default_rng(0)
    t = np.arange(900)
    values = (
        np.sin(2 * np.pi * t / 7) + 0.5 * np.sin(2 * np.pi * t / 30) + 0.1 * rng.normal(size=900)
    )
    values[600:] += 8.0
    dates = np.datetime64("2020-01-01") + t
    path.write_text(
        "date,value\n" + "".join(f"{d},{v:.4f}\n" for d, v in zip(dates, values, strict=False))
    )
    return path


def test_auto_normalization_chooses_on_validation_and_the_gate_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A level shift between training and validation: instance normalisation wins the choice; the
    baseline comparison (naive, seasonal naive, linear, AutoETS) is printed and stored."""
    from training.cli import main

    data = level_shift_csv(tmp_path / "shift.csv")
    out = tmp_path / "models" / "shift"
    argv = ["train", "--model", "gru", "--name", "shift", "--data", str(data), "--target", "value"]
    argv += ["--train-end", "2021-08-22", "--valid-end", "2022-01-31", "--test-end", "2022-06-18"]
    argv += ["--input-length", "28", "--horizon", "7", "--kind", "seq2vec", "--epochs", "4"]
    argv += ["--units", "16", "--allow-worse-than-baseline"]
    code = main([*argv, "--out", str(out), "--runs-dir", str(tmp_path / "runs")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "normalisation" in printed
    assert "keeping instance" in printed
    assert "seasonal_naive_7" in printed
    assert "auto_ets" in printed
    spec = json.loads((out / "forecaster.json").read_text())
    assert spec["training"]["normalization"] == "instance"
    baselines = spec["metrics"]["baselines"]
    assert set(baselines) == {"validation", "test", "gate"}
    methods = baselines["test"]["methods"]
    assert set(methods) == {"model", "naive", "seasonal_naive_7", "linear", "auto_ets"}
    assert all(len(m["mae_per_step"]) == 7 for m in methods.values())
    assert baselines["gate"]["split"] == "test"
    # The normalised model follows the new level; the global one would pull back towards 0.
    assert methods["model"]["mae"] < 2.0


def test_the_gate_refuses_a_model_worse_than_a_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import main

    argv = ["train", "--model", "lstm", "--name", "weak", "--epochs", "1", "--units", "4"]
    argv += ["--synthetic-sizes", "300", "200", "100", "--normalization", "global"]
    out = tmp_path / "models" / "weak"
    code = main([*argv, "--out", str(out), "--runs-dir", str(tmp_path / "runs")])
    assert code == 2
    err = capsys.readouterr().err
    assert "not exported" in err
    assert "--allow-worse-than-baseline" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert (tmp_path / "runs" / "weak" / "model.keras").exists()  # the work is kept


def test_a_global_model_on_many_series_serves_any_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """M4's wide format: one model across series of very different scales, trained on each series
    divided by its own scale, served on raw values (the graph normalises each window)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from training.cli import main

    rng = np.random.default_rng(0)
    t = np.arange(64)
    rows, tests = [], []
    for i in range(12):
        scale = 10.0 ** rng.integers(0, 5)
        series = scale * (5 + np.sin(2 * np.pi * t / 8 + i) + 0.05 * t + 0.1 * rng.normal(size=64))
        rows.append(f'"W{i + 1}",' + ",".join(f"{v:.4f}" for v in series[:60]))
        tests.append(f'"W{i + 1}",' + ",".join(f"{v:.4f}" for v in series[60:]))
    header = ",".join(f'"V{j + 1}"' for j in range(61))
    (tmp_path / "train.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text(",".join(f'"V{j + 1}"' for j in range(5)) + "\n")
    with (tmp_path / "test.csv").open("a") as f:
        f.write("\n".join(tests) + "\n")
    out = tmp_path / "models" / "panel"
    argv = ["train", "--model", "gru", "--name", "panel", "--data", str(tmp_path / "train.csv")]
    argv += ["--test-data", str(tmp_path / "test.csv"), "--frequency", "W"]
    argv += ["--input-length", "16", "--horizon", "4", "--kind", "seq2vec", "--epochs", "2"]
    argv += ["--units", "8", "--allow-worse-than-baseline"]
    code = main([*argv, "--out", str(out), "--runs-dir", str(tmp_path / "runs")])
    assert code == 0
    spec = json.loads((out / "forecaster.json").read_text())
    assert spec["training"]["normalization"] == "instance"
    assert spec["scaling"]["method"] == "none"
    window = [5 + np.sin(2 * np.pi * k / 8) for k in range(16)]
    with TestClient(create_app(Settings(models_dir=out.parent))) as client:
        answers = [
            client.post(
                "/v1/models/panel/forecast",
                json={"series": [v * factor for v in window], "horizon": 4},
            )
            for factor in (1.0, 1000.0)
        ]
        card = client.get("/v1/models/panel").json()
    gate = card["metrics"]["baselines"]["gate"]  # the comparison is on the model's card
    assert gate["split"] == "validation"  # each series' last points; the --test-data only scored
    assert gate["allowed_worse"] == (not gate["passed"])
    assert spec["metrics"]["drift"]["windows"] == 12
    small, large = (np.asarray(a.json()["forecasts"][0]["mean"]) for a in answers)
    np.testing.assert_allclose(large, 1000.0 * small, rtol=1e-3)
