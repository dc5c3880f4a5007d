"""concat (channels) as TFLite's CONCATENATION, both ways.

Export: CONCATENATION of the NHWC maps on axis 3 with no fused activation (ConcatenationOptions); every input
has the output's quantization (the plan's concat is a copy), which LiteRT's int8 kernel requires.

Import: CONCATENATION of two or more activations the model computed, on the channel axis of (1, H, W, C) maps
(axis 3 or -1), with the output's scale and zero point on every input and no fused activation, is the plan's
concat reading the layers that produced them. Unequal quantization is refused as LiteRT's int8 kernel refuses it.
"""
from __future__ import annotations

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import NO_PADS, Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, builtin_options
from edgepack.ops.concat import ConcatParams
from edgepack.plan.plan import Layer

CHANNEL_AXIS = 3  # NHWC


@EXPORTS.register("concat")
def export_concat(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    c, h, w = layer.output_shape
    y = g.activation(prefix, (1, h, w, c), layer.output_q)
    g.op("CONCATENATION", sources, [y], axis=CHANNEL_AXIS)
    return y


@builtin_options("CONCATENATION", 2)  # version 2: int8
def _concatenation_options(b, tfl, o, vector):
    tfl.ConcatenationOptionsStart(b)
    tfl.ConcatenationOptionsAddAxis(b, o["axis"])
    tfl.ConcatenationOptionsAddFusedActivationFunction(b, tfl.ActivationFunctionType.NONE)
    return tfl.BuiltinOptions.ConcatenationOptions, tfl.ConcatenationOptionsEnd(b)


@IMPORTS.register("CONCATENATION")
def import_concat(r: Reader, i: int, op, inputs: list[int], first: Value, out: Tensor) -> Layer:
    """Two or more earlier activations joined on the channels, one quantization, no activation."""
    parts = _parts(r, i, inputs)
    opts = r.options(op, "ConcatenationOptions")
    if len(out.shape) != 4 or opts.Axis() not in (CHANNEL_AXIS, -1):
        r.refuse(i, f"joins on axis {opts.Axis()} of {list(out.shape)}", "the int8 plan concatenates (1, H, W, C) "
                 "maps on their channels (axis 3)")
    _, oh, ow, oc = out.shape
    if any(len(v.shape) != 3 or v.flattened_map or v.shape[1:] != (oh, ow) for v in parts) \
            or sum(v.shape[0] for v in parts) != oc:
        r.refuse(i, f"joins {[list(v.shape) for v in parts]} into {list(out.shape)}", "the int8 plan concatenates "
                 "(1, H, W, C) maps of one height and width on their channels")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    if any(v.q != out_q for v in parts):
        r.refuse(i, "has inputs quantized unlike its output", "LiteRT's int8 CONCATENATION needs every input's scale "
                 "and zero point equal to the output's: convert the model again")
    if opts.FusedActivationFunction() != r.tfl.ActivationFunctionType.NONE:
        r.refuse(i, "has a fused activation", "LiteRT's CONCATENATION takes none: convert the model again")
    return Layer(f"layer{i}_concat", "concat", first.shape, (oc, oh, ow), input_q=first.q, output_q=out_q,
                 params=ConcatParams(tuple(v.q for v in parts[1:])))


def _parts(r: Reader, i: int, inputs: list[int]) -> list[Value]:
    """A CONCATENATION's operands: two or more activations earlier ops computed (no constant, no PAD before)."""
    if len(inputs) < 2 or any(t not in r.values for t in inputs):
        r.refuse(i, "does not join two or more activations the model computed (a constant operand?)",
                 "the int8 plan's concat joins earlier tensors")
    if any(r.values[t].pads != NO_PADS for t in inputs):
        r.refuse(i, "follows a PAD", "a PAD must feed a CONV_2D or DEPTHWISE_CONV_2D")
    return [r.values[t] for t in inputs]
