"""Shared pieces of the exporter's graph rewrites (`training/rewrites.py`): a graph's producers,
consumers and constants, node surgery, and the MC-dropout patterns tf2onnx writes for our models."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Graph:
    """Producers, consumers and constants of a graph, recomputed after each rewrite."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producers = {out: node for node in graph.node for out in node.output if out}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.initializers = {i.name: i for i in graph.initializer}
        self.inputs = {i.name for i in graph.input}
        self.outputs = {o.name for o in graph.output}

    def const(self, name: str) -> np.ndarray | None:
        init = self.initializers.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def made_by(self, name: str, op: str) -> onnx.NodeProto | None:
        node = self.producers.get(name)
        return node if node is not None and node.op_type == op else None

    def axes(self, node: onnx.NodeProto) -> list[int] | None:
        """The constant axes of an opset-13+ Squeeze/Unsqueeze."""
        if len(node.input) != 2:
            return None
        axes = self.const(node.input[1])
        return None if axes is None else [int(a) for a in axes.ravel()]

    def read_once(self, name: str) -> onnx.NodeProto | None:
        """The one node reading `name`, if there is one and `name` is not a graph output: what a
        rewrite that removes the nodes after `name` needs."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def only_use(self, name: str) -> onnx.NodeProto | None:
        """The one node that reads `name`'s values (`Shape` nodes only read its shape, which the
        rewrites keep), if there is one and `name` is not a graph output."""
        users = [n for n in self.consumers.get(name, []) if n.op_type != "Shape"]
        return users[0] if len(users) == 1 and name not in self.outputs else None


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def insert_before(graph: onnx.GraphProto, anchor: onnx.NodeProto, nodes: list[Any]) -> None:
    index = list(graph.node).index(anchor)
    for offset, node in enumerate(nodes):
        graph.node.insert(index + offset, node)


def prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initializers nothing uses any more (the loops' trip counts, ...)."""
    while True:
        used = {o.name for o in graph.output}
        for node in graph.node:
            used.update(node.input)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    used.update(i for n in attribute.g.node for i in n.input)
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def mask_of(g: Graph, mul: onnx.NodeProto, activations: str) -> str | None:
    """The mask graph input that `mul` multiplies `activations` by, as mask[:, None, :]."""
    if len(mul.input) != 2 or activations not in mul.input:
        return None
    other = mul.input[1] if mul.input[0] == activations else mul.input[0]
    unsqueeze = g.made_by(other, "Unsqueeze")
    if unsqueeze is None or g.axes(unsqueeze) != [1] or unsqueeze.input[0] not in g.inputs:
        return None
    mask: str = unsqueeze.input[0]
    return mask


def masked(g: Graph, mul: onnx.NodeProto) -> tuple[str, str] | None:
    """(the activations, the mask input) of an MC-dropout `Mul(activations, mask[:, None, :])`."""
    for activations in mul.input:
        mask = mask_of(g, mul, activations)
        if mask is not None:
            return activations, mask
    return None


def repeat_rows(
    graph: onnx.GraphProto, tensor: str, rank: int, axis: int, mask: str, p: str
) -> tuple[list[onnx.NodeProto], str]:
    """The nodes of `RepeatRows` on `tensor` (rank `rank`, its rows along `axis`): each row
    repeated rows(mask) / rows(tensor) times in place, [.., B, ..] -> [.., B, r, ..] -> [.., P, ..];
    and the name of the result. Needs opset 15 (Shape with start and end)."""
    ones = [np.ones(axis + 1, np.int64), np.ones(rank - axis - 1, np.int64)]
    graph.initializer.extend(
        [
            numpy_helper.from_array(ones[0], f"{p}_ones_before"),
            numpy_helper.from_array(ones[1], f"{p}_ones_after"),
            numpy_helper.from_array(np.array([axis + 1], np.int64), f"{p}_axis"),
            numpy_helper.from_array(np.array([-1], np.int64), f"{p}_rows_left"),
        ]
    )
    shape = [f"{p}_rows_left", f"{p}_trailing"]
    nodes = [
        helper.make_node("Shape", [mask], [f"{p}_rows"], start=0, end=1),
        helper.make_node("Shape", [tensor], [f"{p}_batch"], start=axis, end=axis + 1),
        helper.make_node("Div", [f"{p}_rows", f"{p}_batch"], [f"{p}_per_row"]),
        helper.make_node(
            "Concat",
            [f"{p}_ones_before", f"{p}_per_row", f"{p}_ones_after"],
            [f"{p}_tile"],
            axis=0,
        ),
        helper.make_node("Shape", [tensor], [f"{p}_trailing"], start=axis + 1, end=rank),
    ]
    if axis > 0:
        nodes.append(helper.make_node("Shape", [tensor], [f"{p}_leading"], start=0, end=axis))
        shape.insert(0, f"{p}_leading")
    nodes += [
        helper.make_node("Concat", shape, [f"{p}_shape"], axis=0),
        helper.make_node("Unsqueeze", [tensor, f"{p}_axis"], [f"{p}_unsqueezed"]),
        helper.make_node("Expand", [f"{p}_unsqueezed", f"{p}_tile"], [f"{p}_expanded"]),
        helper.make_node("Reshape", [f"{p}_expanded", f"{p}_shape"], [f"{p}_repeated"]),
    ]
    return nodes, f"{p}_repeated"
