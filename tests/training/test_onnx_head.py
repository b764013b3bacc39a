"""A seq2seq head run on the last step only: the forecast bit for bit, a [P, H] output, the model's
`output` turned "vector" by `python -m training optimize` (no TF needed)."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.training.test_onnx_gru import session
from training.cli import main
from training.onnx_gru import native_gru
from training.onnx_head import last_step_head, output_rank
from training.onnx_rnn import time_major_rnn
from training.rewrites import parity_feeds, rewrite
from training.triton import write_config_pbtxt

MODELS = Path(__file__).resolve().parents[2] / "models"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def assert_last_step_identical(
    sequence: onnx.ModelProto, vector: onnx.ModelProto, spec: dict
) -> None:
    first, second = session(sequence), session(vector)
    for feed in parity_feeds(spec, seed=5):
        y_sequence, y_vector = first.run(None, feed)[0], second.run(None, feed)[0]
        assert y_sequence.ndim == 3
        assert y_vector.shape == (len(y_sequence), y_sequence.shape[2])
        np.testing.assert_array_equal(y_vector, y_sequence[:, -1, :])


def recurrent(model: onnx.ModelProto) -> onnx.NodeProto:
    return [n for n in model.graph.node if n.op_type in ("LSTM", "GRU")][-1]


def lstm_spec() -> dict:
    spec = json.loads((MODELS / "lstm" / "forecaster.json").read_text())
    spec["output"] = "sequence"  # as the exporter wrote it before this rewrite
    spec["onnx"]["output"]["shape"] = [None, None, spec["horizon"]]
    return spec


def test_lstm_head_runs_on_the_last_step_with_the_same_forecast() -> None:
    sequence, _ = time_major_rnn(onnx.load(FIXTURES / "lstm_batch_major.onnx"))

    vector, count = last_step_head(sequence)

    onnx.checker.check_model(vector, full_check=True)
    assert count == 1
    assert (output_rank(sequence), output_rank(vector)) == (3, 2)
    dims = vector.graph.output[0].type.tensor_type.shape.dim
    assert dims[1].dim_value == 10
    assert recurrent(vector).output[0] == ""  # the last layer no longer writes Y [T, 1, P, U]
    assert recurrent(vector).output[1]  # but Y_h [1, P, U]
    assert "Transpose" not in [n.op_type for n in vector.graph.node[-4:]]
    assert_last_step_identical(sequence, vector, lstm_spec())
    again, count = last_step_head(vector)
    assert count == 0
    assert again.SerializeToString() == vector.SerializeToString()


def test_gru_head_adds_the_state_output_the_native_node_left_out() -> None:
    spec = json.loads((FIXTURES / "gru_loops.json").read_text())
    native, _ = native_gru(onnx.load(FIXTURES / "gru_loops.onnx"))
    sequence, _ = time_major_rnn(native)
    assert len(recurrent(sequence).output) == 1

    vector, count = last_step_head(sequence)

    assert count == 1
    assert list(recurrent(vector).output) == ["", "last_step_head_state"]
    assert_last_step_identical(sequence, vector, spec)


def test_a_graph_without_the_pattern_is_left_alone() -> None:
    wavenet = onnx.load(FIXTURES / "wavenet_conv1d.onnx")  # its head is a Conv1D's MatMul
    batch_major = onnx.load(FIXTURES / "lstm_batch_major.onnx")  # before time_major_rnn

    for model in (wavenet, batch_major):
        again, count = last_step_head(model)
        assert count == 0
        assert again.SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.iterdir() if p.is_dir()))
def test_shipped_graphs_have_every_rewrite(name: str) -> None:
    shipped = onnx.load(MODELS / name / "1" / "model.onnx")
    spec = json.loads((MODELS / name / "forecaster.json").read_text())

    again, notes = rewrite(shipped)

    assert notes == []
    assert again.SerializeToString() == shipped.SerializeToString()
    assert output_rank(shipped) == (3 if spec["output"] == "sequence" else 2)


def test_optimize_turns_a_sequence_model_into_a_vector_one_with_its_triton_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "lstm"
    (folder / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "lstm_batch_major.onnx", folder / "1" / "model.onnx")
    spec = lstm_spec()
    (folder / "forecaster.json").write_text(json.dumps(spec, indent=2) + "\n")
    write_config_pbtxt(spec, folder)
    assert "dims: [ -1, 10 ]" in (folder / "config.pbtxt").read_text()

    assert main(["optimize", str(folder)]) == 0

    out = capsys.readouterr().out
    assert "1 seq2seq head(s) run on the last step only (output [P, H])" in out
    assert "max abs diff 0.0e+00" in out  # the sequence's last step against the vector
    spec = json.loads((folder / "forecaster.json").read_text())
    assert spec["output"] == "vector"
    assert spec["onnx"]["output"]["shape"] == [None, 10]
    assert output_rank(onnx.load(folder / "1" / "model.onnx")) == 2
    config = (folder / "config.pbtxt").read_text()
    assert "dims: [ 10 ]" in config
    assert "dims: [ -1, 10 ]" not in config
