"""add (a residual sum) as TFLite's ADD, both ways.

Export: ADD; its int8 kernel prepares the plan's add multipliers from the two input scales and the output
scale (edgepack.ops.arith.add_multipliers); a residual tensor feeds both its readers.

Import: ADD of two activations of one shape (a residual sum, e.g. MobileNetV2's) is an "add" layer reading
the layers that produced them, its multipliers prepared as TFLite's int8 ADD does (plan.add_multipliers) and
its fused RELU / RELU6 the same clamp as a conv's.
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import NO_PADS, Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, builtin_options, fused_activation
from edgepack.ops.add import AddParams
from edgepack.plan.plan import ADD_LEFT_SHIFT, Layer, add_multipliers


@EXPORTS.register("add")
def export_add(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """ADD: its int8 kernel prepares the plan's add multipliers from the three scales (add_multipliers)."""
    y = g.activation(prefix, g.tensors[sources[0]].shape, layer.output_q)
    g.op("ADD", sources, [y], activation=fused_activation(layer))
    return y


@builtin_options("ADD", 2)
def _add_options(b, tfl, o, vector):
    tfl.AddOptionsStart(b)
    tfl.AddOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    return tfl.BuiltinOptions.AddOptions, tfl.AddOptionsEnd(b)


@IMPORTS.register("ADD")
def import_add(r: Reader, i: int, op, inputs: list[int], a: Value, out: Tensor) -> Layer:
    """ADD of two tensors of one shape: multipliers and shifts as TFLite's int8 ADD prepares them from the
    float32 scales (plan.add_multipliers), the fused activation as a conv's."""
    b = _addend(r, i, inputs)
    if a.shape != b.shape or a.flattened_map or b.flattened_map or int(np.prod(out.shape)) != int(np.prod(a.shape)):
        r.refuse(i, f"adds {list(a.shape)} and {list(b.shape)} into {list(out.shape)}",
                 "the int8 plan adds two tensors of one shape (no broadcasting)")
    if out.dtype != "int8":
        r.refuse(i, f"outputs {out.dtype}", "the int8 plan's add outputs int8")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    if 2 * max(a.q.scale, b.q.scale) >= out_q.scale * 2**ADD_LEFT_SHIFT:  # LiteRT's int8 ADD aborts on that
        r.refuse(i, f"has output scale {out_q.scale:g}, below 2^-19 of its input scales", "convert the model "
                 "again: its scales are damaged")
    multiplier, shift = add_multipliers(a.q, b.q, out_q)
    opts = r.options(op, "AddOptions")
    return Layer(f"layer{i}_add", "add", a.shape, a.shape, input_q=a.q, output_q=out_q, params=AddParams(b.q),
                 arrays={"multiplier": multiplier, "shift": shift},
                 **r.activation(i, opts.FusedActivationFunction(), out_q))


def _addend(r: Reader, i: int, inputs: list[int]) -> Value:
    """An ADD's second operand: an activation an earlier op computed (a residual input), not a constant."""
    if len(inputs) != 2 or inputs[1] not in r.values:
        r.refuse(i, "does not add two activations the model computed (a constant operand?)",
                 "the int8 plan's add sums two earlier tensors, as a residual connection does")
    if r.values[inputs[1]].pads != NO_PADS:
        r.refuse(i, "follows a PAD", "a PAD must feed a CONV_2D or DEPTHWISE_CONV_2D")
    return r.values[inputs[1]]
