"""Open Inference Protocol v2 over TestClient: metadata, JSON and binary tensors, errors."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from numpy.typing import NDArray

Array32 = NDArray[np.float32]


def run_ort(models_dir: Path, name: str, feeds: dict[str, Array32]) -> Array32:
    session = ort.InferenceSession(
        str(models_dir / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(["y"], feeds)[0])


def ones(batch: int, *names: str, width: int = 8) -> dict[str, Array32]:
    return {n: np.ones((batch, width), np.float32) for n in names}


def tensor(name: str, array: Array32) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": "FP32",
        "data": array.ravel().tolist(),
    }


def window(batch: int = 2, length: int = 12, features: int = 1) -> Array32:
    rng = np.random.default_rng(0)
    return rng.normal(size=(batch, length, features)).astype(np.float32)


def test_server_metadata_and_health(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    body = client.get("/v2").json()
    assert body["name"] == "forecast-service"
    assert "binary_tensor_data" in body["extensions"]


def test_model_metadata_lists_tensors_with_dynamic_dims(client: TestClient) -> None:
    response = client.get("/v2/models/tiny")

    assert response.status_code == 200
    assert response.json() == {
        "name": "tiny",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, -1, 1]},
            {"name": "mc_mask_0", "datatype": "FP32", "shape": [-1, 8]},
            {"name": "mc_mask_1", "datatype": "FP32", "shape": [-1, 8]},
        ],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, -1, 3]}],
    }
    assert client.get("/v2/models/multi/versions/1").json()["outputs"] == [
        {"name": "y", "datatype": "FP32", "shape": [-1, 3]}
    ]


def test_model_ready_by_name_and_version(client: TestClient) -> None:
    assert client.get("/v2/models/tiny/ready").status_code == 200
    assert client.get("/v2/models/tiny/versions/1/ready").status_code == 200
    assert client.get("/v2/models/tiny/versions/7/ready").status_code == 404


def test_json_infer_without_masks_is_ort_with_dropout_off(
    client: TestClient, models_dir: Path
) -> None:
    x = window()
    body = {"id": "r1", "inputs": [tensor("x", x)]}

    # tritonclient sends no Content-Type: the raw body is parsed whatever the header says.
    response = client.post("/v2/models/tiny/infer", content=json.dumps(body))

    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["model_name"], out["model_version"], out["id"]) == ("tiny", "1", "r1")
    (y,) = out["outputs"]
    assert (y["name"], y["datatype"], y["shape"]) == ("y", "FP32", [2, 12, 3])
    expected = run_ort(models_dir, "tiny", {"x": x, **ones(2, "mc_mask_0", "mc_mask_1")})
    np.testing.assert_array_equal(np.asarray(y["data"], np.float32).reshape(2, 12, 3), expected)


def test_masks_sent_are_used(client: TestClient, models_dir: Path) -> None:
    x = window(batch=3)
    rng = np.random.default_rng(1)
    masks = {f"mc_mask_{k}": ((rng.random((3, 8)) < 0.8) / 0.8).astype(np.float32) for k in (0, 1)}
    body = {"inputs": [tensor("x", x), *(tensor(n, m) for n, m in masks.items())]}

    response = client.post("/v2/models/tiny/versions/1/infer", content=json.dumps(body))

    assert response.status_code == 200, response.text
    data = np.asarray(response.json()["outputs"][0]["data"], np.float32).reshape(3, 12, 3)
    np.testing.assert_array_equal(data, run_ort(models_dir, "tiny", {"x": x, **masks}))


def test_binary_request_and_binary_response(client: TestClient, models_dir: Path) -> None:
    x = window(batch=4, length=6, features=2)
    raw = x.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [4, 6, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()

    response = client.post(
        "/v2/models/multi/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )

    assert response.status_code == 200, response.text
    n = int(response.headers["Inference-Header-Content-Length"])
    meta = json.loads(response.content[:n])
    (y,) = meta["outputs"]
    assert y["shape"] == [4, 3]
    assert y["parameters"]["binary_data_size"] == 4 * 3 * 4
    data = np.frombuffer(response.content[n:], dtype="<f4").reshape(4, 3)
    np.testing.assert_array_equal(data, run_ort(models_dir, "multi", {"x": x}))


def test_binary_data_output_parameter_applies_to_all_outputs(client: TestClient) -> None:
    body = {"inputs": [tensor("x", window())], "parameters": {"binary_data_output": True}}

    response = client.post("/v2/models/tiny/infer", content=json.dumps(body))

    assert response.status_code == 200
    assert "Inference-Header-Content-Length" in response.headers


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/nope/infer", {"inputs": []}, 404, "not found"),
        ("/v2/models/tiny/versions/2/infer", {"inputs": []}, 404, "no version '2'"),
        ("/v2/models/tiny/infer", {"inputs": []}, 422, "non-empty list"),
        (
            "/v2/models/tiny/infer",
            {"inputs": [{"name": "x", "shape": [1, 2, 1], "datatype": "FP64", "data": [1, 2]}]},
            422,
            "expected 'FP32'",
        ),
        (
            "/v2/models/tiny/infer",
            {"inputs": [{"name": "x", "shape": [1, 3, 1], "datatype": "FP32", "data": [1, 2]}]},
            422,
            "shape [1, 3, 1] needs 3",
        ),
        (
            "/v2/models/tiny/infer",
            {"inputs": [{"name": "x", "shape": [1, 2, 2], "datatype": "FP32", "data": [1] * 4}]},
            422,
            "expects [B, T, 1]",
        ),
        (
            "/v2/models/tiny/infer",
            {
                "inputs": [
                    {"name": "x", "shape": [2, 2, 1], "datatype": "FP32", "data": [1] * 4},
                    {"name": "mc_mask_0", "shape": [1, 8], "datatype": "FP32", "data": [1] * 8},
                ]
            },
            422,
            "expected [2, 8]",
        ),
        (
            "/v2/models/tiny/infer",
            {"inputs": [{"name": "z", "shape": [1], "datatype": "FP32", "data": [1]}]},
            422,
            "no input 'z'",
        ),
        (
            "/v2/models/tiny/infer",
            {
                "inputs": [{"name": "x", "shape": [1, 1, 1], "datatype": "FP32", "data": [1]}],
                "outputs": [{"name": "nope"}],
            },
            422,
            "no output 'nope'",
        ),
    ],
)
def test_errors_are_a_plain_error_string(
    client: TestClient, path: str, body: dict[str, Any], status: int, message: str
) -> None:
    response = client.post(path, content=json.dumps(body))

    assert response.status_code == status
    error = response.json()["error"]
    assert isinstance(error, str)
    assert message in error


def test_malformed_bodies_are_400(client: TestClient) -> None:
    assert client.post("/v2/models/tiny/infer", content=b"{nope").status_code == 400
    response = client.post(
        "/v2/models/tiny/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "99"},
    )
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)
    raw = np.zeros(3, "<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 2, 1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    response = client.post(
        "/v2/models/tiny/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "belong to no input" in response.json()["error"]


def test_unknown_v2_route_and_oversized_body_keep_the_oip_error_shape(
    client: TestClient,
) -> None:
    assert isinstance(client.get("/v2/nothing/here").json()["error"], str)
    big = b"[" + b"0," * (5 * 1024 * 1024) + b"0]"
    response = client.post("/v2/models/tiny/infer", content=big)
    assert response.status_code == 413
    assert isinstance(response.json()["error"], str)
