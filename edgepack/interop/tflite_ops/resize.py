"""resize_nearest as TFLite's RESIZE_NEAREST_NEIGHBOR, both ways.

Export: RESIZE_NEAREST_NEIGHBOR of the NHWC map with a constant int32 size [H', W'] and
ResizeNearestNeighborOptions (align_corners, half_pixel_centers); the output keeps the input's quantization.
Version 3: int8 with either flag (LiteRT's resolvers take versions 1 to 4).

Import: RESIZE_NEAREST_NEIGHBOR of a (1, H, W, C) map with a constant size whose output is (1, H', W', C) in
its input's quantization (Keras' Resizing / tf.image.resize, method nearest) is the plan's resize_nearest; another
output quantization is refused, as the copy LiteRT's int8 kernel makes would not mean the same values.

Keras 3's UpSampling2D (nearest) is no RESIZE_NEAREST_NEIGHBOR: it repeats rows and columns (ops.repeat), which the
converter writes as RESHAPE to rank 5, TILE, RESHAPE, TILE, RESHAPE back to (1, H * sh, W * sw, C). Such a chain of
RESHAPE and TILE ops, in one quantization, is imported as the resize_nearest by (sh, sw) when it moves every
value where that resize does (tiled_upsample runs the chain on the positions of the map and compares); a TILE
anywhere else is refused by name.
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, builtin_options
from edgepack.ops.resize import ResizeParams, resize_maps
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


TILED_CHAIN_OPS = ("RESHAPE", "TILE")
MAX_TILED_CHAIN = 8  # ops: Keras writes 5 (RESHAPE, TILE, RESHAPE, TILE, RESHAPE)


@IMPORTS.register("TILE")
def import_tile(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """A TILE outside Keras' UpSampling2D chain (which the RESHAPE starting it imports): refused by what it is."""
    r.refuse(i, "tiles a tensor outside an UpSampling2D pattern", "TILE is imported only as Keras' UpSampling2D writes "
             "it (RESHAPE to rank 5, TILE, RESHAPE, TILE, RESHAPE back to the map); use UpSampling2D or Resizing")


def _tiled_chain(r: Reader, i: int, value: Value) -> tuple[list[tuple[str, object]], Tensor] | None:
    """The RESHAPE / TILE ops from op ``i`` to the first RESHAPE back to rank 4, each reading the last one's output
    in ``value``'s quantization: [(op name, its output shape or multiples)] and the last output; None if op ``i``
    starts no such chain."""
    steps, current = [], r.io(i)[0][0]
    for j in range(i, min(i + MAX_TILED_CHAIN, len(r.ops))):
        inputs, outputs = r.io(j)
        if r.op_names[j] not in TILED_CHAIN_OPS or inputs[:1] != [current] or len(outputs) != 1:
            return None
        out = r.tensor(outputs[0])
        if out.dtype != "int8" or out.qparams(f"--model {r.path}: op {j}") != value.q:
            return None
        if r.op_names[j] == "TILE":
            multiples = r.operand(j, inputs, 1, "multiples").data
            if multiples is None or multiples.dtype.kind != "i":
                return None
            steps.append(("TILE", [int(m) for m in multiples.reshape(-1)]))
        else:
            steps.append(("RESHAPE", tuple(out.shape)))
        current = out.index
        if r.op_names[j] == "RESHAPE" and len(out.shape) == 4:
            return steps, out
    return None


def _resized(layer: Layer, nhwc: np.ndarray) -> np.ndarray:
    """What the layer's resize makes of an NHWC array of any integer type (the map's positions)."""
    rows, cols = resize_maps(layer)
    return nhwc[:, rows][:, :, cols]


def tiled_upsample(r: Reader, i: int, value: Value) -> tuple[Layer, Tensor, int] | None:
    """Keras 3's UpSampling2D as the plan's resize_nearest, or None when RESHAPE op ``i`` (to rank 5) starts no
    RESHAPE / TILE chain back to a map: (the layer, the chain's output tensor, ops consumed). The chain is run on
    the NHWC positions of the map and must move each value as the resize by integer factors does."""
    if len(value.shape) != 3 or value.flattened_map or len(r.tensor(r.io(i)[1][0]).shape) != 5:
        return None
    found = _tiled_chain(r, i, value)
    if found is None:
        return None
    steps, out = found
    (c, h, w), (_, oh, ow, oc) = value.shape, out.shape
    positions = np.arange(h * w * c).reshape(1, h, w, c)
    try:
        moved = positions
        for name, arg in steps:
            moved = moved.reshape(arg) if name == "RESHAPE" else np.tile(moved, arg)
    except ValueError:
        moved = None
    layer = Layer(f"layer{i}_resize_nearest", "resize_nearest", (c, h, w), (oc, oh, ow), input_q=value.q,
                  output_q=value.q, params=ResizeParams())
    if moved is None or oc != c or moved.shape != (1, oh, ow, oc) or not np.array_equal(moved, _resized(layer, positions)):
        r.refuse(i, f"starts RESHAPE / TILE ops taking {list(value.shape)} (C, H, W) to {list(out.shape)} that repeat "
                 "no rows and columns", "the int8 plan imports such a chain only as UpSampling2D writes it "
                 "(nearest, integer factors)")
    return layer, out, len(steps)
