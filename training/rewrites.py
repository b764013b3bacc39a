"""The graph rewrites for ORT's speed, in one place: at export, and on shipped graphs.

`rewrite` runs them in order on a tf2onnx graph (each leaves graphs without its pattern alone, and
each is idempotent). The exporter checks the rewritten graph against Keras (check_parity,
check_mc); `python -m training optimize models/NAME` brings an already exported graph up to date
and checks it against its previous self before replacing it (`reoptimize`), so the shipped models
gain a new rewrite without being retrained or re-exported (their runs are not in git).

No TensorFlow here: ONNX and ORT only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from forecaster_format import SpecError, draw_masks, validate_spec
from training.errors import TrainingError
from training.onnx_conv import fold_conv1d
from training.onnx_crop import crop_receptive_field
from training.onnx_gru import native_gru
from training.onnx_head import last_step_head, output_rank
from training.onnx_mask import broadcast_masks
from training.onnx_residual import residual_4d
from training.onnx_rnn import time_major_rnn
from training.triton import CONFIG_FILE, write_config_pbtxt

# Outputs of a rewritten graph against its previous self: the bound for batched vs unbatched.
TOLERANCE = 1e-6


# In order; each leaves graphs without its pattern alone and is idempotent.
REWRITES: list[tuple[Callable[[onnx.ModelProto], tuple[onnx.ModelProto, int]], str]] = [
    (native_gru, "{} GRU loop(s) replaced by ONNX GRU nodes"),
    (fold_conv1d, "padding and bias folded into {} Conv1D node(s)"),
    (residual_4d, "{} residual Conv1D block(s) kept 4-D, channels first"),
    (time_major_rnn, "{} rewrite(s) keeping the recurrent stack time-major"),
    (last_step_head, "{} seq2seq head(s) run on the last step only (output [P, H])"),
    (broadcast_masks, "{} repeated-rows mask site(s) broadcast instead of expanded"),
    (
        crop_receptive_field,
        "residual Conv1D chain cropped to the last step's receptive field "
        "({} Slices; output [P, H])",
    ),
]


def rewrite(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """`proto` with every rewrite applied; and one line per rewrite that changed something."""
    notes = []
    for apply, note in REWRITES:
        proto, count = apply(proto)
        if count:
            notes.append(note.format(count))
    return proto, notes


def sha256(path: Path) -> str:
    """The `provenance.model_sha256` of a graph file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(proto: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def parity_feeds(spec: dict[str, Any], seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Inputs covering the shapes the service sends: 1, 3 and 64 windows; one mask row per window
    (deterministic, batched) or 20 per window (MC paths, when the graph repeats rows); the
    shortest, the usual and a longer window; masks with dropped units."""
    rng = np.random.default_rng(seed)
    length = int(spec["input_length"])
    lengths = sorted({int(spec.get("min_length") or length), length, length + 9})
    repeat = bool(spec["onnx"]["mc_dropout"].get("repeat_rows"))
    masks = spec["onnx"]["mc_dropout"]["masks"]
    rate = float(spec["onnx"]["mc_dropout"].get("rate") or 0.1)
    feeds = []
    for windows in (1, 3, 64):
        for paths in (1, 20) if repeat else (1,):
            for steps in lengths:
                x = rng.standard_normal((windows, steps, len(spec["features"]))) + 3.0
                feed = {"x": np.abs(x).astype(np.float32)}
                drawn = draw_masks(rng, windows * paths, [m["size"] for m in masks], rate)
                feed |= {mask["name"]: d for mask, d in zip(masks, drawn, strict=True)}
                feeds.append(feed)
    return feeds


def compare(before: onnx.ModelProto, after: onnx.ModelProto, spec: dict[str, Any]) -> float:
    """Max abs diff of the two graphs' outputs over `parity_feeds`; raises on a shape mismatch.
    A sequence [P, T, H] rewritten into a vector [P, H] (`last_step_head`) is compared at its last
    step, the forecast the service reads."""
    a, b = _session(before), _session(after)
    worst = 0.0
    for feed in parity_feeds(spec):
        ya, yb = a.run(None, feed)[0], b.run(None, feed)[0]
        if ya.ndim == 3 and yb.ndim == 2:
            ya = ya[:, -1, :]
        if ya.shape != yb.shape:
            raise TrainingError(f"rewritten graph's output is {yb.shape}, was {ya.shape}")
        worst = max(worst, float(np.max(np.abs(ya.astype(np.float64) - yb))))
    return worst


def reoptimize(folder: Path) -> str:
    """Apply `rewrite` to the graph of a repository folder (models/NAME), check it against the
    graph it replaces, and write it with its new sha256 in forecaster.json, validated as the
    service reads it (forecaster_format); nothing is written unless all of it passes. Returns a
    summary."""
    spec_path = folder / "forecaster.json"
    if not spec_path.is_file():
        raise TrainingError(f"{folder} is not a model folder: no forecaster.json")
    spec = json.loads(spec_path.read_text())
    onnx_path = folder / spec["onnx"]["file"]
    if not onnx_path.is_file():
        raise TrainingError(f"{onnx_path} is missing")
    before = onnx.load(str(onnx_path))
    after, notes = rewrite(before)
    if not notes:
        return f"{folder.name}: nothing to rewrite"
    onnx.checker.check_model(after)
    diff = compare(before, after, spec)
    if diff > TOLERANCE:
        raise TrainingError(
            f"{folder.name}: rewritten graph differs by {diff:.2e} (> {TOLERANCE:g}); left as it is"
        )
    staging = onnx_path.with_suffix(".onnx.tmp")
    onnx.save(after, str(staging))
    provenance = spec.setdefault("provenance", {})
    provenance["model_sha256"] = sha256(staging)
    provenance.setdefault("rewrites", []).append(
        {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "changes": notes,
            "max_abs_diff": diff,
            "nodes": [len(before.graph.node), len(after.graph.node)],
        }
    )
    if output_rank(after) == 2 and spec["output"] == "sequence":  # last_step_head, crop
        spec["output"] = "vector"
        spec["onnx"]["output"]["shape"] = [None, spec["horizon"]]
    try:
        validate_spec(spec)
    except SpecError as exc:
        staging.unlink()
        raise TrainingError(f"{folder.name}: {exc}; left as it is") from None
    os.replace(staging, onnx_path)
    spec_staging = spec_path.with_suffix(".json.tmp")
    spec_staging.write_text(json.dumps(spec, indent=2) + "\n")
    os.replace(spec_staging, spec_path)
    if (folder / CONFIG_FILE).is_file():  # Triton's config follows forecaster.json
        write_config_pbtxt(spec, folder)
    return (
        f"{folder.name}: {'; '.join(notes)}; {len(before.graph.node)} -> "
        f"{len(after.graph.node)} nodes; outputs vs the previous graph: max abs diff {diff:.1e}"
    )
