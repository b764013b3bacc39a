"""Crop a causal residual Conv1D chain to what its last step sees: the WaveNet's forecast only.

A seq2seq WaveNet computes every block at every time step, [P, T, H] out, and the service reads
only `y[:, -1, :]` (docs/model-repository.md). After `residual_4d` each block is

    h -> Conv(kernel [1, k], dilation [1, d], left pad (k - 1) d) -> Relu -> Add(h, .) -> h'

(across the MC-dropout site too: `RepeatRows` and the mask work step by step), then the head
(Squeeze, Transpose, the mask, a `MatMul` per step). Step t of h' reads steps t and t - d of h and
nothing else, so the last `n` steps of h' need only the last `n + (k - 1) d` steps of h. Walking
back from the head's last step (n = 1) this rewrite inserts, before every block whose need is
below `min_steps`,

    Slice(h, starts=[-need], axes=[3])

and Slice(stream, -1) before the head, whose output becomes [P, H] (a Squeeze of the one step
left). The first (k - 1) d steps of a cropped block's output see the left padding instead of the
steps cut away: wrong, and cut away by the next block's Slice (its need is this block's need minus
(k - 1) d), so every step that reaches the forecast is computed from the same operands by the same
kernels as before. A window shorter than a need is not cut at all (Slice clamps) and the padding
is then the original's. Outputs compared with the graph before (tests/training/test_onnx_crop.py;
`rewrites.compare` when the shipped models are rewritten).

Blocks whose need is `min_steps` or more are left whole: a `Slice` between two convolutions
takes the stream out of ORT's blocked (NCHWc) layout and back, which costs more than the steps it
saves once they are few (measured, docs/performance.md).

Only that exact pattern is rewritten (kernel [1, k], stride 1, causal left pads, the stream read
by nothing but its block, the MC-dropout site and shape reads; a head of step-wise nodes up to
the graph's only output, rank 3); anything else is left as it is. The model's `output` becomes
"vector" (`reoptimize`, the exporter), as after `last_step_head`.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.onnx_graph import Graph, attrs, insert_before
from training.onnx_head import as_vector

PREFIX = "crop"
# Below this many steps a block is cropped (module docstring); the shipped WaveNet reads 50.
MIN_STEPS = 40
# Nodes between the last block and the output that compute step by step (or only read shapes).
HEAD_OPS = {"Squeeze", "Transpose", "Mul", "Add", "MatMul", "Reshape", "Shape", "Cast", "Gather"}
HEAD_OPS |= {"Concat", "Unsqueeze"}
# Nodes between two blocks: the MC-dropout site (RepeatRows, the mask) and its shape reads.
SITE_OPS = {"Mul", "Reshape", "Expand", "Unsqueeze", "Shape", "Div", "Concat"}
TIME = 3  # the stream is [N, C, 1, T]


def _block(g: Graph, stream: str) -> tuple[onnx.NodeProto, str, int] | None:
    """(the Conv, the block's input, its span (k - 1) d) if `stream` is `Add(h, Relu(Conv(h)))`."""
    add = g.made_by(stream, "Add")
    if add is None or len(add.input) != 2:
        return None
    for i, name in enumerate(add.input):
        relu = g.made_by(name, "Relu")
        conv = None if relu is None else g.made_by(relu.input[0], "Conv")
        if relu is None or conv is None or conv.input[0] != add.input[1 - i]:
            continue
        if g.consumers.get(name) != [add] or g.consumers.get(conv.output[0]) != [relu]:
            return None
        a = attrs(conv)
        kernel, dilations = list(a.get("kernel_shape", [])), list(a.get("dilations", [1, 1]))
        if len(kernel) != 2 or kernel[0] != 1 or list(a.get("strides", [1, 1])) != [1, 1]:
            return None
        span = (kernel[1] - 1) * dilations[1]
        if list(a.get("pads", [0, 0, 0, 0])) != [0, span, 0, 0] or int(a.get("group", 1)) != 1:
            return None
        return conv, conv.input[0], span
    return None


def _site_stream(g: Graph, block_input: str) -> str | None:
    """The stream a block's input comes from: itself, or the one before its MC-dropout site."""
    if g.made_by(block_input, "Add") is not None or g.producers.get(block_input) is None:
        return block_input
    node = g.producers[block_input]
    if node.op_type not in SITE_OPS:
        return block_input
    # Mul(RepeatRows(h), mask) or Mul(h, mask): follow the operand that is not the mask.
    while node is not None and node.op_type in SITE_OPS - {"Shape", "Div", "Concat"}:
        data = [n for n in node.input[:1] if n]
        if node.op_type == "Mul":
            data = [n for n in node.input if not _from_inputs(g, n)]
        if len(data) != 1:
            return None
        if g.made_by(data[0], "Add") is not None:
            return str(data[0])
        node = g.producers.get(data[0])
    return None


def _from_inputs(g: Graph, name: str) -> bool:
    """Whether `name` is computed from graph inputs and constants only through Unsqueeze/Reshape
    (an MC-dropout mask, viewed)."""
    while name not in g.inputs:
        node = g.producers.get(name)
        if node is None or node.op_type not in ("Unsqueeze", "Reshape"):
            return False
        name = node.input[0]
    return True


def _reads_x(g: Graph, tensor: str) -> bool:
    """Whether `tensor`'s values (not only its shape) depend on the graph input `x`."""
    frontier, seen = [tensor], {tensor}
    while frontier:
        name = frontier.pop()
        if name == "x":
            return True
        node = g.producers.get(name)
        if node is None or node.op_type == "Shape":
            continue
        for parent in node.input:
            if parent and parent not in seen:
                seen.add(parent)
                frontier.append(parent)
    return False


def _head_ok(g: Graph, stream: str, y: str) -> bool:
    """Every node from `stream` to the output `y` is a step-wise head node, and `y` is reached."""
    frontier, reached = [stream], {stream}
    while frontier:
        for node in g.consumers.get(frontier.pop(), []):
            if node.op_type not in HEAD_OPS:
                return False
            if node.op_type == "Shape":
                continue
            if node.op_type in {"Add", "Mul", "MatMul", "Concat"} and any(
                i not in reached and _reads_x(g, i) for i in node.input
            ):  # a per-step operand from the window (InstanceNorm's location): not step-wise
                return False
            fresh = [o for o in node.output if o not in reached]
            reached.update(fresh)
            frontier.extend(fresh)
    return y in reached


def _rewrite(g: Graph, min_steps: int) -> int:
    """The number of Slices inserted (the head's included); 0 if the graph is left alone."""
    if len(g.graph.output) != 1:
        return 0
    y = g.graph.output[0]
    if len(y.type.tensor_type.shape.dim) != 3:
        return 0
    # The last block: its output is read by the head alone.
    last = None
    for node in g.graph.node:
        if node.op_type == "Squeeze" and g.axes(node) in ([2], [-2]) and _block(g, node.input[0]):
            last = node.input[0]
    if last is None or not _head_ok(g, last, y.name):
        return 0
    crops: list[tuple[str, int]] = [(last, 1)]
    need, stream = 1, last
    while (block := _block(g, stream)) is not None:
        conv, block_input, span = block
        before = _site_stream(g, block_input)
        if before is None:
            return 0
        need += span
        add, readers = g.producers[stream], g.consumers.get(before, [])
        if before == block_input:  # read by its block alone
            if any(n is not conv and n is not add for n in readers):
                return 0
        elif any(n.op_type not in SITE_OPS for n in readers):  # by the MC-dropout site alone
            return 0
        if need < min_steps:
            crops.append((before, need))
        stream = before
    if len(crops) < 2:
        return 0

    p = PREFIX
    g.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), f"{p}_end"),
            numpy_helper.from_array(np.array([TIME], np.int64), f"{p}_axis"),
            numpy_helper.from_array(np.array([1], np.int64), f"{p}_step_axis"),
        ]
    )
    for index, (tensor, steps) in enumerate(crops):
        start, cropped = f"{p}_{index}_start", f"{p}_{index}_{steps}_steps"
        g.graph.initializer.append(numpy_helper.from_array(np.array([-steps], np.int64), start))
        readers = list(g.consumers.get(tensor, []))
        for reader in readers:
            for i, name in enumerate(reader.input):
                if name == tensor:
                    reader.input[i] = cropped
        node = helper.make_node(
            "Slice", [tensor, start, f"{p}_end", f"{p}_axis"], [cropped], name=f"{p}_{index}"
        )
        insert_before(g.graph, min(readers, key=list(g.graph.node).index), [node])
    final = g.producers[y.name]
    for i, name in enumerate(final.output):
        if name == y.name:
            final.output[i] = f"{p}_sequence"
    squeeze = helper.make_node(
        "Squeeze", [f"{p}_sequence", f"{p}_step_axis"], [y.name], name=f"{p}_last"
    )
    g.graph.node.insert(list(g.graph.node).index(final) + 1, squeeze)
    as_vector(y, int(y.type.tensor_type.shape.dim[2].dim_value))
    return len(crops)


def crop_receptive_field(
    model: onnx.ModelProto, min_steps: int = MIN_STEPS
) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` whose residual Conv1D chain computes only the steps its forecast reads;
    and the number of Slices inserted (the head's included), or 0 if untouched."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    return model, _rewrite(Graph(model.graph), min_steps)
