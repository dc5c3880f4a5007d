"""fc as TFLite's CONV_2D + RESHAPE or FULLY_CONNECTED, both ways.

Export: the fc is a CONV_2D whose kernel covers the map, then RESHAPE to (1, classes): LiteRT's
FULLY_CONNECTED rounds acc * M once, the plan's fc twice (see export_fully_connected); an fc with rounding
"single" (imported from a FULLY_CONNECTED) is FULLY_CONNECTED again.

Import: FULLY_CONNECTED is an fc with rounding "single" (an NHWC-flattened input's weights are reordered to
the plan's CHW order); the CONV_2D classifier is imported by conv.py.
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, bias_scale, builtin_options, fused_activation
from edgepack.ops.fc import FcParams
from edgepack.plan.plan import Layer

# ---- export ----------------------------------------------------------------------------------------------


@EXPORTS.register("fc")
def export_fully_connected(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """The fc as a VALID CONV_2D whose kernel covers the whole (H, W) map, then RESHAPE to (1, classes).
    LiteRT's FULLY_CONNECTED requantizes per-channel int8 with a 16-bit multiplier rounded once (its
    int64 MultiplyByQuantizedMultiplier), which differs from the plan on ties; CONV_2D rounds as the plan.
    The weight (O, C*H*W) flattened in the plan's NCHW order becomes OHWI (O, H, W, C): no TRANSPOSE.
    An fc that rounds once is TFLite's FULLY_CONNECTED (_single_rounding_fc), and so is one with rounding
    "tflm" (a FULLY_CONNECTED as TFLM computes it: a tflm artifact's; LiteRT rounds it once, TFLM twice)."""
    x = sources[0]
    if layer.params.rounding in ("single", "tflm"):
        return _single_rounding_fc(g, x, layer, prefix)
    shape = g.tensors[x].shape
    if len(shape) != 4:  # an fc after an fc: (1, F) -> (1, 1, 1, F)
        features = shape[-1]
        new_shape = g.constant(f"{prefix}/shape4d", np.array([1, 1, 1, features], np.int32))
        as_map = g.activation(f"{prefix}/map", (1, 1, 1, features), g.quant[x])
        g.op("RESHAPE", [x, new_shape], [as_map], new_shape=[1, 1, 1, features])
        x, shape = as_map, (1, 1, 1, features)
    _, h, w, c = shape
    classes = layer.output_shape[0]
    weight = layer.weight.reshape(classes, c, h, w).transpose(0, 2, 3, 1)
    w_scale = layer.weight_scales().astype(np.float32)
    wt = g.constant(f"{prefix}/weight", weight, w_scale, 0)
    bias = g.constant(f"{prefix}/bias", layer.arrays["bias"].astype(np.int32), bias_scale(layer.input_q, w_scale))
    y4 = g.activation(f"{prefix}/conv", (1, 1, 1, classes), layer.output_q)
    g.op("CONV_2D", [x, wt, bias], [y4], padding="VALID", stride=1, activation=fused_activation(layer))
    new_shape = g.constant(f"{prefix}/shape", np.array([1, classes], np.int32))
    y = g.activation(prefix, (1, classes), layer.output_q)
    g.op("RESHAPE", [y4, new_shape], [y], new_shape=[1, classes])
    return y


def _single_rounding_fc(g: Graph, x: int, layer: Layer, prefix: str) -> int:
    """FULLY_CONNECTED on (1, features): a map is first RESHAPEd, which flattens it in NHWC order, so the
    plan's CHW-ordered weight columns are reordered to HWC."""
    shape, classes = g.tensors[x].shape, layer.output_shape[0]
    weight = layer.weight
    if len(shape) == 4:
        _, h, w, c = shape
        weight = weight.reshape(classes, c, h, w).transpose(0, 2, 3, 1).reshape(classes, -1)
        flat_shape = g.constant(f"{prefix}/flat_shape", np.array([1, h * w * c], np.int32))
        flat = g.activation(f"{prefix}/flat", (1, h * w * c), g.quant[x])
        g.op("RESHAPE", [x, flat_shape], [flat], new_shape=[1, h * w * c])
        x = flat
    w_scale = layer.weight_scales().astype(np.float32)
    wt = g.constant(f"{prefix}/weight", np.ascontiguousarray(weight), w_scale, 0)
    bias = g.constant(f"{prefix}/bias", layer.arrays["bias"].astype(np.int32), bias_scale(layer.input_q, w_scale))
    y = g.activation(prefix, (1, classes), layer.output_q)
    g.op("FULLY_CONNECTED", [x, wt, bias], [y], activation=fused_activation(layer))
    return y


@builtin_options("FULLY_CONNECTED", 4)
def _fully_connected_options(b, tfl, o, vector):
    tfl.FullyConnectedOptionsStart(b)
    tfl.FullyConnectedOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    return tfl.BuiltinOptions.FullyConnectedOptions, tfl.FullyConnectedOptionsEnd(b)


# ---- import ----------------------------------------------------------------------------------------------


@IMPORTS.register("FULLY_CONNECTED")
def import_fully_connected(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """An fc that rounds once (rounding "single"), as LiteRT's kernel; an NHWC-flattened input's weights are
    reordered to the plan's CHW order."""
    opts = r.options(op, "FullyConnectedOptions")
    if opts.WeightsFormat() != 0 or opts.KeepNumDims():
        r.refuse(i, "uses shuffled weights or keep_num_dims", "convert with the default FULLY_CONNECTED options")
    features = int(np.prod(value.shape))
    weights = r.operand(i, inputs, 1, "weights")
    o = weights.shape[0] if weights.shape else 0
    if int(np.prod(out.shape)) != o:
        r.refuse(i, f"outputs {list(out.shape)} from weights of shape {list(weights.shape)}", "re-convert the model")
    weight, scales = r.weights(i, weights, "OI", o, 0)
    if weight.shape[1] != features:
        r.refuse(i, f"takes {weight.shape[1]} features, its input has {features}", "re-convert the model")
    if value.flattened_map is not None:  # the input was flattened in NHWC order, the plan flattens CHW
        c, h, w = value.flattened_map
        weight = weight.reshape(o, h, w, c).transpose(0, 3, 1, 2).reshape(o, features)
    elif len(value.shape) == 3 and value.shape[1:] != (1, 1):
        r.refuse(i, "reads an unflattened map", "RESHAPE the map to (1, features) before it")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    arrays = r.arrays(i, inputs, np.ascontiguousarray(weight), value.q, scales, out_q)
    return Layer(f"layer{i}_fc", "fc", (features,), (o,), input_q=value.q, output_q=out_q, arrays=arrays,
                 params=FcParams("single"), **r.activation(i, opts.FusedActivationFunction(), out_q))
