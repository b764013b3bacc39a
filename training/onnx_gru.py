"""Replace the `Loop`s tf2onnx makes of Keras GRU layers with ONNX's native `GRU` operator.

tf2onnx turns a Keras 3 GRU layer into a `Loop` over time steps (FIELD-NOTES): ORT then runs a
subgraph of some thirty small nodes per step, about 1 ms per call whatever the batch (50 steps, two
layers), where its `GRU` kernel runs the same recurrence in one operator. The loop's body is the
Keras GRU cell with `reset_after=True`, which is ONNX's `linear_before_reset=1`:

    z = sigmoid(x Wz + bz + h Rz + rbz)        r = sigmoid(x Wr + br + h Rr + rbr)
    n = tanh(x Wn + bn + r * (h Rn + rbn))     h' = (1 - z) * n + z * h

with Keras' gate order (z, r, n) in the kernel columns, ONNX's order (z, r, h) in W and R, and
Keras' bias [2, 3U] (input, recurrent) flattened into ONNX's B [6U].

Only loops that look exactly like that are rewritten: weights as initializers fed to the loop, one
input sequence read from a time-major tensor, zero initial state, and only the stacked outputs used
downstream. Anything else is left as it is. The exporter's parity checks (Keras vs ORT) run on the
rewritten graph, so a wrong rewrite cannot ship.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.onnx_graph import insert_before, prune


@dataclass(frozen=True)
class _Gru:
    loop: onnx.NodeProto
    sequence: str  # the time-major input [T, B, F]
    kernel: np.ndarray  # [F, 3U]
    recurrent: np.ndarray  # [U, 3U]
    bias: np.ndarray  # [2, 3U]
    output: str  # the loop's stacked outputs [T, B, U]


def native_gru(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with each GRU loop replaced by a `GRU` node; and how many were replaced."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    found = [
        gru
        for node in graph.node
        if node.op_type == "Loop"
        and (gru := _match(node, initializers, used, producers)) is not None
    ]
    for k, gru in enumerate(found):
        _replace(graph, gru, k)
    if found:
        prune(graph)
    return model, len(found)


def _match(
    loop: onnx.NodeProto,
    initializers: dict[str, np.ndarray],
    used: set[str],
    producers: dict[str, onnx.NodeProto],
) -> _Gru | None:
    body = next(a.g for a in loop.attribute if a.name == "body")
    carried = len(loop.input) - 2
    scans = len(loop.output) - carried
    outputs_used = [k for k, name in enumerate(loop.output) if name in used]
    if scans != 1 or outputs_used != [len(loop.output) - 1]:
        return None  # only the stacked outputs may be used downstream
    # Body inputs after (iteration, condition) are the loop inputs after (trip count, condition).
    outer_of = {b.name: o for b, o in zip(body.input[2:], loop.input[2:], strict=True)}
    weights = {b: initializers[o] for b, o in outer_of.items() if o in initializers}
    matmuls = [n for n in body.node if n.op_type == "MatMul"]
    ops = sorted(n.op_type for n in body.node)
    if len(matmuls) != 2 or ops.count("Sigmoid") != 2 or ops.count("Tanh") != 1:
        return None
    body_producers = {out: node for node in body.node for out in node.output}
    kernel = recurrent = initial = None
    multiplied = set()
    for node in matmuls:
        weight = next((i for i in node.input if i in weights), None)
        other = next((i for i in node.input if i not in weights), None)
        if weight is None or other is None:
            return None
        multiplied.add(weight)
        source = body_producers.get(other)
        if source is not None and source.op_type in ("Gather", "Squeeze"):
            kernel = weights[weight]  # x_t, read from the sequence
        elif other in outer_of and outer_of[other] not in initializers:
            recurrent = weights[weight]  # the state, carried by the loop
            initial = outer_of[other]  # its value before the first step
        else:
            return None
    biases = [
        w for name, w in weights.items() if name not in multiplied and w.ndim == 2 and len(w) == 2
    ]
    if kernel is None or recurrent is None or initial is None or len(biases) != 1:
        return None
    units = recurrent.shape[0]
    if recurrent.shape != (units, 3 * units) or kernel.shape[1] != 3 * units:
        return None
    if biases[0].shape != (2, 3 * units):
        return None
    # The sequence: the one tensor of the outer graph the body reads, other than the loop inputs.
    defined = {o for n in body.node for o in n.output} | {i.name for i in body.input}
    defined |= {i.name for i in body.initializer}
    outer = {i for n in body.node for i in n.input if i and i not in defined}
    sequences = [
        name
        for name in outer
        if (p := producers.get(name)) is not None
        and p.op_type == "Transpose"
        and list(next(a.ints for a in p.attribute if a.name == "perm")) == [1, 0, 2]
    ]
    if len(sequences) != 1 or len(outer - set(sequences)) > 1:
        return None
    zero = producers.get(initial)
    if zero is None or zero.op_type != "Expand":  # tf2onnx's `zeros`: the initial state
        return None
    fill = initializers.get(zero.input[0])
    if fill is None or np.any(fill != 0):
        return None
    return _Gru(loop, sequences[0], kernel, recurrent, biases[0], loop.output[-1])


def _replace(graph: onnx.GraphProto, gru: _Gru, k: int) -> None:
    units = gru.recurrent.shape[0]
    prefix = f"native_gru_{k}"
    w = gru.kernel.T[None].astype(np.float32)  # [1, 3U, F], gates z, r, h
    r = gru.recurrent.T[None].astype(np.float32)  # [1, 3U, U]
    b = gru.bias.reshape(1, 6 * units).astype(np.float32)  # [Wb, Rb]
    graph.initializer.extend(
        [
            numpy_helper.from_array(w, f"{prefix}_W"),
            numpy_helper.from_array(r, f"{prefix}_R"),
            numpy_helper.from_array(b, f"{prefix}_B"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), f"{prefix}_axis"),
        ]
    )
    nodes = [
        helper.make_node(
            "GRU",
            [gru.sequence, f"{prefix}_W", f"{prefix}_R", f"{prefix}_B"],
            [f"{prefix}_Y"],
            name=prefix,
            hidden_size=units,
            linear_before_reset=1,
        ),
        # Y [T, 1, B, U] -> the loop's stacked outputs [T, B, U], under the loop's output name.
        helper.make_node("Squeeze", [f"{prefix}_Y", f"{prefix}_axis"], [gru.output]),
    ]
    insert_before(graph, gru.loop, nodes)
    graph.node.remove(gru.loop)
