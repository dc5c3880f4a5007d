"""resize_nearest as TFLite's RESIZE_NEAREST_NEIGHBOR, both ways.

Export: RESIZE_NEAREST_NEIGHBOR of the NHWC map with a constant int32 size [H', W'] and
ResizeNearestNeighborOptions (align_corners, half_pixel_centers); the output keeps the input's quantization.
Version 3: int8 with either flag (LiteRT's resolvers take versions 1 to 4).

Import: RESIZE_NEAREST_NEIGHBOR of a (1, H, W, C) map with a constant size whose output is (1, H', W', C) in
its input's quantization (Keras' UpSampling2D, tf.image.resize nearest) is the plan's resize_nearest; another
output quantization is refused, as the copy LiteRT's int8 kernel makes would not mean the same values.
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, builtin_options
from edgepack.ops.resize import ResizeParams
from edgepack.plan.plan import Layer


@EXPORTS.register("resize_nearest")
def export_resize_nearest(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    c, oh, ow = layer.output_shape
    size = g.constant(f"{prefix}/size", np.array([oh, ow], np.int32))
    y = g.activation(prefix, (1, oh, ow, c), layer.output_q)
    g.op("RESIZE_NEAREST_NEIGHBOR", [sources[0], size], [y], align_corners=layer.params.align_corners,
         half_pixel_centers=layer.params.half_pixel_centers)
    return y


@builtin_options("RESIZE_NEAREST_NEIGHBOR", 3)
def _resize_nearest_options(b, tfl, o, vector):
    tfl.ResizeNearestNeighborOptionsStart(b)
    tfl.ResizeNearestNeighborOptionsAddAlignCorners(b, bool(o["align_corners"]))
    tfl.ResizeNearestNeighborOptionsAddHalfPixelCenters(b, bool(o["half_pixel_centers"]))
    return tfl.BuiltinOptions.ResizeNearestNeighborOptions, tfl.ResizeNearestNeighborOptionsEnd(b)


@IMPORTS.register("RESIZE_NEAREST_NEIGHBOR")
def import_resize_nearest(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """A map resized to the constant [H', W'] its second operand holds, the input's quantization kept."""
    if len(value.shape) != 3 or value.flattened_map or len(out.shape) != 4:
        r.refuse(i, "does not take an NHWC map", "resizing needs (1, H, W, C) tensors")
    size = r.operand(i, inputs, 1, "size").data
    (c, _, _), (_, oh, ow, oc) = value.shape, out.shape
    if size is None or size.dtype != np.int32 or [int(v) for v in size.reshape(-1)] != [oh, ow] or oc != c:
        r.refuse(i, f"resizes {list(value.shape)} (C, H, W) to {list(out.shape)} with size "
                 f"{None if size is None else size.reshape(-1).tolist()}", "the int8 plan resizes to a constant int32 "
                 "size [H', W'] equal to the output's, channels kept")
    opts = r.options(op, "ResizeNearestNeighborOptions")
    align, half = bool(opts.AlignCorners()), bool(opts.HalfPixelCenters())
    if align and half:
        r.refuse(i, "sets both align_corners and half_pixel_centers", "set one at most: the file is damaged")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    if out_q != value.q:
        r.refuse(i, "changes the quantization", "RESIZE_NEAREST_NEIGHBOR copies values: its output needs its input's "
                 "scale and zero point (convert the model again)")
    return Layer(f"layer{i}_resize_nearest", "resize_nearest", value.shape, (c, oh, ow), input_q=value.q,
                 output_q=out_q, params=ResizeParams(align, half))
