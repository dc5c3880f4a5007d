"""conv, pointwise and depthwise as TFLite's CONV_2D and DEPTHWISE_CONV_2D, both ways.

Export: conv and pointwise weights OHWI, depthwise 1HWC, per-channel symmetric int8 with quantized_dimension
0 (3 for depthwise), as the TFLite converter writes them; bias int32 with scale in_scale * w_scale[c]. The
plan's (top, left, bottom, right) pads become SAME where they are TFLite's SAME pads for that shape
(bottom/right first: a stride-2 layer on an even input pads 0 top / 1 bottom), VALID where they are 0, and
otherwise (PyTorch's symmetric 1 on such a layer) an explicit PAD (filled with the input's zero point, i.e.
real 0) before a VALID conv.

Import: OHWI / 1HWC weights become the plan's OIHW / (C*m, 1, KH, KW) (depth multiplier m), any KH x KW and
(stride_h, stride_w), both ways; SAME padding becomes TFLite's pads (ComputePaddingHeightWidth), a PAD before the conv is folded into its pads (the walker
hands them over in the input's Value); a CONV_2D whose kernel covers the whole map at the end is the
classifier, an fc (how edgepack's exporter writes the fc).
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, bias_scale, builtin_options, fused_activation
from edgepack.ops.base import pair, pair_or_int
from edgepack.ops.conv import depth_multiplier
from edgepack.plan.plan import Layer

# ---- export ----------------------------------------------------------------------------------------------


@EXPORTS.register("conv", "pointwise")
def export_convolution(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """CONV_2D, weights OHWI (the plan's (O, I, KH, KW) transposed)."""
    x, padding = _padded(g, _as_map(g, sources[0], layer, prefix), layer, prefix)
    weight = layer.weight.transpose(0, 2, 3, 1)
    wt, bias, y = _weighted_conv_tensors(g, layer, prefix, weight, 0)
    g.op("CONV_2D", [x, wt, bias], [y], padding=padding, stride=layer.strides, activation=fused_activation(layer))
    return y


@EXPORTS.register("depthwise")
def export_depthwise(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """DEPTHWISE_CONV_2D, weights 1HW(C*m) (the plan's (C*m, 1, KH, KW)), quantized along dimension 3."""
    x, padding = _padded(g, _as_map(g, sources[0], layer, prefix), layer, prefix)
    weight = layer.weight[:, 0].transpose(1, 2, 0)[None]
    wt, bias, y = _weighted_conv_tensors(g, layer, prefix, weight, 3)
    g.op("DEPTHWISE_CONV_2D", [x, wt, bias], [y], depth_multiplier=depth_multiplier(layer), padding=padding,
         stride=layer.strides,
         activation=fused_activation(layer))
    return y


def _as_map(g: Graph, x: int, layer: Layer, prefix: str) -> int:
    """The NHWC map a convolution reads: a (1, F) vector (an fc's output, the plan's (C, H, W) in CHW order) is
    RESHAPEd to (F,), GATHERed into HWC order and RESHAPEd to (1, H, W, C): exact copies of int8 values."""
    if len(g.tensors[x].shape) == 4:
        return x
    c, h, w = layer.input_shape
    q, steps = g.quant[x], [("flat", (c * h * w,)), ("hwc", (c * h * w,)), ("nhwc", (1, h, w, c))]
    flat, hwc, nhwc = (g.activation(f"{prefix}/{name}", shape, q) for name, shape in steps)
    g.op("RESHAPE", [x, g.constant(f"{prefix}/flat_shape", np.array([c * h * w], np.int32))], [flat],
         new_shape=[c * h * w])
    order = np.arange(c * h * w, dtype=np.int32).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)  # HWC <- CHW
    g.op("GATHER", [flat, g.constant(f"{prefix}/hwc_order", np.ascontiguousarray(order))], [hwc])
    g.op("RESHAPE", [hwc, g.constant(f"{prefix}/nhwc_shape", np.array([1, h, w, c], np.int32))], [nhwc],
         new_shape=[1, h, w, c])
    return nhwc


def _padded(g: Graph, x: int, layer: Layer, prefix: str) -> tuple[int, str]:
    """(the conv's input, its TFLite padding): SAME or VALID when one pads as the plan, else an explicit PAD
    (filled with the zero point) before a VALID conv."""
    c, h, w = layer.input_shape
    _, oh, ow = layer.output_shape
    k, s, (top, left, bottom, right) = tuple(layer.weight.shape[-2:]), layer.strides, layer.pads
    padding = tflite_padding(h, w, k, s, layer.pads, oh, ow)
    if padding is not None:
        return x, padding
    pads = g.constant(f"{prefix}/paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32))
    padded = g.activation(f"{prefix}/padded", (1, top + h + bottom, left + w + right, c), layer.input_q)
    g.op("PAD", [x, pads], [padded])
    return padded, "VALID"


def _weighted_conv_tensors(g: Graph, layer: Layer, prefix: str, weight: np.ndarray, axis: int) -> tuple[int, int, int]:
    """The weight (per-channel scales along ``axis``), bias and output tensors of a convolution."""
    o, oh, ow = layer.output_shape
    w_scale = layer.weight_scales().astype(np.float32)
    wt = g.constant(f"{prefix}/weight", weight, w_scale, axis)
    bias = g.constant(f"{prefix}/bias", layer.arrays["bias"].astype(np.int32), bias_scale(layer.input_q, w_scale))
    return wt, bias, g.activation(prefix, (1, oh, ow, o), layer.output_q)


def tflite_padding(h: int, w: int, k, s, pads: tuple[int, int, int, int], oh: int, ow: int) -> str | None:
    """"VALID" or "SAME" when one of them pads exactly as the plan's (top, left, bottom, right), else None.
    ``k`` and ``s``: one int, or (along H, along W)."""
    top, left, bottom, right = pads
    if not any(pads):
        return "VALID"
    (kh, kw), (sh, sw) = pair(k), pair(s)
    for size, out, before, after, k, s in ((h, oh, top, bottom, kh, sh), (w, ow, left, right, kw, sw)):
        same_out = -(-size // s)
        total = max((same_out - 1) * s + k - size, 0)
        if same_out != out or (total // 2, total - total // 2) != (before, after):
            return None
    return "SAME"


@builtin_options("CONV_2D", 3)
def _conv_options(b, tfl, o, vector):
    tfl.Conv2DOptionsStart(b)
    tfl.Conv2DOptionsAddPadding(b, getattr(tfl.Padding, o["padding"]))
    tfl.Conv2DOptionsAddStrideW(b, pair(o["stride"])[1])
    tfl.Conv2DOptionsAddStrideH(b, pair(o["stride"])[0])
    tfl.Conv2DOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    tfl.Conv2DOptionsAddDilationWFactor(b, 1)
    tfl.Conv2DOptionsAddDilationHFactor(b, 1)
    return tfl.BuiltinOptions.Conv2DOptions, tfl.Conv2DOptionsEnd(b)


@builtin_options("DEPTHWISE_CONV_2D", 3)
def _depthwise_options(b, tfl, o, vector):
    tfl.DepthwiseConv2DOptionsStart(b)
    tfl.DepthwiseConv2DOptionsAddPadding(b, getattr(tfl.Padding, o["padding"]))
    tfl.DepthwiseConv2DOptionsAddStrideW(b, pair(o["stride"])[1])
    tfl.DepthwiseConv2DOptionsAddStrideH(b, pair(o["stride"])[0])
    tfl.DepthwiseConv2DOptionsAddDepthMultiplier(b, o["depth_multiplier"])
    tfl.DepthwiseConv2DOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    tfl.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
    tfl.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
    return tfl.BuiltinOptions.DepthwiseConv2DOptions, tfl.DepthwiseConv2DOptionsEnd(b)


# ---- import ----------------------------------------------------------------------------------------------


@IMPORTS.register("CONV_2D", "DEPTHWISE_CONV_2D")
def import_convolution(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """The conv / pointwise / depthwise layer (or, last and covering the whole map, the fc) of op ``i``."""
    depthwise = r.op_names[i] == "DEPTHWISE_CONV_2D"
    opts = r.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
    shape = value.shape
    if len(shape) == 1 and not value.flattened_map:  # (F,) read as a (F, 1, 1) map, e.g. after an fc
        shape = (shape[0], 1, 1)
    if len(shape) != 3 or len(out.shape) != 4:
        r.refuse(i, "does not take an NHWC map", "convolutions need (1, H, W, C) tensors")
    c, h, w = shape
    _, oh, ow, o = out.shape
    s = (opts.StrideH(), opts.StrideW())
    if opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1:
        r.refuse(i, "has dilation", "the int8 plan takes no dilation")
    if min(s) < 1 or opts.Padding() not in (r.tfl.Padding.SAME, r.tfl.Padding.VALID):
        r.refuse(i, f"has stride {pair_or_int(s)} and padding {opts.Padding()}", "strides of 1 or more and SAME or "
                 "VALID padding are needed: convert the model again, the file is damaged")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    weight, scales = _conv_weights(r, i, opts, inputs, depthwise, c, o)
    k = tuple(int(d) for d in weight.shape[-2:])
    pads = _pads(r, i, opts, value.pads, (h, w), (oh, ow), k, s)
    arrays = r.arrays(i, inputs, weight, value.q, scales, out_q)
    common = dict(input_q=value.q, output_q=out_q, arrays=arrays, **r.activation(i, opts.FusedActivationFunction(), out_q))
    if not depthwise and i == r.last_compute and (oh, ow) == (1, 1) and k == (h, w) and not any(pads):
        fc_weight = weight.reshape(o, -1)  # OIHW flattened = the plan's CHW order
        return Layer(f"layer{i}_fc", "fc", (c * h * w,), (o,), **{**common, "arrays": {**arrays, "weight": fc_weight}})
    kind = "depthwise" if depthwise else ("pointwise" if k == (1, 1) and not any(pads) else "conv")
    layer = Layer(f"layer{i}_{kind}", kind, (c, h, w), (o, oh, ow), stride=tuple(int(d) for d in s), pads=pads, **common)
    if layer.conv_output_hw() != (oh, ow):
        r.refuse(i, f"outputs {oh}x{ow}, not the {layer.conv_output_hw()} its padding and stride give",
                 "re-convert the model")
    return layer


def _conv_weights(r: Reader, i: int, opts, inputs: list[int], depthwise: bool, c: int, o: int):
    """(the plan's OIHW or (C, 1, KH, KW) weights, their per-channel scales) from the file's OHWI / 1HWC."""
    if depthwise:  # depth multiplier m: C*m outputs, output o reading input o // m (LiteRT reads o == c * m)
        if o % c or opts.DepthMultiplier() not in (0, o // c):
            r.refuse(i, f"has depth multiplier {opts.DepthMultiplier()} and {o} outputs of {c} channels",
                     "outputs must be the channels times the depth multiplier: convert the model again")
        weight, scales = r.weights(i, r.operand(i, inputs, 1, "weights"), "1HWC", o, 3)
        if weight.shape[0] != 1 or weight.shape[3] != o:
            r.refuse(i, f"has weights of shape {list(weight.shape)}", f"expected (1, KH, KW, {o})")
        return np.ascontiguousarray(weight[0].transpose(2, 0, 1)[:, None]), scales  # (1, KH, KW, O) -> (O, 1, KH, KW)
    weight, scales = r.weights(i, r.operand(i, inputs, 1, "weights"), "OHWI", o, 0)
    if weight.shape[3] != c:
        r.refuse(i, f"has weights of shape {list(weight.shape)}", f"expected (O, KH, KW, {c})")
    return np.ascontiguousarray(weight.transpose(0, 3, 1, 2)), scales  # OHWI -> OIHW


def _pads(r: Reader, i: int, opts, extra_pads, hw: tuple[int, int], out_hw: tuple[int, int], k, s):
    """The plan's (top, left, bottom, right): a folded PAD's ``extra_pads`` plus SAME's pads on the padded map
    (``k``, ``s``: (along H, along W))."""
    (h, w), (oh, ow) = hw, out_hw
    padded_h, padded_w = h + extra_pads[0] + extra_pads[2], w + extra_pads[1] + extra_pads[3]
    same = (0, 0, 0, 0)
    if opts.Padding() == r.tfl.Padding.SAME:
        if (oh, ow) != (-(-padded_h // s[0]), -(-padded_w // s[1])):  # TFLite's SAME output size, whatever the kernel
            r.refuse(i, f"outputs {oh}x{ow} from {padded_h}x{padded_w} at stride {pair_or_int(s)} with SAME padding",
                     "convert the model again: the file is damaged")
        same = r.same_pads(padded_h, padded_w, k, s, oh, ow)
    return tuple(int(a + b) for a, b in zip(extra_pads, same))
