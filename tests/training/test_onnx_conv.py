"""Conv1D padding and bias folded into the `Conv` node: same outputs, fewer nodes (no TF needed)."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.training.test_onnx_gru import feeds, session
from training.onnx_conv import fold_conv1d

MODELS = Path(__file__).resolve().parents[2] / "models"
# The shipped wavenet as tf2onnx wrote it, before the exporter folded its convolutions.
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_padding_and_bias_fold_into_the_convolutions_with_the_same_outputs() -> None:
    spec = json.loads((FIXTURES / "wavenet_conv1d.json").read_text())
    original = onnx.load(FIXTURES / "wavenet_conv1d.onnx")
    before = [n.op_type for n in original.graph.node]

    folded, count = fold_conv1d(original)

    onnx.checker.check_model(folded)
    after = [n.op_type for n in folded.graph.node]
    # Ten causal convolutions (the 1x1 embedding has no padding and reshapes instead of unsqueezing)
    assert count == 10
    assert after.count("Conv") == before.count("Conv")
    assert before.count("Pad") == 10
    assert after.count("Pad") == 0
    assert before.count("Add") - after.count("Add") == 10  # the biases; the residual adds stay
    a, b = session(original), session(folded)
    length = spec["input_length"]
    for windows, paths, steps in [(3, 3, length), (2, 6, length), (4, 4, length + 9), (2, 2, 7)]:
        inputs = feeds(spec, windows, paths, steps, seed=windows)
        np.testing.assert_allclose(b.run(None, inputs)[0], a.run(None, inputs)[0], atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_graphs_without_the_pattern_are_left_alone(name: str) -> None:
    original = onnx.load(MODELS / name / "1" / "model.onnx")

    folded, count = fold_conv1d(original)

    assert count == 0
    assert folded.SerializeToString() == original.SerializeToString()
