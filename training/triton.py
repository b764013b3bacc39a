"""Triton model configuration: `models/<name>/config.pbtxt`, from `forecaster.json` alone.

    python -m training.triton models/        # (re)write config.pbtxt in every model folder

The repository already has Triton's layout (`<name>/<version>/model.onnx`); this adds the config, so
`tritonserver --model-repository models/` serves the same graphs as the service's OIP v2 surface.

Batching: `max_batch_size: N` with dims that leave out the batch dimension, and `dynamic_batching`.
Every tensor of the graph has a dynamic first dimension (`x` [B, T, F], `mc_mask_i` [B, U_i], `y`
[B, T, H] or [B, H]), which is what Triton requires of an ONNX model with `max_batch_size > 0`, and it
is what the ONNX Runtime backend's own auto-complete would pick for such a graph. The alternative,
`max_batch_size: 0` with full dims `[-1, -1, F]`, is accepted too but turns the dynamic batcher off.
The time dimension stays dynamic (-1) inside the dims: Triton batches together only requests whose
T is equal, which is all that dynamic T costs. One request may carry up to N rows: MC dropout
samples ride in the batch dimension, so N bounds series x samples per request.

The mask inputs are marked `optional: true`: a client that omits them means "dropout off". Triton
then feeds nothing for them, so this works only where the graph gives a mask input a default value
(an initializer of ones under the same name); without one, ONNX Runtime refuses the request. The
service's OIP surface fills in the ones itself.

This module reads a dict and writes text: no TensorFlow, no protobuf.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.pbtxt"
SPEC_FILE = "forecaster.json"
DEFAULT_MAX_BATCH_SIZE = 1024
PLATFORM = "onnxruntime_onnx"

# numpy / ONNX dtype names in forecaster.json -> Triton's DataType enum.
DATA_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}


def config_pbtxt(spec: dict[str, Any], max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> str:
    """The Triton `ModelConfig` in protobuf text format for the model `spec` describes."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    onnx = spec["onnx"]
    n_features = len(spec["features"])
    horizon = int(spec["horizon"])
    x = onnx.get("input", {})
    y = onnx.get("output", {})
    y_default = [None, None, horizon] if spec["output"] == "sequence" else [None, horizon]
    inputs = [
        _tensor(
            x.get("name", "x"),
            x.get("dtype", "float32"),
            x.get("shape") or [None, None, n_features],
        )
    ]
    for mask in onnx.get("mc_dropout", {}).get("masks", []):
        inputs.append(_tensor(mask["name"], "float32", [None, int(mask["size"])], optional=True))
    outputs = [_tensor(y.get("name", "y"), y.get("dtype", "float32"), y.get("shape") or y_default)]

    lines = [
        "# Generated from forecaster.json by training/triton.py: regenerate it, do not edit it.",
        f"name: {_quote(spec['name'])}",
        f"platform: {_quote(PLATFORM)}",
    ]
    filename = Path(onnx.get("file", "1/model.onnx")).name
    if filename != "model.onnx":
        lines.append(f"default_model_filename: {_quote(filename)}")
    lines += [
        f"max_batch_size: {max_batch_size}",
        "version_policy: { latest: { num_versions: 1 } }",
        "input [",
        ",\n".join(inputs),
        "]",
        "output [",
        ",\n".join(outputs),
        "]",
        "dynamic_batching { }",
    ]
    return "\n".join(lines) + "\n"


def write_config_pbtxt(spec: dict[str, Any], folder: Path) -> Path:
    """Write `folder/config.pbtxt` for `spec` (the model folder, beside forecaster.json)."""
    path = Path(folder) / CONFIG_FILE
    path.write_text(config_pbtxt(spec))
    return path


def _tensor(name: str, dtype: str, shape: list[int | None], optional: bool = False) -> str:
    if dtype not in DATA_TYPES:
        raise ValueError(
            f"tensor {name!r} has dtype {dtype!r}; Triton types known: {sorted(DATA_TYPES)}"
        )
    if len(shape) < 2:
        raise ValueError(f"tensor {name!r} has shape {shape}: expected a batch dimension and more")
    # The batch dimension is left out: max_batch_size > 0 implies it.
    dims = ", ".join("-1" if d is None else str(int(d)) for d in shape[1:])
    fields = [f"name: {_quote(name)}", f"data_type: {DATA_TYPES[dtype]}", f"dims: [ {dims} ]"]
    if optional:
        fields.append("optional: true")
    return "  {\n" + "".join(f"    {f}\n" for f in fields) + "  }"


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid protobuf text-format string literal


def write_repository_configs(root: Path) -> list[Path]:
    """(Re)write config.pbtxt in every folder of `root` that holds a forecaster.json."""
    written = []
    for spec_path in sorted(Path(root).glob(f"*/{SPEC_FILE}")):
        spec = json.loads(spec_path.read_text())
        written.append(write_config_pbtxt(spec, spec_path.parent))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.triton",
        description="Write a Triton config.pbtxt into every model folder that has a forecaster.json.",
    )
    parser.add_argument("models", type=Path, help="the model repository, e.g. models/")
    args = parser.parse_args(argv)
    if not args.models.is_dir():
        print(f"error: {args.models} is not a directory", file=sys.stderr)
        return 2
    written = write_repository_configs(args.models)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"error: no {SPEC_FILE} under {args.models}/*/", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
