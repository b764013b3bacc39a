"""Apply a repeated-rows dropout mask by broadcasting, without materialising the repeated copy.

With `repeat_rows` the activations shared by the S sample paths of a window ([T, B, U], time-major,
after `time_major_rnn`) are repeated in place to [T, P, U] and multiplied by the masks [P, U]:

    Unsqueeze(x, 2) -> Expand([1, 1, P/B, 1]) -> Reshape([T, P, U]) -> Mul(mask)

that is two passes over [T, P, U] (the `Expand` writes it, the `Mul` reads and writes it). The
same products come from one broadcasting `Mul` against the masks viewed as [B, P/B, U]:

    Unsqueeze(x, 2) -> Mul(Reshape(mask, [B, -1, U])) -> Reshape([T, P, U])

Every element is still x * mask, one multiplication on the same operands, so the outputs are
bit-identical (tests/training/test_onnx_mask.py); `Reshape` does not copy in ORT. The shipped LSTM's
MC-100 call, one thread: 1-6% less (interleaved medians). Only that exact pattern is rewritten
(the mask a graph input, each node read once, the product the sequence of a recurrent node);
anything else is left as it is.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.onnx_graph import Graph, insert_before, prune
from training.onnx_rnn import RECURRENT

PREFIX = "broadcast_mask"


def _site(g: Graph, mul: onnx.NodeProto) -> tuple[str, str, str, str] | None:
    """(x [T, B, U], its [T, B, 1, U] view, the mask input, the [T, P, U] shape) of a repeated-rows
    mask `Mul`, or None."""
    if mul.op_type != "Mul" or len(mul.input) != 2:
        return None
    rnn = g.only_use(mul.output[0])  # the time-major sequence [T, P, U] of a recurrent node
    if rnn is None or rnn.op_type not in RECURRENT or rnn.input[0] != mul.output[0]:
        return None
    for i, mask in enumerate(mul.input):
        if mask not in g.inputs:
            continue
        reshape = g.made_by(mul.input[1 - i], "Reshape")
        if reshape is None or g.only_use(reshape.output[0]) is not mul:
            continue
        expand = g.made_by(reshape.input[0], "Expand")
        if expand is None or g.only_use(expand.output[0]) is not reshape:
            continue
        unsqueeze = g.made_by(expand.input[0], "Unsqueeze")
        if unsqueeze is None or g.axes(unsqueeze) != [2]:
            continue
        if g.only_use(unsqueeze.output[0]) is not expand:
            continue
        return unsqueeze.input[0], unsqueeze.output[0], mask, reshape.input[1]
    return None


def broadcast_masks(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with its repeated-rows mask sites broadcast; and how many."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    count = 0
    for mul in [n for n in graph.node if n.op_type == "Mul"]:
        g = Graph(graph)
        site = _site(g, mul)
        if site is None:
            continue
        x, view, mask, shape = site
        p = f"{PREFIX}_{count}"
        graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), f"{p}_rest"))
        nodes = [
            helper.make_node("Shape", [x], [f"{p}_batch"], start=1, end=2),
            helper.make_node("Shape", [mask], [f"{p}_units"], start=1, end=2),
            helper.make_node(
                "Concat", [f"{p}_batch", f"{p}_rest", f"{p}_units"], [f"{p}_shape"], axis=0
            ),
            helper.make_node("Reshape", [mask, f"{p}_shape"], [f"{p}_rows"]),  # [B, P/B, U]
            helper.make_node("Mul", [view, f"{p}_rows"], [f"{p}_dropped"], name=f"{p}_mul"),
            helper.make_node("Reshape", [f"{p}_dropped", shape], [mul.output[0]]),
        ]
        insert_before(graph, mul, nodes)
        graph.node.remove(mul)
        prune(graph)
        count += 1
    return model, count
