"""The GRU loops of an exported graph become native `GRU` nodes with the same outputs (no TF needed)."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from training.onnx_gru import native_gru

MODELS = Path(__file__).resolve().parents[2] / "models"
# The shipped gru as tf2onnx wrote it, before the exporter replaced its loops (gru_loops.json: its
# forecaster.json, trimmed to what the test reads).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def feeds(spec: dict, windows: int, paths: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_features = len(spec["features"])
    x = np.abs(rng.standard_normal((windows, length, n_features)) + 3.0).astype(np.float32)
    out = {"x": x}
    rows = paths if spec["onnx"]["mc_dropout"].get("repeat_rows") else windows
    for mask in spec["onnx"]["mc_dropout"]["masks"]:
        out[mask["name"]] = ((rng.random((rows, mask["size"])) < 0.9) / 0.9).astype(np.float32)
    return out


CASES = [
    (FIXTURES / "gru_loops.onnx", FIXTURES / "gru_loops.json", 2),
    (MODELS / "gru" / "1" / "model.onnx", MODELS / "gru" / "forecaster.json", 0),  # rewritten
    (MODELS / "lstm" / "1" / "model.onnx", MODELS / "lstm" / "forecaster.json", 0),
    (MODELS / "wavenet" / "1" / "model.onnx", MODELS / "wavenet" / "forecaster.json", 0),
]


@pytest.mark.parametrize(
    ("path", "spec_path", "loops"), CASES, ids=["loops", "gru", "lstm", "wavenet"]
)
def test_gru_loops_become_gru_nodes_with_the_same_outputs(
    path: Path, spec_path: Path, loops: int
) -> None:
    spec = json.loads(spec_path.read_text())
    original = onnx.load(path)
    before = [n.op_type for n in original.graph.node]

    rewritten, replaced = native_gru(original)

    onnx.checker.check_model(rewritten)
    after = [n.op_type for n in rewritten.graph.node]
    gained = after.count("GRU") - before.count("GRU")
    assert replaced == before.count("Loop") - after.count("Loop") == gained == loops
    if loops == 0:
        assert after == before
        return
    a, b = session(original), session(rewritten)
    length = spec["input_length"]
    for windows, paths, steps in [(3, 3, length), (2, 6, length), (4, 4, length + 9)]:
        inputs = feeds(spec, windows, paths, steps, seed=windows)
        expected = a.run(None, inputs)[0]
        got = b.run(None, inputs)[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
