"""Tiny ONNX forecasters that follow the repository contract, built with `onnx.helper`."""

import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from starlette.exceptions import StarletteDeprecationWarning

from service import Settings, create_app

# Starlette 1.x asks for `httpx2` under its TestClient and warns on `httpx`, which the dev extra
# installs: silence that one warning until the extra moves (pytest turns warnings into errors).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

SCALING = {"method": "standard", "mean": [1.5], "scale": [2.0]}


def build_onnx(
    n_features: int,
    horizon: int,
    units: int,
    n_masks: int,
    output: str,
    seed: int = 0,
    repeat_rows: bool = False,
) -> onnx.ModelProto:
    """y = MatMul(tanh((x + mean_T(x)) @ W1) * masks, W2) + b: each row depends on its own window
    (all of it, through the mean over time) and on its own masks, and on nothing else.

    `repeat_rows`: x has B rows and the masks B x S; tanh(...) is repeated S times per row before
    the first mask (the contract's `mc_dropout.repeat_rows`)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(n_features, units)).astype(np.float32)
    w2 = (rng.normal(size=(units, horizon)) / np.sqrt(units)).astype(np.float32)
    b = rng.normal(scale=0.1, size=(horizon,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(b, "b"),
    ]
    if n_masks:
        inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"))
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["x_mean"], axes=[1], keepdims=1),
        helper.make_node("Add", ["x", "x_mean"], ["x1"]),
        helper.make_node("MatMul", ["x1", "w1"], ["h0"]),
        helper.make_node("Tanh", ["h0"], ["h_0"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", n_features])]
    if repeat_rows and n_masks:
        nodes += _repeat_rows_nodes("h_0", "mc_mask_0", inits)
    for k in range(n_masks):
        name = f"mc_mask_{k}"
        rows = "P" if repeat_rows else "B"
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, units]))
        nodes += [
            helper.make_node("Unsqueeze", [name, "axis1"], [f"m{k}"]),
            helper.make_node(
                "Mul",
                ["h_0_repeated" if repeat_rows and k == 0 else f"h_{k}", f"m{k}"],
                [f"h_{k + 1}"],
            ),
        ]
    h = f"h_{n_masks}"
    if output == "vector":
        nodes.append(helper.make_node("ReduceMean", [h], ["h_v"], axes=[1], keepdims=0))
        h = "h_v"
        y_shape: list[Any] = ["B", horizon]
    else:
        y_shape = ["B", "T", horizon]
    nodes += [
        helper.make_node("MatMul", [h, "w2"], ["yw"]),
        helper.make_node("Add", ["yw", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _repeat_rows_nodes(h: str, mask: str, inits: list[Any]) -> list[Any]:
    """Nodes that replace `h` [B, T, U] by its rows each repeated P / B times, P = rows of `mask`."""
    for name, value in {"i0": [0], "i1": [1], "i3": [3], "one": [1], "minus1": [-1]}.items():
        inits.append(numpy_helper.from_array(np.array(value, dtype=np.int64), f"rr_{name}"))
    return [
        helper.make_node("Shape", [mask], ["rr_mask_shape"]),
        helper.make_node("Shape", [h], ["rr_h_shape"]),
        helper.make_node("Slice", ["rr_mask_shape", "rr_i0", "rr_i1"], ["rr_paths"]),
        helper.make_node("Slice", ["rr_h_shape", "rr_i0", "rr_i1"], ["rr_batch"]),
        helper.make_node("Div", ["rr_paths", "rr_batch"], ["rr_per_row"]),
        helper.make_node(
            "Concat", ["rr_one", "rr_per_row", "rr_one", "rr_one"], ["rr_grid"], axis=0
        ),
        helper.make_node("Unsqueeze", [h, "rr_i1"], ["rr_h4"]),
        helper.make_node("Expand", ["rr_h4", "rr_grid"], ["rr_h5"]),
        helper.make_node("Slice", ["rr_h_shape", "rr_i1", "rr_i3"], ["rr_tu"]),
        helper.make_node("Concat", ["rr_minus1", "rr_tu"], ["rr_shape"], axis=0),
        helper.make_node("Reshape", ["rr_h5", "rr_shape"], ["rr_out"]),
        helper.make_node("Identity", ["rr_out"], [h + "_repeated"]),
    ]


def write_model(
    root: Path,
    name: str,
    *,
    features: Sequence[str] = ("value",),
    horizon: int = 3,
    units: int = 8,
    n_masks: int = 1,
    output: str = "sequence",
    input_length: int = 12,
    min_length: int = 4,
    rate: float = 0.2,
    scaling: dict[str, Any] | None = None,
    repeat_rows: bool = False,
) -> Path:
    folder = root / name
    (folder / "1").mkdir(parents=True)
    model = build_onnx(len(features), horizon, units, n_masks, output, repeat_rows=repeat_rows)
    onnx.save(model, folder / "1" / "model.onnx")
    spec = {
        "schema_version": 1,
        "name": name,
        "version": 1,
        "architecture": "tiny",
        "description": f"test model {name}",
        "input_length": input_length,
        "min_length": min_length,
        "horizon": horizon,
        "output": output,
        "features": list(features),
        "target": 0,
        "frequency": None,
        "scaling": scaling or SCALING,
        "onnx": {
            "file": "1/model.onnx",
            "opset": 17,
            "input": {"name": "x", "dtype": "float32", "shape": [None, None, len(features)]},
            "output": {"name": "y", "dtype": "float32", "shape": [None, None, horizon]},
            "mc_dropout": {
                "method": "mask_inputs",
                "rate": rate,
                "masks": [{"name": f"mc_mask_{k}", "size": units} for k in range(n_masks)],
                "repeat_rows": repeat_rows,
            },
        },
        "metrics": {"dataset": "synthetic", "split": "validation", "mse": 0.01},
        "provenance": {"command": "tests"},
    }
    (folder / "forecaster.json").write_text(json.dumps(spec))
    return folder


def write_test_models(root: Path, multi_scaling: dict[str, Any]) -> Path:
    """`tiny`: univariate seq2seq with two MC sites; `multi`: two features, vector, no MC."""
    write_model(root, "tiny", n_masks=2)
    write_model(
        root,
        "multi",
        features=("target", "covariate"),
        output="vector",
        n_masks=0,
        scaling=multi_scaling,
    )
    return root


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return write_test_models(
        tmp_path / "models", {"method": "standard", "mean": [1.0, -1.0], "scale": [0.5, 3.0]}
    )


@pytest.fixture
def settings(models_dir: Path) -> Settings:
    return Settings(models_dir=models_dir, device="cpu")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client
