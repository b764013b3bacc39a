"""An unmodified tritonclient against the live service: uvicorn on a free port, tiny models."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from tests.service.conftest import write_test_models
from tests.service.live import live_uvicorn

httpclient = pytest.importorskip("tritonclient.http")
utils = pytest.importorskip("tritonclient.utils")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`host:port` of a uvicorn serving `tiny` (seq2seq, 2 MC sites) and `multi` (vector, F=2)."""
    root = write_test_models(tmp_path_factory.mktemp("live") / "models", {"method": "none"})
    with live_uvicorn(root, ready_path="/v2/health/ready") as address:
        yield address, root


@pytest.fixture
def triton(live: tuple[str, Path]) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(url=live[0], network_timeout=30.0)
    yield client
    client.close()


def ort_run(root: Path, name: str, feeds: dict[str, NDArray[np.float32]]) -> NDArray[np.float32]:
    session = ort.InferenceSession(
        str(root / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(["y"], feeds)[0])


def test_health_and_metadata(triton: httpclient.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("tiny")
    assert triton.is_model_ready("tiny", model_version="1")
    assert not triton.is_model_ready("nope")
    assert triton.get_server_metadata()["name"] == "forecast-service"

    metadata = triton.get_model_metadata("tiny")

    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["versions"] == ["1"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("x", "FP32", [-1, -1, 1]),
        ("mc_mask_0", "FP32", [-1, 8]),
        ("mc_mask_1", "FP32", [-1, 8]),
    ]
    assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, -1, 3]}]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_series_alone_matches_ort(
    triton: httpclient.InferenceServerClient, live: tuple[str, Path], binary: bool
) -> None:
    x = np.random.default_rng(3).normal(size=(5, 12, 1)).astype(np.float32)
    inputs = [httpclient.InferInput("x", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("y", binary_data=binary)]

    result = triton.infer("tiny", inputs, outputs=outputs, request_id="live-1")

    y = result.as_numpy("y")
    assert y.dtype == np.float32
    assert y.shape == (5, 12, 3)
    masks = {n: np.ones((5, 8), np.float32) for n in ("mc_mask_0", "mc_mask_1")}
    np.testing.assert_array_equal(y, ort_run(live[1], "tiny", {"x": x, **masks}))
    assert result.get_response()["id"] == "live-1"


def test_infer_with_masks_and_default_outputs(
    triton: httpclient.InferenceServerClient, live: tuple[str, Path]
) -> None:
    rng = np.random.default_rng(4)
    feeds = {"x": rng.normal(size=(3, 7, 1)).astype(np.float32)}
    feeds |= {
        n: ((rng.random((3, 8)) < 0.9) / 0.9).astype(np.float32) for n in ("mc_mask_0", "mc_mask_1")
    }
    inputs = []
    for name, array in feeds.items():
        tensor = httpclient.InferInput(
            name, list(array.shape), utils.np_to_triton_dtype(array.dtype)
        )
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)

    # No outputs listed: tritonclient asks for all of them, in binary.
    y = triton.infer("tiny", inputs, model_version="1").as_numpy("y")

    np.testing.assert_array_equal(y, ort_run(live[1], "tiny", feeds))


def test_vector_multivariate_model(
    triton: httpclient.InferenceServerClient, live: tuple[str, Path]
) -> None:
    x = np.random.default_rng(5).normal(size=(2, 9, 2)).astype(np.float32)
    tensor = httpclient.InferInput("x", [2, 9, 2], "FP32")
    tensor.set_data_from_numpy(x)

    y = triton.infer("multi", [tensor]).as_numpy("y")

    np.testing.assert_array_equal(y, ort_run(live[1], "multi", {"x": x}))


def test_errors_reach_the_client_as_messages(triton: httpclient.InferenceServerClient) -> None:
    tensor = httpclient.InferInput("x", [1, 4, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4, 3), np.float32))

    with pytest.raises(utils.InferenceServerException, match=r"expects \[B, T, 1\]") as info:
        triton.infer("tiny", [tensor])
    assert info.value.status() == "422"
    with pytest.raises(utils.InferenceServerException, match="not found"):
        triton.get_model_metadata("nope")


def test_repository_extension_is_refused_without_api_keys(
    triton: httpclient.InferenceServerClient,
) -> None:
    # The live server has no FORECAST_API_KEYS: tritonclient decodes the 403 and its reason.
    with pytest.raises(utils.InferenceServerException, match="FORECAST_API_KEYS") as info:
        triton.load_model("tiny")
    assert info.value.status() == "403"
    with pytest.raises(utils.InferenceServerException, match="FORECAST_API_KEYS"):
        triton.get_model_repository_index()
    assert triton.is_model_ready("tiny")
