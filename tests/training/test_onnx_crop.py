"""WaveNet's residual chain cropped to its last step's receptive field: the forecast bit for bit
(windows shorter and longer than the crops included), a [P, H] output (no TF needed)."""

import collections
import json
from pathlib import Path
from typing import Any

import onnx
import pytest

from tests.training.test_onnx_head import assert_last_step_identical
from training.onnx_conv import fold_conv1d
from training.onnx_crop import crop_receptive_field
from training.onnx_head import output_rank
from training.onnx_residual import residual_4d

MODELS = Path(__file__).resolve().parents[2] / "models"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The fixture's blocks: kernel 2, dilations 1..16 twice, the MC-dropout site before the sixth.
DILATIONS = [1, 2, 4, 8, 16, 1, 2, 4, 8, 16]


def wavenet_4d() -> tuple[onnx.ModelProto, dict[str, Any]]:
    spec = json.loads((FIXTURES / "wavenet_conv1d.json").read_text())
    folded, _ = fold_conv1d(onnx.load(FIXTURES / "wavenet_conv1d.onnx"))
    model, count = residual_4d(folded)
    assert count == 10
    return model, spec


def crops(model: onnx.ModelProto) -> list[int]:
    """The steps each inserted Slice keeps, in graph order."""
    starts = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [
        -int(starts[n.input[1]][0])
        for n in model.graph.node
        if n.op_type == "Slice" and n.name.startswith("crop")
    ]


def needs() -> list[int]:
    """Steps of each block's input the last step reads, first block first; then the head's 1."""
    need, out = 1, list[int]()
    for d in reversed(DILATIONS):
        need += d
        out.insert(0, need)
    return [*out, 1]


def test_the_chain_is_cropped_to_the_receptive_field_with_the_same_forecast() -> None:
    model, spec = wavenet_4d()

    cropped, count = crop_receptive_field(model)

    onnx.checker.check_model(cropped, full_check=True)
    assert count == 6  # the five blocks after the site (needs 32..17 < 40) and the head
    assert crops(cropped) == [n for n in needs() if n < 40]
    assert (output_rank(model), output_rank(cropped)) == (3, 2)
    assert cropped.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10
    before = collections.Counter(n.op_type for n in model.graph.node)
    after = collections.Counter(n.op_type for n in cropped.graph.node)
    assert after["Conv"] == before["Conv"]
    assert after["Relu"] == before["Relu"]
    # parity_feeds: windows of 20 (shorter than most crops), 50 and 59 steps; 1, 20 MC paths
    assert_last_step_identical(model, cropped, spec)

    again, count = crop_receptive_field(cropped)
    assert count == 0
    assert again.SerializeToString() == cropped.SerializeToString()


def test_cropping_every_block_keeps_the_forecast() -> None:
    model, spec = wavenet_4d()

    cropped, count = crop_receptive_field(model, min_steps=1000)

    assert count == 11
    assert crops(cropped) == needs()  # 63 (the receptive field) down to 1
    assert_last_step_identical(model, cropped, spec)


def test_a_threshold_below_every_need_leaves_the_graph_alone() -> None:
    model, _ = wavenet_4d()

    again, count = crop_receptive_field(model, min_steps=2)

    assert count == 0
    assert again.SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("name", ["lstm", "gru", "cta_rail", "wavenet_conv1d"])
def test_graphs_without_the_pattern_are_left_alone(name: str) -> None:
    path = MODELS / name / "1" / "model.onnx"
    model = onnx.load(FIXTURES / f"{name}.onnx" if name == "wavenet_conv1d" else path)

    again, count = crop_receptive_field(model)

    assert count == 0
    assert again.SerializeToString() == model.SerializeToString()
