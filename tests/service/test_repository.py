"""Loading the model repository: broken folders are reported with their reason, never fatal."""

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import Settings, create_app
from service.errors import InvalidModelNameError
from service.repository import validate_model_name
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
    assert str(models_dir) not in reasons["corrupt_onnx"]  # ORT's message names the absolute path


@pytest.mark.parametrize(
    ("strict", "broken", "ready"),
    [
        (True, False, True),
        (True, True, False),  # as Triton: ready only when every model loaded
        (False, True, True),  # one loaded model is enough
    ],
)
def test_readiness_follows_strict_readiness(
    models_dir: Path, strict: bool, broken: bool, ready: bool
) -> None:
    if broken:
        break_folders(models_dir)
    settings = Settings(models_dir=models_dir, device="cpu", strict_readiness=strict)

    with TestClient(create_app(settings)) as client:
        native = client.get("/health/ready")
        oip = client.get("/v2/health/ready")
        served = client.post("/v1/models/tiny/forecast", json={"series": [1.0] * 12})

    assert native.status_code == (200 if ready else 503)
    assert oip.status_code == (200 if ready else 400)  # the OIP's "not ready"
    assert native.json()["models"]["tiny"] is True
    assert native.json()["models"].get("bad_json", False) is False
    assert served.status_code == 200  # not ready as a whole, yet the loaded models serve


@pytest.mark.parametrize("strict", [True, False])
def test_no_models_is_never_ready(tmp_path: Path, strict: bool) -> None:
    (tmp_path / "models").mkdir()
    settings = Settings(models_dir=tmp_path / "models", device="cpu", strict_readiness=strict)

    with TestClient(create_app(settings)) as client:
        assert client.get("/health/ready").status_code == 503
        assert client.get("/v2/health/ready").status_code == 400


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


# --- what a model folder may contain, and where it may point -----------------------------------


class MarksWhenUnpickled:
    """Unpickling this runs `open(marker, "w")`: the marker file proves that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_pickle_and_python_files_are_never_loaded(models_dir: Path, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    tiny = models_dir / "tiny"
    (tiny / "model.pkl").write_bytes(pickle.dumps(MarksWhenUnpickled(markers / "pkl")))
    (tiny / "1" / "model.pkl").write_bytes(pickle.dumps(MarksWhenUnpickled(markers / "pkl1")))
    code = f"open({str(markers / 'py')!r}, 'w').close()\n"
    for name in ("__init__.py", "model.py", "forecaster.py", "1/__init__.py", "1/model.py"):
        (tiny / name).write_text(code)
    # A folder whose forecaster.json names the pickle as its network.
    write_model(models_dir, "pickled")
    spec = json.loads((models_dir / "pickled" / "forecaster.json").read_text())
    spec["onnx"]["file"] = "model.pkl"
    (models_dir / "pickled" / "forecaster.json").write_text(json.dumps(spec))
    (models_dir / "pickled" / "model.pkl").write_bytes(
        pickle.dumps(MarksWhenUnpickled(markers / "named"))
    )

    with TestClient(create_app(Settings(models_dir=models_dir, device="cpu"))) as client:
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        forecast = client.post("/v1/models/tiny/forecast", json={"series": [1.0] * 12})

    assert listed["tiny"]["ready"] is True  # the extra files are simply ignored
    assert forecast.status_code == 200
    assert listed["pickled"]["ready"] is False
    assert "onnxruntime cannot load model.pkl" in listed["pickled"]["reason"]
    assert list(markers.iterdir()) == []  # nothing was unpickled, imported or executed


def test_symlinks_may_not_leave_the_models_directory(models_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_model(outside, "elsewhere")
    (models_dir / "escape").symlink_to(outside / "elsewhere", target_is_directory=True)
    (models_dir / "alias").symlink_to(models_dir / "tiny", target_is_directory=True)  # inside: ok
    write_model(models_dir, "linked_spec")
    (models_dir / "linked_spec" / "forecaster.json").unlink()
    (models_dir / "linked_spec" / "forecaster.json").symlink_to(
        outside / "elsewhere" / "forecaster.json"
    )
    for name, file in [
        ("dotdot", "../../outside/elsewhere/1/model.onnx"),
        ("absolute", str(outside / "elsewhere" / "1" / "model.onnx")),
    ]:
        write_model(models_dir, name)
        spec = json.loads((models_dir / name / "forecaster.json").read_text())
        spec["onnx"]["file"] = file
        (models_dir / name / "forecaster.json").write_text(json.dumps(spec))

    with TestClient(create_app(Settings(models_dir=models_dir, device="cpu"))) as client:
        listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}

    assert listed["alias"]["ready"] is True
    reasons = {
        name: listed[name]["reason"] for name in ("escape", "linked_spec", "dotdot", "absolute")
    }
    assert reasons == {
        "escape": "the model folder resolves outside the models directory; refused",
        "linked_spec": "forecaster.json resolves outside the models directory; refused",
        "dotdot": "onnx.file '../../outside/elsewhere/1/model.onnx' resolves outside the "
        "models directory; refused",
        "absolute": f"onnx.file {str(outside / 'elsewhere' / '1' / 'model.onnx')!r} resolves "
        "outside the models directory; refused",
    }


def test_only_folders_with_model_names_are_served(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (".hidden", "__pycache__", "has space", "-dash"):
        write_model(models_dir, name)
    (models_dir / "file.onnx").write_bytes(b"not a folder")

    with TestClient(create_app(Settings(models_dir=models_dir, device="cpu"))) as client:
        names = [m["name"] for m in client.get("/v1/models").json()["models"]]
        hidden = client.post("/v1/models/.hidden/forecast", json={"series": [1.0] * 12})
        dotdot = client.get("/v1/models/a..b")

    assert names == ["multi", "tiny"]
    assert "skipping folder" in caplog.text
    assert hidden.status_code == 404
    assert "a model name has" in hidden.json()["error"]["message"]
    assert dotdot.status_code == 404


@pytest.mark.parametrize("name", ["lstm", "gru-v2", "cta.daily_1", "A" * 64, "0"])
def test_valid_model_names(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a..b", "a/b", "a\\b", "/abs", ".hidden", "_x", "-x", "A" * 65, "é", "a b"],
)
def test_invalid_model_names_are_a_422_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidModelNameError) as raised:
        validate_model_name(name)

    assert raised.value.status_code == 422
    assert raised.value.param == "name"
    assert raised.value.message.startswith("name: ")
