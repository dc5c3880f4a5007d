"""pad as TFLite's PAD / PADV2, both ways.

Export: PAD when the constant is the output zero point (what LiteRT's int8 PAD writes), else PADV2 with a one-value
int8 constant in the output's scale and zero point (LiteRT's PADV2 requires them); paddings [[0, 0], [top, bottom],
[left, right], [0, 0]] of the NHWC map.

Import: PAD / PADV2 of an NHWC map with constant int32 paddings on H and W only, keeping its input's quantization
(LiteRT's int8 kernels require it), is the plan's pad: PAD's constant is the output zero point, PADV2's the int8
value of its constant operand, whose scale and zero point must be the output's. Padding the batch or the
channels is refused by name. (The walker folds a zero-point PAD into the CONV_2D / DEPTHWISE_CONV_2D it feeds and
keeps it as this layer before any other op.)
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph
from edgepack.ops.pad import PadParams, padded_shape
from edgepack.plan.plan import Layer

# ---- export ----------------------------------------------------------------------------------------------


@EXPORTS.register("pad")
def export_pad(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """PAD (constant = output zero point) or PADV2 (any other int8 constant)."""
    (c, oh, ow), (top, left, bottom, right), q = layer.output_shape, layer.pads, layer.output_q
    paddings = g.constant(f"{prefix}/paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32))
    y = g.activation(prefix, (1, oh, ow, c), q)
    if layer.params.value == q.zero_point:
        g.op("PAD", [sources[0], paddings], [y])
        return y
    value = g.constant(f"{prefix}/pad_value", np.array([layer.params.value], np.int8), np.array([q.scale], np.float32))
    g.tensors[value].zero_point = np.array([q.zero_point], np.int64)
    g.op("PADV2", [sources[0], paddings, value], [y])
    return y


# ---- import ----------------------------------------------------------------------------------------------


@IMPORTS.register("PADV2")  # PAD is the walker's (tflite_import), which calls this too
def import_pad(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """The plan's pad: spatial paddings, the input's quantization kept, PAD's zero point or PADV2's constant."""
    paddings = r.operand(i, inputs, 1, "paddings").data
    if paddings is None or paddings.shape != (4, 2) or paddings.dtype.kind != "i" or len(value.shape) != 3 \
            or value.flattened_map is not None or value.signal:
        r.refuse(i, "has no constant (4, 2) paddings on an NHWC map", "pad a (1, H, W, C) map by constant paddings")
    if paddings[0].any() or paddings[3].any():
        r.refuse(i, "pads the batch or channel axis", "the int8 plan pads height and width only")
    if (paddings < 0).any():
        r.refuse(i, "has negative paddings", "convert the model again: the file is damaged")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    if out_q != value.q:
        r.refuse(i, "changes the quantization", "LiteRT's int8 PAD / PADV2 keep their input's scale and zero point")
    (top, bottom), (left, right) = (int(p) for p in paddings[1]), (int(p) for p in paddings[2])
    pads = (top, left, bottom, right)
    shape = padded_shape(value.shape, pads)
    if tuple(out.shape) != (1, shape[1], shape[2], shape[0]):
        r.refuse(i, f"gives {list(out.shape)} from {list(value.shape)} padded by {list(pads)}", "convert the model "
                 "again: the file is damaged")
    constant = out_q.zero_point if r.op_names[i] == "PAD" or len(inputs) < 3 or inputs[2] < 0 \
        else _pad_v2_constant(r, i, inputs, out_q)
    return Layer(f"layer{i}_pad", "pad", value.shape, shape, input_q=value.q, output_q=out_q, pads=pads,
                 params=PadParams(int(constant)))


def _pad_v2_constant(r: Reader, i: int, inputs: list[int], out_q) -> int:
    """PADV2's constant: one int8 value in the output's scale and zero point (LiteRT's int8 PADV2 requires them)."""
    t = r.operand(i, inputs, 2, "constant value")
    if t.data is None or t.dtype != "int8" or t.data.size != 1:
        r.refuse(i, "has no constant int8 value of one element", "convert the model again: the file is damaged")
    if t.qparams(f"--model {r.path}: op {i}") != out_q:
        r.refuse(i, "has a constant quantized unlike its output", "LiteRT's int8 PADV2 needs the constant in the "
                 "output's scale and zero point: convert the model again")
    return int(t.data.reshape(-1)[0])
