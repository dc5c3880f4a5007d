"""avgpool (the global average pool) as TFLite's AVERAGE_POOL_2D or MEAN, both ways.

Export: AVERAGE_POOL_2D over the whole map (in int16 with zero point 0 when the count is even, see
export_global_average_pool); a "mean" pool (imported from a MEAN) is MEAN again.

Import: AVERAGE_POOL_2D over the whole map (quantization kept) is the global pool, a "raw_average" one over
an even count at a non-zero zero point (TFLite rounds the raw sum, zero point included, where the plan's
"average" rounds the zero-point-free sum: ties differ); edgepack's own QUANTIZE int8->int16,
AVERAGE_POOL_2D int16, QUANTIZE int16->int8 is read by the walker (tflite_import) with global_pool. MEAN over
H and W (keep_dims either way, Keras' GlobalAveragePooling2D) is a "mean" pool: LiteRT folds 1/count into
its requantization (plan.mean_requantization), which may rescale.
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, builtin_options, pool2d_options
from edgepack.ops.avgpool import AvgPoolParams
from edgepack.plan.plan import Layer, QParams, mean_requantization

# ---- export ----------------------------------------------------------------------------------------------


@EXPORTS.register("avgpool")
def export_global_average_pool(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """AVERAGE_POOL_2D over the whole map. Its kernel rounds the raw sum (zero point included) half
    away from zero, the plan rounds sum(x - zp): the two differ only on ties, which an odd count cannot
    have. For an even count the pool runs in int16 with zero point 0 (exact QUANTIZE ops around it:
    the scale is unchanged). MEAN is no alternative: LiteRT 2.3 folds 1/count into a multiplier and
    rounds twice, which only a "mean" pool reproduces (it is written as MEAN)."""
    x, (c, h, w) = sources[0], layer.input_shape
    if layer.params.pool == "mean":
        y = g.activation(prefix, (1, 1, 1, c) if len(layer.output_shape) == 3 else (1, c), layer.output_q)
        g.op("MEAN", [x, g.constant(f"{prefix}/axes", np.array([1, 2], np.int32))], [y],
             keep_dims=len(layer.output_shape) == 3)
        return y
    q, pool = layer.input_q, dict(filter_h=h, filter_w=w, stride=1, padding="VALID", activation="NONE")
    if (h * w) % 2 or layer.params.pool == "raw_average":  # "raw_average" is AVERAGE_POOL_2D's arithmetic (imported)
        y = g.activation(prefix, (1, 1, 1, c), layer.output_q)
        g.op("AVERAGE_POOL_2D", [x], [y], **pool)
        return y
    wide_q = QParams(q.scale, 0)
    wide = g.activation(f"{prefix}/int16", (1, h, w, c), wide_q, "int16")
    g.op("QUANTIZE", [x], [wide])
    pooled = g.activation(f"{prefix}/pooled_int16", (1, 1, 1, c), wide_q, "int16")
    g.op("AVERAGE_POOL_2D", [wide], [pooled], **pool)
    y = g.activation(prefix, (1, 1, 1, c), layer.output_q)
    g.op("QUANTIZE", [pooled], [y])
    return y


builtin_options("AVERAGE_POOL_2D", 2)(pool2d_options)


@builtin_options("MEAN", 2)
def _mean_options(b, tfl, o, vector):
    tfl.ReducerOptionsStart(b)
    tfl.ReducerOptionsAddKeepDims(b, o["keep_dims"])
    return tfl.BuiltinOptions.ReducerOptions, tfl.ReducerOptionsEnd(b)


# ---- import ----------------------------------------------------------------------------------------------


@IMPORTS.register("AVERAGE_POOL_2D")
def import_average_pool(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """The global pool; over an even count at a non-zero zero point a "raw_average" one, as TFLite rounds."""
    layer = global_pool(r, i, op, value, out, value.q)
    if int(np.prod(value.shape[1:])) % 2 == 0 and value.q.zero_point != 0:
        layer.params = AvgPoolParams("raw_average")  # TFLite rounds the raw sum: on ties unlike the plan's "average"
    return layer


def global_pool(r: Reader, i: int, op, value: Value, out: Tensor, in_q: QParams) -> Layer:
    """The "average" pool of an AVERAGE_POOL_2D over the whole map that keeps its input's quantization (also
    the int16 pool of edgepack's QUANTIZE, AVERAGE_POOL_2D, QUANTIZE pattern, read by the walker)."""
    if len(value.shape) != 3:
        r.refuse(i, "does not take an NHWC map", "pool the (1, H, W, C) map")
    c, h, w = value.shape
    opts = r.options(op, "Pool2DOptions")
    if (opts.FilterHeight(), opts.FilterWidth()) != (h, w) or opts.FusedActivationFunction() != 0:
        r.refuse(i, f"pools {opts.FilterHeight()}x{opts.FilterWidth()} of a {h}x{w} map",
                 "only a global average pool (filter = the whole map, no activation) fits the int8 plan")
    if int(np.prod(out.shape)) != c:
        r.refuse(i, f"outputs {list(out.shape)}", f"a global pool outputs {c} values")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    if out_q.scale != in_q.scale or (out.dtype == "int8" and out_q != in_q):
        r.refuse(i, "changes the quantization", "the plan's global pool keeps its input's scale and zero point")
    keep = len(out.shape) == 4
    return Layer(f"layer{i}_avgpool", "avgpool", (c, h, w), (c, 1, 1) if keep else (c,), input_q=in_q, output_q=out_q)


@IMPORTS.register("MEAN")
def import_mean(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """MEAN over H and W of an NHWC map (or over the length of a (1, L, C) signal, Keras'
    GlobalAveragePooling1D): a "mean" pool, requantized as LiteRT's kernel does."""
    axes = r.operand(i, inputs, 1, "axes").data
    rank, over = (3, [1]) if value.signal else (4, [1, 2])
    axes_ok = axes is not None and axes.dtype.kind == "i" and ((-rank <= axes) & (axes < rank)).all()
    if len(value.shape) != 3 or not axes_ok or sorted(int(a) % rank for a in axes.reshape(-1)) != over:
        r.refuse(i, "does not average a (1, H, W, C) map over H and W", "only a global mean over axes [1, 2] "
                 "(a signal's axis 1) fits the int8 plan")
    c, h, w = value.shape
    if int(np.prod(out.shape)) != c or out.dtype != "int8":
        r.refuse(i, f"outputs {out.dtype} {list(out.shape)}", f"a global pool outputs {c} int8 values")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    multiplier, shift = mean_requantization(value.q.scale, out_q.scale, h * w)
    arrays = {"multiplier": np.full(c, multiplier, np.int32), "shift": np.full(c, shift, np.int32)}
    keep = r.options(op, "ReducerOptions").KeepDims()
    return Layer(f"layer{i}_mean", "avgpool", (c, h, w), (c, 1, 1) if keep else (c,), input_q=value.q,
                 output_q=out_q, params=AvgPoolParams("mean"), arrays=arrays)
