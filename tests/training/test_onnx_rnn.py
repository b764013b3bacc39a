"""Recurrent stacks kept time-major across the MC-dropout sites: same outputs bit for bit, fewer
copies; and `python -m training optimize` on a repository folder (no TF needed)."""

import collections
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.training.test_onnx_gru import session
from training.cli import main
from training.errors import TrainingError
from training.onnx_gru import native_gru
from training.onnx_rnn import time_major_rnn
from training.rewrites import TOLERANCE, compare, parity_feeds, reoptimize

MODELS = Path(__file__).resolve().parents[2] / "models"
# The shipped lstm as the exporter wrote it before this rewrite existed (spec: models/lstm).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def ops(model: onnx.ModelProto) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in model.graph.node)


def assert_same_outputs(a: onnx.ModelProto, b: onnx.ModelProto, spec: dict) -> None:
    first, second = session(a), session(b)
    for feed in parity_feeds(spec, seed=3):
        np.testing.assert_array_equal(second.run(None, feed)[0], first.run(None, feed)[0])


def test_lstm_stack_goes_time_major_with_identical_outputs() -> None:
    spec = json.loads((MODELS / "lstm" / "forecaster.json").read_text())
    original = onnx.load(FIXTURES / "lstm_batch_major.onnx")

    rewritten, count = time_major_rnn(original)

    onnx.checker.check_model(rewritten, full_check=True)
    # 4 zero initial states omitted, the detour between the layers, the seq2seq head
    assert count == 6
    assert ops(original)["Transpose"] == 4
    assert ops(rewritten)["Transpose"] == 2  # the input's, and the head's [T, P, 10] output
    assert ops(rewritten)["LSTM"] == 2
    for node in rewritten.graph.node:
        if node.op_type == "LSTM":
            assert len(node.input) == 4  # X, W, R, B: no sequence lengths, no initial states
    assert_same_outputs(original, rewritten, spec)


def test_gru_stack_after_the_loop_rewrite_goes_time_major_with_identical_outputs() -> None:
    spec = json.loads((FIXTURES / "gru_loops.json").read_text())
    loops = onnx.load(FIXTURES / "gru_loops.onnx")
    native, replaced = native_gru(loops)

    rewritten, count = time_major_rnn(native)

    assert replaced == 2
    assert count == 2  # between the layers, the head (native_gru leaves no initial states)
    assert ops(native)["Transpose"] - ops(rewritten)["Transpose"] == 2
    assert_same_outputs(native, rewritten, spec)
    assert compare(loops, rewritten, spec) <= TOLERANCE  # the loop and the GRU kernel round apart


@pytest.mark.parametrize("name", ["lstm", "gru", "cta_rail", "cta_rail_multi", "wavenet"])
def test_shipped_graphs_are_already_rewritten(name: str) -> None:
    shipped = onnx.load(MODELS / name / "1" / "model.onnx")

    again, count = time_major_rnn(shipped)

    assert count == 0
    assert again.SerializeToString() == shipped.SerializeToString()


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "lstm"
    (folder / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "lstm_batch_major.onnx", folder / "1" / "model.onnx")
    spec = json.loads((MODELS / "lstm" / "forecaster.json").read_text())
    spec["provenance"].pop("rewrites", None)
    spec["output"] = "sequence"  # as the exporter wrote it then
    spec["onnx"]["output"]["shape"] = [None, None, spec["horizon"]]
    (folder / "forecaster.json").write_text(json.dumps(spec, indent=2) + "\n")
    return folder


def test_optimize_rewrites_a_folder_checks_it_and_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_folder(tmp_path)
    before = onnx.load(folder / "1" / "model.onnx")

    assert main(["optimize", str(folder)]) == 0

    out = capsys.readouterr().out
    assert "optimize: lstm: 6 rewrite(s)" in out
    assert "max abs diff 0.0e+00" in out
    after = onnx.load(folder / "1" / "model.onnx")
    spec = json.loads((folder / "forecaster.json").read_text())
    digest = hashlib.sha256((folder / "1" / "model.onnx").read_bytes()).hexdigest()
    assert spec["provenance"]["model_sha256"] == digest
    assert spec["provenance"]["rewrites"][-1]["nodes"] == [55, len(after.graph.node)]
    assert spec["provenance"]["rewrites"][-1]["max_abs_diff"] == 0.0
    assert compare(before, after, spec) == 0.0
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx"]  # no staging left
    # A second run finds nothing to do and writes nothing.
    assert reoptimize(folder) == "lstm: nothing to rewrite"
    assert json.loads((folder / "forecaster.json").read_text()) == spec


def test_optimize_refuses_a_rewrite_that_changes_the_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = model_folder(tmp_path)
    graph_bytes = (folder / "1" / "model.onnx").read_bytes()
    spec_text = (folder / "forecaster.json").read_text()

    def broken(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
        proto, _ = time_major_rnn(proto)
        for init in proto.graph.initializer:
            if init.name.endswith("ReadVariableOp:0") and len(init.dims) == 1:  # the head's bias
                bias = onnx.numpy_helper.to_array(init) + np.float32(1e-3)
                init.CopyFrom(onnx.numpy_helper.from_array(bias, init.name))
        return proto, ["a wrong rewrite"]

    monkeypatch.setattr("training.rewrites.rewrite", broken)

    with pytest.raises(TrainingError, match=f"differs by 1.00e-03 \\(> {TOLERANCE:g}\\)"):
        reoptimize(folder)

    assert (folder / "1" / "model.onnx").read_bytes() == graph_bytes
    assert (folder / "forecaster.json").read_text() == spec_text


def test_optimize_refuses_to_write_an_invalid_forecaster_json(tmp_path: Path) -> None:
    """The rewritten spec is validated as the service reads it before anything is replaced."""
    folder = model_folder(tmp_path)
    spec = json.loads((folder / "forecaster.json").read_text())
    spec["min_length"] = spec["input_length"] + 1
    (folder / "forecaster.json").write_text(json.dumps(spec, indent=2) + "\n")
    graph_bytes = (folder / "1" / "model.onnx").read_bytes()
    spec_text = (folder / "forecaster.json").read_text()

    with pytest.raises(TrainingError, match=r"lstm: forecaster\.json is invalid: .*min_length"):
        reoptimize(folder)

    assert (folder / "1" / "model.onnx").read_bytes() == graph_bytes
    assert (folder / "forecaster.json").read_text() == spec_text
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx"]  # no staging left


def test_optimize_names_a_folder_that_is_not_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["optimize", str(tmp_path)]) == 2
    assert f"{tmp_path} is not a model folder: no forecaster.json" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.iterdir() if p.is_dir()))
def test_shipped_models_record_the_sha256_of_their_graph(name: str) -> None:
    spec = json.loads((MODELS / name / "forecaster.json").read_text())
    graph = MODELS / name / spec["onnx"]["file"]
    assert spec["provenance"]["model_sha256"] == hashlib.sha256(graph.read_bytes()).hexdigest()
