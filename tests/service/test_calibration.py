"""Calibrated MC-dropout intervals: served by default when the model has them, raw on request."""

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app
from tests.service.conftest import write_model

SERIES = [float(v) for v in np.sin(np.arange(20) / 3)]


def add_calibration(folder: Path, factors: list[float]) -> None:
    spec_path = folder / "forecaster.json"
    spec = json.loads(spec_path.read_text())
    spec["calibration"] = {"method": "spread_factor", "factors": factors}
    spec_path.write_text(json.dumps(spec))


def forecast(client: TestClient, name: str, **uncertainty: object) -> dict[str, object]:
    body = {
        "series": SERIES,
        "horizon": 5,
        "uncertainty": {"samples": 200, "seed": 3, **uncertainty},
    }
    response = client.post(f"/v1/models/{name}/forecast", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_calibrated_by_default_raw_on_request(tmp_path: Path) -> None:
    root = tmp_path / "models"
    add_calibration(write_model(root, "cal", n_masks=2), [2.0, 3.0])  # horizon 3: step 4+ uses 3.0
    write_model(root, "plain", n_masks=2)
    with TestClient(create_app(Settings(models_dir=root, device="cpu"))) as client:
        served = forecast(client, "cal")
        raw = forecast(client, "cal", calibrated=False)
        plain = forecast(client, "plain")
    assert served["calibrated"] is True
    assert raw["calibrated"] is False
    assert plain["calibrated"] is False  # no calibration in the model: raw spread, said so
    served_f, raw_f = served["forecasts"][0], raw["forecasts"][0]  # type: ignore[index]
    np.testing.assert_allclose(served_f["mean"], raw_f["mean"], atol=1e-12)
    ratio = np.asarray(served_f["std"]) / np.asarray(raw_f["std"])
    np.testing.assert_allclose(ratio, [2.0, 3.0, 3.0, 3.0, 3.0], rtol=1e-9)
    width = lambda f: np.asarray(f["quantiles"]["0.95"]) - np.asarray(f["quantiles"]["0.05"])  # noqa: E731
    assert (width(served_f) > width(raw_f)).all()


def test_bad_calibration_marks_the_model_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "models"
    add_calibration(write_model(root, "broken", n_masks=1), [-1.0])
    write_model(root, "ok", n_masks=1)
    with TestClient(create_app(Settings(models_dir=root, device="cpu"))) as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["ok"]["ready"] is True
    assert models["broken"]["ready"] is False
    assert "calibration" in models["broken"]["reason"]


@pytest.mark.parametrize("value", ["yes", 2])
def test_calibrated_flag_is_validated(client: TestClient, value: object) -> None:
    body = {"series": SERIES, "uncertainty": {"samples": 10, "calibrated": value}}
    response = client.post("/v1/models/tiny/forecast", json=body)
    assert response.status_code == 422
    assert "calibrated" in response.json()["error"]["message"]


def add_conformal(folder: Path, levels: list[float], scores: list[list[float]]) -> None:
    spec_path = folder / "forecaster.json"
    spec = json.loads(spec_path.read_text())
    spec["calibration"] = {"method": "conformal", "levels": levels, "scores": scores}
    spec_path.write_text(json.dumps(spec))


def test_conformal_intervals_are_mean_plus_score_times_raw_std(tmp_path: Path) -> None:
    root = tmp_path / "models"
    levels, scores = [0.5, 0.8, 0.9], [[0.5, 1.0, 2.0], [1.0, 2.0, 4.0]]  # step 3+ reuses row 2
    add_conformal(write_model(root, "conf", n_masks=2), levels, scores)
    with TestClient(create_app(Settings(models_dir=root, device="cpu"))) as client:
        quantiles = [0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
        served = forecast(client, "conf", quantiles=quantiles)
        raw = forecast(client, "conf", calibrated=False)
    assert served["calibrated"] is True
    served_f, raw_f = served["forecasts"][0], raw["forecasts"][0]  # type: ignore[index]
    mean, std = np.asarray(raw_f["mean"]), np.asarray(raw_f["std"])
    q = {k: np.asarray(v) for k, v in served_f["quantiles"].items()}
    # 200 paths: the central 80% interval's ends sit within one path's level of 0.8
    for row, step in ((0, 0), (1, 1), (1, 4)):
        for lo, hi, score in (("0.25", "0.75", scores[row][0]), ("0.1", "0.9", scores[row][1])):
            np.testing.assert_allclose(q[hi][step] - mean[step], score * std[step], rtol=0.02)
            np.testing.assert_allclose(mean[step] - q[lo][step], score * std[step], rtol=0.02)
        # beyond the last level the last score holds
        np.testing.assert_allclose(q["0.99"][step] - mean[step], scores[row][2] * std[step])
    np.testing.assert_allclose(served_f["mean"], raw_f["mean"], rtol=1e-9)  # symmetric map


@pytest.mark.parametrize(
    "calibration",
    [
        {"method": "conformal", "levels": [0.5, 0.8], "scores": [[1.0, 0.5]]},  # decreasing
        {"method": "conformal", "levels": [0.8, 0.5], "scores": [[1.0, 2.0]]},  # levels unordered
        {"method": "conformal", "levels": [0.5, 0.8], "scores": [[1.0]]},  # a score missing
        {"method": "conformal", "levels": [0.5], "scores": []},
        {"method": "spread_factor"},
    ],
)
def test_incomplete_calibration_marks_the_model_unavailable(
    tmp_path: Path, calibration: dict[str, object]
) -> None:
    root = tmp_path / "models"
    spec_path = write_model(root, "broken", n_masks=1) / "forecaster.json"
    spec = json.loads(spec_path.read_text())
    spec["calibration"] = calibration
    spec_path.write_text(json.dumps(spec))
    with TestClient(create_app(Settings(models_dir=root, device="cpu"))) as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["broken"]["ready"] is False
    assert "calibration" in models["broken"]["reason"]
