"""Run a seq2seq head on the last time step only: the graph's output becomes the forecast vector.

A seq2seq forecaster (the book's "sequence-to-sequence" RNN) is trained to forecast the next
`horizon` values at every time step, and its graph computes them all, [P, T, H]; the service reads
only `y[:, -1, :]` (docs/model-repository.md). After `time_major_rnn` the head is

    Squeeze(Y, 1) -> Mul(mask) -> MatMul(W) -> Add(b) -> Transpose -> y [P, T, H]

and this rewrite makes it

    Squeeze(Y_h, 0) -> Mul(mask) -> MatMul(W) -> Add(b) -> y [P, H]

Y_h, the recurrent node's last hidden state, is Y's last step (the same values, written by the same
kernel), so every output row is computed by the same operations on the same operands: the forecast
is bit-identical to the sequence's last step (tests/training/test_onnx_head.py), and the head's
Mul, MatMul, Add and Transpose over T steps, about 5% of the shipped LSTM's MC call, become one
step's. The recurrent node no longer writes Y at all when nothing else reads it.

The model's `output` becomes "vector" (its forecaster.json and config.pbtxt follow: `reoptimize`,
the exporter). Only that exact pattern is rewritten: a forward single-direction recurrent node,
a mask that is a graph input, constant head weights, the head's result the graph's only output.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.onnx_graph import Graph, attrs, insert_before, prune
from training.onnx_rnn import RECURRENT, SWAP

PREFIX = "last_step_head"


def output_rank(model: onnx.ModelProto) -> int:
    """The rank of the graph's first output: 3 for a sequence [P, T, H], 2 for a vector [P, H]."""
    return len(model.graph.output[0].type.tensor_type.shape.dim)


def _rewrite(g: Graph) -> bool:
    if len(g.graph.output) != 1:
        return False
    y = g.graph.output[0]
    swap = g.made_by(y.name, "Transpose")
    if swap is None or list(attrs(swap).get("perm", [])) != SWAP:
        return False
    add = g.made_by(swap.input[0], "Add")
    if add is None or g.only_use(add.output[0]) is not swap:
        return False
    matmul = next((g.made_by(i, "MatMul") for i in add.input if g.made_by(i, "MatMul")), None)
    if matmul is None or g.only_use(matmul.output[0]) is not add:
        return False
    bias_name = add.input[1] if add.input[0] == matmul.output[0] else add.input[0]
    weight, bias = g.const(matmul.input[1]), g.const(bias_name)
    if weight is None or weight.ndim != 2 or bias is None:
        return False
    if bias.shape not in ((weight.shape[1],), (1, weight.shape[1])):
        return False
    mul = g.made_by(matmul.input[0], "Mul")
    if mul is None or g.only_use(mul.output[0]) is not matmul:
        return False
    squeezed, mask = None, None
    for i, name in enumerate(mul.input):
        if name in g.inputs:
            mask, squeezed = name, mul.input[1 - i]
    if mask is None or squeezed is None or len(mul.input) != 2:
        return False
    squeeze = g.made_by(squeezed, "Squeeze")
    if squeeze is None or g.axes(squeeze) != [1] or g.consumers.get(squeezed) != [mul]:
        return False
    rnn = g.producers.get(squeeze.input[0])
    if (
        rnn is None
        or rnn.op_type not in RECURRENT
        or rnn.output[0] != squeeze.input[0]
        or attrs(rnn).get("direction", b"forward") not in (b"forward", "forward")
        or int(attrs(rnn)["hidden_size"]) != weight.shape[0]
    ):
        return False

    p = PREFIX
    while len(rnn.output) < 2:
        rnn.output.append("")
    if not rnn.output[1]:
        rnn.output[1] = f"{p}_state"  # Y_h [1, P, U]
    g.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), f"{p}_axis"))
    nodes = [
        helper.make_node("Squeeze", [rnn.output[1], f"{p}_axis"], [f"{p}_last"], name=f"{p}_last"),
        helper.make_node("Mul", [f"{p}_last", mask], [f"{p}_dropped"], name=f"{p}_mul"),
        helper.make_node("MatMul", [f"{p}_dropped", matmul.input[1]], [f"{p}_matmul"]),
        helper.make_node("Add", [f"{p}_matmul", bias_name], [y.name], name=f"{p}_add"),
    ]
    swap.output[0] = f"{p}_unused"  # the old head is left to prune
    insert_before(g.graph, swap, nodes)
    prune(g.graph)
    if not any(rnn.output[0] in n.input for n in g.graph.node):
        rnn.output[0] = ""  # nothing reads Y: the kernel skips writing it
    as_vector(y, int(weight.shape[1]))
    return True


def as_vector(y: onnx.ValueInfoProto, width: int) -> None:
    """Declare the graph output `y` a float vector per row, [P, width], keeping its rows' dim."""
    rows = y.type.tensor_type.shape.dim[0]
    shape = [rows.dim_param or (rows.dim_value if rows.HasField("dim_value") else None)]
    y.CopyFrom(helper.make_tensor_value_info(y.name, TensorProto.FLOAT, [*shape, width]))


def last_step_head(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` whose seq2seq head runs on the last step only; and 1, or 0 if untouched."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    return model, int(_rewrite(Graph(model.graph)))
