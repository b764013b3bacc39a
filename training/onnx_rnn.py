"""Keep the activations of tf2onnx's recurrent stacks time-major across the MC-dropout sites.

ONNX's `LSTM` and `GRU` read a time-major sequence [T, B, F] and write Y [T, 1, B, U]; Keras is
batch-major, so tf2onnx wraps each recurrent layer in `Transpose(1, 0, 2)`s and relies on its
transpose optimiser to cancel them between layers. Our MC-dropout sites stop it: between two layers
the activations go batch-major for `RepeatRows` and the mask `Mul` and come back, two copies of
[P, T, U], and the seq2seq head runs its `MatMul` on batch-major rows. The rewrites here do the
same arithmetic in time-major order:

    between layers   Squeeze(Y, 1) -> Transpose -> [Unsqueeze(1) -> Expand -> Reshape] -> Mul(mask[:, None])
                     -> Transpose -> RNN
               as    Squeeze(Y, 1) -> [Unsqueeze(2) -> Expand([1, 1, P/B, 1]) -> Reshape([T, P, U])]
                     -> Mul(mask) -> RNN
    seq2seq head     Squeeze(Y, 1) -> Transpose -> Mul(mask[:, None]) -> Reshape([-1, U]) -> MatMul(W)
                     -> Reshape -> Add(b)
               as    Squeeze(Y, 1) -> Mul(mask) -> MatMul(W) -> Add(b) -> Transpose   (one [T, P, H] copy)
    initial states   zeros expanded to [1, B, U] -> omitted (ONNX's default: zeros)

The bracketed part is `RepeatRows` (each row repeated P/B times in place), present before the
first site only. Every element is computed by the same operation on the same operands, so the
outputs are bit-identical (tests/training/test_onnx_rnn.py); the shipped LSTM's ORT call, one
thread: MC 100 paths 8.76 -> 7.95 ms, batch 64 7.41 -> 6.93 ms, batch 16 1.55 -> 1.42 ms, batch 1
202 -> 163 us (interleaved, medians of 7).

Only those exact patterns are rewritten (forward, single-direction recurrent nodes, masks that are
graph inputs, constant head weights); anything else is left as it is. The exporter's parity checks
run on the rewritten graph, and `python -m training optimize` checks a shipped graph against its
previous self before replacing it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from training.onnx_graph import (
    Graph,
    attrs,
    insert_before,
    mask_of,
    masked,
    opset,
    prune,
    repeat_rows,
)

RECURRENT = ("LSTM", "GRU", "RNN")
SWAP = [1, 0, 2]


def _forward(node: onnx.NodeProto) -> bool:
    return node.op_type in RECURRENT and attrs(node).get("direction", b"forward") in (
        b"forward",
        "forward",
    )


def _swap(node: onnx.NodeProto | None) -> bool:
    return (
        node is not None
        and node.op_type == "Transpose"
        and list(attrs(node).get("perm", [])) == SWAP
    )


def _squeezed_y(g: Graph, name: str) -> bool:
    """Whether `name` = Squeeze(Y, axes=[1]) of a forward recurrent node."""
    squeeze = g.made_by(name, "Squeeze")
    if squeeze is None or g.axes(squeeze) != [1]:
        return False
    rnn = g.producers.get(squeeze.input[0])
    return rnn is not None and _forward(rnn) and rnn.output[0] == squeeze.input[0]


def _zero_states(g: Graph) -> int:
    """Omit initial states that are zeros broadcast to the batch (the default)."""
    dropped = 0
    for node in g.graph.node:
        if node.op_type not in RECURRENT:
            continue
        for index in (5, 6)[: 2 if node.op_type == "LSTM" else 1]:
            if len(node.input) <= index or not node.input[index]:
                continue
            name = node.input[index]
            while (p := g.producers.get(name)) is not None and p.op_type in (
                "Unsqueeze",
                "Expand",
                "Reshape",
            ):
                name = p.input[0]
            value = g.const(name)
            if value is None or value.size == 0 or np.any(value != 0):
                continue
            node.input[index] = ""
            dropped += 1
        while node.input and not node.input[-1]:
            del node.input[-1]
    return dropped


def _between(g: Graph, rnn: onnx.NodeProto, k: int) -> bool:
    """Rewrite the batch-major detour feeding `rnn` from the previous recurrent node, if any."""
    into = g.producers.get(rnn.input[0])
    if not _swap(into) or g.only_use(rnn.input[0]) is not rnn:
        return False
    assert into is not None
    mul = g.made_by(into.input[0], "Mul")
    if mul is None:
        return False
    # The activations side of the Mul: [Reshape(Expand(Unsqueeze(., 1)))] of Transpose(Squeeze(Y)).
    site = masked(g, mul)
    if site is None:
        return False
    activations, mask = site
    source, repeat = activations, False
    reshape = g.made_by(source, "Reshape")
    if reshape is not None:
        expand = g.made_by(reshape.input[0], "Expand")
        unsqueeze = g.made_by(expand.input[0], "Unsqueeze") if expand is not None else None
        if unsqueeze is None or g.axes(unsqueeze) != [1]:
            return False
        source, repeat = unsqueeze.input[0], True
    out_of = g.producers.get(source)
    if not _swap(out_of):
        return False
    assert out_of is not None
    if not _squeezed_y(g, out_of.input[0]):
        return False
    squeezed = out_of.input[0]  # [T, B, U]
    p = f"time_major_{k}"
    nodes: list[onnx.NodeProto] = []
    if repeat:  # P / B copies of each row, in place: [T, B, U] -> [T, P, U]
        nodes, squeezed = repeat_rows(g.graph, squeezed, 3, 1, mask, p)
    nodes.append(helper.make_node("Mul", [squeezed, mask], [f"{p}_dropped"], name=f"{p}_mul"))
    insert_before(g.graph, rnn, nodes)
    rnn.input[0] = f"{p}_dropped"
    return True


def _head(g: Graph, rnn: onnx.NodeProto, k: int) -> bool:
    """Rewrite the batch-major seq2seq head after the last recurrent node, if it is one."""
    users = g.consumers.get(rnn.output[0], []) if rnn.output[0] else []
    if len(users) != 1 or users[0].op_type != "Squeeze" or g.axes(users[0]) != [1]:
        return False
    squeezed = users[0].output[0]
    swap = g.only_use(squeezed)
    if not _swap(swap):
        return False
    assert swap is not None
    mul = g.only_use(swap.output[0])
    if mul is None or mul.op_type != "Mul":
        return False
    mask = mask_of(g, mul, swap.output[0])
    flat = g.only_use(mul.output[0])
    if mask is None or flat is None or flat.op_type != "Reshape":
        return False
    units = int(attrs(rnn)["hidden_size"])
    flat_shape = g.const(flat.input[1])
    if flat_shape is None or flat_shape.tolist() != [-1, units]:
        return False
    matmul = g.only_use(flat.output[0])
    if matmul is None or matmul.op_type != "MatMul" or matmul.input[0] != flat.output[0]:
        return False
    weight = g.const(matmul.input[1])
    if weight is None or weight.ndim != 2 or weight.shape[0] != units:
        return False
    unflat = g.only_use(matmul.output[0])
    if unflat is None or unflat.op_type != "Reshape":
        return False
    add = g.only_use(unflat.output[0])
    if add is None or add.op_type != "Add":
        return False
    other = add.input[1] if add.input[0] == unflat.output[0] else add.input[0]
    bias = g.const(other)
    if bias is None or bias.shape not in ((weight.shape[1],), (1, weight.shape[1])):
        return False
    p = f"time_major_head_{k}"
    output = add.output[0]
    add.output[0] = f"{p}_unused"  # the old head is left to prune
    nodes = [
        helper.make_node("Mul", [squeezed, mask], [f"{p}_dropped"], name=f"{p}_mul"),
        helper.make_node("MatMul", [f"{p}_dropped", matmul.input[1]], [f"{p}_matmul"]),
        helper.make_node("Add", [f"{p}_matmul", other], [f"{p}_biased"]),
        helper.make_node("Transpose", [f"{p}_biased"], [output], perm=SWAP),
    ]
    insert_before(g.graph, add, nodes)
    return True


def time_major_rnn(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with its recurrent stacks kept time-major; and how many rewrites."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if opset(model) < 15:
        return model, 0  # Shape(start, end) needs opset 15
    graph = model.graph
    count = _zero_states(Graph(graph))
    if count:
        prune(graph)
    k = 0
    for rnn in [n for n in graph.node if _forward(n)]:
        for rewrite in (_between, _head):
            if rewrite(Graph(graph), rnn, k):
                k += 1
                prune(graph)
    return model, count + k
