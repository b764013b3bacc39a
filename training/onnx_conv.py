"""Fold the causal padding and the bias of tf2onnx's Conv1D into its `Conv` node.

tf2onnx writes a Keras `Conv1D` (causal padding) as a 2-D convolution among small nodes:

    channels first:  Pad -> Unsqueeze(2) -> Conv [O, I, 1, k] -> Squeeze(2) -> Add(bias)
    channels last:   Pad -> Unsqueeze(-3) -> Transpose(0, 3, 1, 2) -> Conv -> Squeeze(2) -> Add(bias)

(the second where its transpose optimiser could not move the layout through the graph, as after the
RepeatRows layer of our MC-dropout graphs). ORT fuses neither the `Pad` nor the bias `Add` into the
convolution across the reshapes, and runs each as a copy of the activations. The fold gives the
`Conv` the padding (`pads=[0, left, 0, right]`) and the bias (its third input) and drops the two
nodes: the shipped WaveNet's ORT call, one thread, 2,052-2,278 -> 1,706-1,727 us at batch 32 and
4,484-4,530 -> 3,555-4,008 us at 64, outputs identical (max abs diff 0). Rewriting the pattern as
one 1-D `Conv` instead was slower (2,411 us at 32): ORT's blocked NCHWc kernels serve 2-D
convolutions only.

Only these exact patterns are folded (zero constant padding on the time axis only, every
intermediate used once); anything else is left as it is. The exporter's parity checks run on the
folded graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from training.onnx_graph import Graph, prune
from training.onnx_graph import attrs as _attrs


def fold_conv1d(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with the padding and bias of each Conv1D pattern folded into its `Conv`;
    and how many were."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    folded = 0
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        if _fold(graph, conv, folded):
            folded += 1
    if folded:
        prune(graph)
    return model, folded


def _fold(graph: onnx.GraphProto, conv: onnx.NodeProto, k: int) -> bool:
    g = Graph(graph)
    const, only_consumer = g.const, g.read_once

    def made_by(name: str, op: str, user: onnx.NodeProto) -> onnx.NodeProto | None:
        node = g.made_by(name, op)
        return node if node is not None and only_consumer(name) is user else None

    if len(conv.input) != 2:
        return False
    attrs = _attrs(conv)
    weight = const(conv.input[1])
    if weight is None or weight.ndim != 4 or weight.shape[2] != 1 or attrs.get("group", 1) != 1:
        return False
    if list(attrs.get("strides", [1, 1])) != [1, 1] or any(attrs.get("pads", [0, 0, 0, 0])):
        return False
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return False
    dilation = list(attrs.get("dilations", [1, 1]))
    if dilation[0] != 1:
        return False

    # Before the Conv: channels first, or channels last with a Transpose to channels first.
    transpose = made_by(conv.input[0], "Transpose", conv)
    if transpose is not None:
        if list(_attrs(transpose).get("perm", [])) != [0, 3, 1, 2]:
            return False
        unsqueeze = made_by(transpose.input[0], "Unsqueeze", transpose)
        axes_ok = [[-3], [1]]  # [N, W, C] -> [N, 1, W, C]
        time_axis = 1
    else:
        unsqueeze = made_by(conv.input[0], "Unsqueeze", conv)
        axes_ok = [[2], [-2]]  # [N, C, W] -> [N, C, 1, W]
        time_axis = 2
    if unsqueeze is None or len(unsqueeze.input) != 2:
        return False
    axes = const(unsqueeze.input[1])
    if axes is None or axes.tolist() not in axes_ok:
        return False
    source, pads = unsqueeze.input[0], [0, 0]
    pad = made_by(source, "Pad", unsqueeze)
    if pad is not None:
        amounts = const(pad.input[1]) if len(pad.input) > 1 else None
        value = const(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
        mode = _attrs(pad).get("mode", b"constant")
        others = [i for i in range(6) if i not in (time_axis, time_axis + 3)]
        if (
            amounts is not None
            and amounts.shape == (6,)
            and value is not None
            and np.all(value == 0)
            and mode in (b"constant", "constant")
            and not any(amounts[others])
            and np.all(amounts >= 0)
        ):
            source, pads = pad.input[0], [int(amounts[time_axis]), int(amounts[time_axis + 3])]

    # After the Conv: Squeeze(2) [-> Add(bias)], both channels first.
    squeeze = only_consumer(conv.output[0])
    if squeeze is None or squeeze.op_type != "Squeeze" or len(squeeze.input) != 2:
        return False
    squeeze_axes = const(squeeze.input[1])
    if squeeze_axes is None or squeeze_axes.tolist() not in ([2], [-2]):
        return False
    output, bias = squeeze.output[0], None
    add = only_consumer(squeeze.output[0])
    out_channels = weight.shape[0]
    if add is not None and add.op_type == "Add":
        other = next((i for i in add.input if i != squeeze.output[0]), None)
        values = const(other) if other else None
        shapes = ((1, out_channels, 1), (out_channels, 1))  # per channel of [N, C, W]
        if values is not None and values.shape in shapes:
            bias, output = values.reshape(out_channels).astype(np.float32), add.output[0]

    if source == unsqueeze.input[0] and bias is None:
        return False  # nothing to fold
    prefix = f"conv1d_{k}"
    if source != unsqueeze.input[0]:  # the Pad was accepted: the Conv pads instead
        assert pad is not None
        graph.node.remove(pad)
        unsqueeze.input[0] = source
    conv_attrs = {a.name: a for a in conv.attribute}
    if "pads" in conv_attrs:
        conv.attribute.remove(conv_attrs["pads"])
    conv.attribute.append(helper.make_attribute("pads", [0, pads[0], 0, pads[1]]))
    if bias is not None:
        graph.initializer.append(numpy_helper.from_array(bias, f"{prefix}_B"))
        conv.input.append(f"{prefix}_B")
        graph.node.remove(add)
        squeeze.output[0] = output
    return True
