"""maxpool as TFLite's MAX_POOL_2D, both ways.

Export: MAX_POOL_2D with Pool2DOptions (filter = the (KH, KW) window, (stride_h, stride_w), the fused activation of the clamp);
the plan's (top, left, bottom, right) pads are VALID when 0 and SAME where they are TFLite's SAME pads for
that shape (the odd one bottom/right). Other pads (PyTorch's symmetric 1 where SAME would pad 0 / 1) become a
PADV2 filled with -128 before a VALID pool: TFLite leaves padding out of the max, and -128 can only tie a
real value of the window, never beat it (every window holds one), so the max is the same. (PAD would fill
with the zero point, which could win.)

Import: MAX_POOL_2D of any filter and strides, SAME (TFLite's ComputePaddingHeightWidth pads) or VALID,
keeping its input's quantization, with a NONE / RELU / RELU6 fused activation, is the plan's maxpool.
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_ops.conv import tflite_padding
from edgepack.interop.tflite_reader import Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, builtin_options, fused_activation, pool2d_options
from edgepack.ops.maxpool import MaxPoolParams
from edgepack.plan.plan import Layer

# ---- export ----------------------------------------------------------------------------------------------


@EXPORTS.register("maxpool")
def export_max_pool(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """MAX_POOL_2D (after a PADV2 of -128 when the pads are neither SAME nor VALID)."""
    x, (c, h, w), (_, oh, ow) = sources[0], layer.input_shape, layer.output_shape
    (kh, kw), s = layer.params.window_hw, layer.strides
    padding = tflite_padding(h, w, (kh, kw), s, layer.pads, oh, ow)
    if padding is None:
        x, padding = _padded_with_least_int8(g, x, layer, prefix), "VALID"
    y = g.activation(prefix, (1, oh, ow, c), layer.output_q)
    g.op("MAX_POOL_2D", [x], [y], filter_h=kh, filter_w=kw, stride=s, padding=padding, activation=fused_activation(layer))
    return y


def _padded_with_least_int8(g: Graph, x: int, layer: Layer, prefix: str) -> int:
    """PADV2 of the map with -128; its constant in the input's quantization (LiteRT's PADV2 requires it)."""
    (c, h, w), (top, left, bottom, right), q = layer.input_shape, layer.pads, layer.input_q
    pads = g.constant(f"{prefix}/paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32))
    least = g.constant(f"{prefix}/pad_value", np.array([-128], np.int8), np.array([q.scale], np.float32))
    g.tensors[least].zero_point = np.array([q.zero_point], np.int64)
    padded = g.activation(f"{prefix}/padded", (1, top + h + bottom, left + w + right, c), q)
    g.op("PADV2", [x, pads, least], [padded])
    return padded


builtin_options("MAX_POOL_2D", 2)(pool2d_options)


@builtin_options("PADV2", 2)
def _pad_v2_options(b, tfl, o, vector):
    tfl.PadV2OptionsStart(b)
    return tfl.BuiltinOptions.PadV2Options, tfl.PadV2OptionsEnd(b)


# ---- import ----------------------------------------------------------------------------------------------


@IMPORTS.register("MAX_POOL_2D")
def import_max_pool(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """The plan's maxpool: a (KH, KW) filter at (SH, SW), SAME or VALID, the input's quantization kept."""
    if len(value.shape) != 3 or len(out.shape) != 4:
        r.refuse(i, "does not take an NHWC map", "max pooling needs (1, H, W, C) tensors")
    (c, h, w), (_, oh, ow, oc) = value.shape, out.shape
    opts = r.options(op, "Pool2DOptions")
    k, s = (int(opts.FilterHeight()), int(opts.FilterWidth())), (int(opts.StrideH()), int(opts.StrideW()))
    if min(k) < 1 or min(s) < 1:
        r.refuse(i, f"pools {k[0]}x{k[1]} at strides {s[0]}x{s[1]}", "filter sizes and strides of 1 or more are needed: "
                 "the file is damaged")
    if opts.Padding() not in (r.tfl.Padding.SAME, r.tfl.Padding.VALID):
        r.refuse(i, f"has padding {opts.Padding()}", "SAME or VALID padding is needed: the file is damaged")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    if out_q != value.q or oc != c:
        r.refuse(i, "changes the quantization or the channels", "MAX_POOL_2D keeps its input's scale, zero point "
                 "and channels")
    pads = r.same_pads(h, w, k, s, oh, ow) if opts.Padding() == r.tfl.Padding.SAME else (0, 0, 0, 0)
    return Layer(f"layer{i}_maxpool", "maxpool", (c, h, w), (c, oh, ow), input_q=value.q, output_q=out_q,
                 stride=s, pads=tuple(int(p) for p in pads), params=MaxPoolParams(k),
                 **r.activation(i, opts.FusedActivationFunction(), out_q))
