"""training.triton: config.pbtxt that Triton's own ModelConfig protobuf accepts (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.triton import config_pbtxt, main, write_config_pbtxt

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

SHIPPED_ROOT = Path(__file__).resolve().parents[2] / "models"
SHIPPED = ["lstm", "gru", "wavenet"]


def make_spec(
    name: str = "tiny", output: str = "sequence", n_features: int = 1, masks: int = 2
) -> dict[str, Any]:
    horizon = 3
    return {
        "schema_version": 1,
        "name": name,
        "version": 1,
        "horizon": horizon,
        "output": output,
        "features": [f"f{i}" for i in range(n_features)],
        "onnx": {
            "file": "1/model.onnx",
            "input": {"name": "x", "dtype": "float32", "shape": [None, None, n_features]},
            "output": {
                "name": "y",
                "dtype": "float32",
                "shape": [None, None, horizon] if output == "sequence" else [None, horizon],
            },
            "mc_dropout": {
                "method": "mask_inputs",
                "rate": 0.1,
                "masks": [{"name": f"mc_mask_{k}", "size": 8 + k} for k in range(masks)],
            },
        },
    }


def parse(text: str) -> Any:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_sequence_model_config_parses_with_batch_left_out_of_dims() -> None:
    config = parse(config_pbtxt(make_spec()))

    assert config.name == "tiny"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size > 0
    assert config.HasField("dynamic_batching")
    assert config.version_policy.latest.num_versions == 1
    x, *masks = config.input
    assert (x.name, x.data_type, list(x.dims), x.optional) == (
        "x",
        model_config_pb2.TYPE_FP32,
        [-1, 1],
        False,
    )
    assert [(m.name, list(m.dims), m.optional) for m in masks] == [
        ("mc_mask_0", [8], True),
        ("mc_mask_1", [9], True),
    ]
    (y,) = config.output
    assert (y.name, y.data_type, list(y.dims)) == ("y", model_config_pb2.TYPE_FP32, [-1, 3])


def test_vector_multivariate_model_without_masks() -> None:
    config = parse(config_pbtxt(make_spec("multi", output="vector", n_features=2, masks=0)))

    assert [(i.name, list(i.dims)) for i in config.input] == [("x", [-1, 2])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("y", [3])]


def test_write_config_pbtxt_writes_beside_forecaster_json(tmp_path: Path) -> None:
    path = write_config_pbtxt(make_spec(), tmp_path)

    assert path == tmp_path / "config.pbtxt"
    assert parse(path.read_text()).name == "tiny"


def test_cli_regenerates_every_model_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "forecaster.json").write_text(json.dumps(make_spec(name)))
    (tmp_path / "not-a-model").mkdir()

    assert main([str(tmp_path)]) == 0

    assert sorted(p.parent.name for p in tmp_path.glob("*/config.pbtxt")) == ["a", "b"]
    assert parse((tmp_path / "b" / "config.pbtxt").read_text()).name == "b"
    assert "wrote" in capsys.readouterr().out


def test_cli_refuses_a_folder_without_models(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 2


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_config_matches_its_spec(name: str) -> None:
    spec_path = SHIPPED_ROOT / name / "forecaster.json"
    if not spec_path.is_file():
        pytest.skip(f"models/{name} has not been trained and exported")
    spec = json.loads(spec_path.read_text())

    config = parse(config_pbtxt(spec))

    assert config.name == name
    assert [i.name for i in config.input] == ["x"] + [
        m["name"] for m in spec["onnx"]["mc_dropout"]["masks"]
    ]
    assert list(config.input[0].dims) == [-1, len(spec["features"])]
    shipped = SHIPPED_ROOT / name / "config.pbtxt"
    if shipped.is_file():  # what is on disk is what the generator writes today
        assert parse(shipped.read_text()) == config
