"""Loading the model repository: broken folders are reported with their reason, never fatal."""

import json
from pathlib import Path

from fastapi.testclient import TestClient

from service import Settings, create_app
from tests.service.conftest import write_model


def break_folders(root: Path) -> None:
    write_model(root, "bad_json")
    (root / "bad_json" / "forecaster.json").write_text('{"schema_version": 1, "name": ')
    write_model(root, "no_onnx")
    (root / "no_onnx" / "1" / "model.onnx").unlink()
    write_model(root, "corrupt_onnx")
    (root / "corrupt_onnx" / "1" / "model.onnx").write_bytes(b"\x08\x07not a protobuf" * 10)
    write_model(root, "bad_spec", min_length=20)  # above input_length
    write_model(root, "wrong_masks")
    spec = json.loads((root / "wrong_masks" / "forecaster.json").read_text())
    spec["onnx"]["mc_dropout"]["masks"][0]["name"] = "dropout_mask"
    (root / "wrong_masks" / "forecaster.json").write_text(json.dumps(spec))
    write_model(root, "wrong_horizon")
    spec = json.loads((root / "wrong_horizon" / "forecaster.json").read_text())
    spec["horizon"] = 5
    (root / "wrong_horizon" / "forecaster.json").write_text(json.dumps(spec))
    (root / "no_spec").mkdir()


def test_broken_folders_are_reported_while_the_others_serve(models_dir: Path) -> None:
    break_folders(models_dir)

    with TestClient(create_app(Settings(models_dir=models_dir, device="cpu"))) as client:
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        forecast = client.post("/v1/models/tiny/forecast", json={"series": [1.0] * 12})
        broken = client.post("/v1/models/no_onnx/forecast", json={"series": [1.0] * 12})
        ready = client.get("/health/ready")

    assert {n for n, m in listed.items() if m["ready"]} == {"tiny", "multi"}
    reasons = {n: m["reason"] for n, m in listed.items() if not m["ready"]}
    assert "forecaster.json is invalid" in reasons["bad_json"]
    assert "1/model.onnx is missing" in reasons["no_onnx"]
    assert "onnxruntime cannot load" in reasons["corrupt_onnx"]
    assert "min_length=20 > input_length=12" in reasons["bad_spec"]
    assert "graph inputs" in reasons["wrong_masks"]
    assert "expected [1, 12, 5]" in reasons["wrong_horizon"]
    assert "forecaster.json is missing" in reasons["no_spec"]
    assert listed["no_onnx"]["device"] is None
    assert forecast.status_code == 200
    assert broken.status_code == 503
    assert broken.json()["error"]["type"] == "model_not_ready"
    assert "1/model.onnx is missing" in broken.json()["error"]["message"]
    assert ready.status_code == 200


def test_model_info(client: TestClient) -> None:
    response = client.get("/v1/models/tiny")

    assert response.status_code == 200
    info = response.json()
    assert info | {"metrics": None, "description": None} == {
        "name": "tiny",
        "ready": True,
        "reason": None,
        "device": "cpu",
        "version": 1,
        "architecture": "tiny",
        "description": None,
        "input_length": 12,
        "min_length": 4,
        "horizon": 3,
        "output": "sequence",
        "features": ["value"],
        "uncertainty": True,
        "calibration": None,
        "metrics": None,
    }
    assert info["metrics"]["dataset"] == "synthetic"
    assert client.get("/v1/models/multi").json()["uncertainty"] is False


def test_unknown_model_info_is_404(client: TestClient) -> None:
    response = client.get("/v1/models/nope")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "model_not_found"


def test_missing_models_dir_serves_nothing_and_is_not_ready(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path / "absent", device="cpu")

    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/models").json() == {"models": []}
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/live").status_code == 200


def test_cuda_that_does_not_activate_is_reported_not_silent(models_dir: Path) -> None:
    # This machine has no GPU: whatever onnxruntime build is installed, CUDA cannot activate.
    with TestClient(create_app(Settings(models_dir=models_dir, device="cuda"))) as client:
        info = client.get("/v1/models/tiny").json()

    assert info["ready"] is False
    assert "cuda" in info["reason"]
