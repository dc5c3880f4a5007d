"""mul (an elementwise product, a squeeze-and-excite gate) as TFLite's MUL, both ways.

Export: MUL with MulOptions (the fused activation of the clamp); its int8 kernel prepares the plan's
multiplier from the two input scales and the output scale (edgepack.ops.mul.mul_requantization) and
broadcasts a (1, 1, 1, C) gate over a (1, H, W, C) map as the plan's (C, 1, 1) over (C, H, W).

Import: MUL of two activations the model computed, of one shape or a (1, 1, 1, C) gate and a (1, H, W, C)
map in either order, is a "mul" layer reading the layers that produced them. A second operand that is a
one-element int8 constant (a converter's "/ 6" of a hard sigmoid) makes the MUL a function of one input: a
mul_constant lut (edgepack.interop.tflite_ops.lut). Other constant operands are refused: the plan's mul reads
two earlier tensors.
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_ops.lut import import_mul_by_constant, one_element_constant
from edgepack.interop.tflite_reader import NO_PADS, Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, builtin_options, fused_activation
from edgepack.ops.mul import MUL_MAX_LEFT_SHIFT, MulParams, mul_output_shape, mul_requantization
from edgepack.plan.plan import Layer


@EXPORTS.register("mul")
def export_mul(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """MUL; the output takes the larger operand's NHWC shape (a gate broadcasts over the map)."""
    full = max(sources, key=lambda t: int(np.prod(g.tensors[t].shape)))
    y = g.activation(prefix, g.tensors[full].shape, layer.output_q)
    g.op("MUL", sources, [y], activation=fused_activation(layer))
    return y


@builtin_options("MUL", 2)
def _mul_options(b, tfl, o, vector):
    tfl.MulOptionsStart(b)
    tfl.MulOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    return tfl.BuiltinOptions.MulOptions, tfl.MulOptionsEnd(b)


@IMPORTS.register("MUL")
def import_mul(r: Reader, i: int, op, inputs: list[int], a: Value, out: Tensor) -> Layer:
    """MUL of two activations: one shape, or a (C, 1, 1) gate and a (C, H, W) map; the multiplier as TFLite's
    int8 MUL prepares it from the float32 scales, the fused activation as a conv's. A MUL by a one-element
    constant is a lut instead."""
    constant = one_element_constant(r, inputs)
    if constant is not None:
        return import_mul_by_constant(r, i, op, constant, a, out)
    b = _factor(r, i, inputs)
    shape = mul_output_shape(a.shape, b.shape)
    if a.flattened_map or b.flattened_map or shape is None or int(np.prod(out.shape)) != int(np.prod(shape)):
        r.refuse(i, f"multiplies {list(a.shape)} and {list(b.shape)} into {list(out.shape)}",
                 "the int8 plan multiplies two tensors of one shape, or a (1, 1, 1, C) gate and a (1, H, W, C) map")
    if out.dtype != "int8":
        r.refuse(i, f"outputs {out.dtype}", "the int8 plan's mul outputs int8")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    multiplier, shift = mul_requantization(a.q, b.q, out_q)
    if int(shift[0]) > MUL_MAX_LEFT_SHIFT:
        r.refuse(i, f"has output scale {out_q.scale:g}, below 2^-{MUL_MAX_LEFT_SHIFT} of its input scales' product",
                 "convert the model again: its scales are damaged")
    opts = r.options(op, "MulOptions")
    return Layer(f"layer{i}_mul", "mul", a.shape, shape, input_q=a.q, output_q=out_q, params=MulParams(b.q, b.shape),
                 arrays={"multiplier": multiplier, "shift": shift},
                 **r.activation(i, opts.FusedActivationFunction(), out_q))


def _factor(r: Reader, i: int, inputs: list[int]) -> Value:
    """A MUL's second operand: an activation an earlier op computed, not a constant."""
    if len(inputs) != 2 or inputs[1] not in r.values:
        r.refuse(i, "does not multiply two activations the model computed (a constant operand?)",
                 "the int8 plan's mul multiplies two earlier tensors, as a squeeze-and-excite gate does")
    if r.values[inputs[1]].pads != NO_PADS:
        r.refuse(i, "follows a PAD", "a PAD must feed a CONV_2D or DEPTHWISE_CONV_2D")
    return r.values[inputs[1]]
