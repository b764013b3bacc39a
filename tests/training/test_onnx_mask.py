"""Repeated-rows dropout masks applied by broadcasting instead of an expanded copy: the same
outputs bit for bit, one fewer pass over [T, P, U] (no TF needed)."""

import json
from pathlib import Path

import numpy as np
import onnx

from tests.training.test_onnx_gru import session
from training.onnx_gru import native_gru
from training.onnx_mask import broadcast_masks
from training.onnx_rnn import time_major_rnn
from training.rewrites import parity_feeds

MODELS = Path(__file__).resolve().parents[2] / "models"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def op_count(model: onnx.ModelProto, op: str) -> int:
    return sum(n.op_type == op for n in model.graph.node)


def assert_same_outputs(a: onnx.ModelProto, b: onnx.ModelProto, spec: dict) -> None:
    first, second = session(a), session(b)
    for feed in parity_feeds(spec, seed=9):  # 1, 3 and 64 windows; 1 or 20 mask rows per window
        np.testing.assert_array_equal(second.run(None, feed)[0], first.run(None, feed)[0])


def test_lstm_mask_site_broadcasts_with_identical_outputs() -> None:
    spec = json.loads((MODELS / "lstm" / "forecaster.json").read_text())
    expanded, _ = time_major_rnn(onnx.load(FIXTURES / "lstm_batch_major.onnx"))
    assert op_count(expanded, "Expand") == 1

    broadcast, count = broadcast_masks(expanded)

    onnx.checker.check_model(broadcast, full_check=True)
    assert count == 1
    assert op_count(broadcast, "Expand") == 0
    assert_same_outputs(expanded, broadcast, spec)
    again, count = broadcast_masks(broadcast)
    assert count == 0
    assert again.SerializeToString() == broadcast.SerializeToString()


def test_gru_mask_site_broadcasts_with_identical_outputs() -> None:
    spec = json.loads((FIXTURES / "gru_loops.json").read_text())
    expanded, _ = time_major_rnn(native_gru(onnx.load(FIXTURES / "gru_loops.onnx"))[0])

    broadcast, count = broadcast_masks(expanded)

    assert count == 1
    assert op_count(broadcast, "Expand") == 0
    assert_same_outputs(expanded, broadcast, spec)


def test_other_graphs_are_left_alone() -> None:
    # WaveNet repeats its rows channels-first, before a Conv; the batch-major LSTM's Expand feeds
    # a Transpose, not a recurrent node.
    for name in ("wavenet_conv1d.onnx", "lstm_batch_major.onnx"):
        model = onnx.load(FIXTURES / name)
        again, count = broadcast_masks(model)
        assert count == 0
        assert again.SerializeToString() == model.SerializeToString()
