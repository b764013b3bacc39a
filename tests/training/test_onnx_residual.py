"""WaveNet's residual Conv1D blocks kept 4-D and channels first: same outputs bit for bit, one
transpose instead of eleven (no TF needed)."""

import collections
import json
from pathlib import Path

import onnx
import pytest

from tests.training.test_onnx_rnn import assert_same_outputs
from training.onnx_conv import fold_conv1d
from training.onnx_residual import residual_4d
from training.rewrites import TOLERANCE, compare

MODELS = Path(__file__).resolve().parents[2] / "models"
# The shipped wavenet as tf2onnx wrote it (wavenet_conv1d.json: its forecaster.json, trimmed).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def ops(model: onnx.ModelProto) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in model.graph.node)


def test_residual_blocks_stay_4d_with_identical_outputs() -> None:
    spec = json.loads((FIXTURES / "wavenet_conv1d.json").read_text())
    original = onnx.load(FIXTURES / "wavenet_conv1d.onnx")
    folded, _ = fold_conv1d(original)

    rewritten, count = residual_4d(folded)

    onnx.checker.check_model(rewritten, full_check=True)
    assert count == 10  # five blocks before the MC-dropout site, five after
    before, after = ops(folded), ops(rewritten)
    assert before["Transpose"] == 11
    assert after["Transpose"] == 1  # [P, C, T] -> [P, T, C] once, for the head
    assert after["Conv"] == before["Conv"]
    assert after["Relu"] == before["Relu"]
    assert after["Squeeze"] == 1
    assert_same_outputs(folded, rewritten, spec)
    assert compare(original, rewritten, spec) <= TOLERANCE


@pytest.mark.parametrize("name", ["lstm", "gru", "cta_rail", "wavenet"])
def test_graphs_without_the_pattern_or_already_rewritten_are_left_alone(name: str) -> None:
    shipped = onnx.load(MODELS / name / "1" / "model.onnx")

    again, count = residual_4d(shipped)

    assert count == 0
    assert again.SerializeToString() == shipped.SerializeToString()
