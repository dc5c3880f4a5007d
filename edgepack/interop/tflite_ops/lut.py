"""lut (an elementwise int8 function) as the TFLite builtin that computes it, both ways.

Export: the builtin named by the layer's function (HARD_SWISH, LOGISTIC, LEAKY_RELU with its alpha, RELU,
RELU6, RELU_N1_TO_1) between the layer's input and output quantization; LiteRT's int8 kernel of that
builtin computes, from those QParams, the very table the plan holds (edgepack.ops.lut transcribes its
arithmetic). A function no builtin computes (PyTorch's hard sigmoid; converters write it as a conv with
+3 in its bias and a fused RELU6, then a MUL by 1/6: two roundings, not one table) is written as the table
itself: CAST to int32, ADD 128, GATHER from the int8 table constant. A mul_constant is a MUL of the input by
its one-element int8 constant (with the constant's quantization and the fused activation).

Import: those six builtins on an int8 activation are a lut layer whose table is computed from the op's
input and output quantization (and LeakyReluOptions.alpha); a MUL by a one-element int8 constant
(edgepack.interop.tflite_ops.mul hands it here) is a mul_constant lut.
"""
from __future__ import annotations

import numpy as np

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import NO_PADS, Reader, Tensor, Value
from edgepack.interop import tflite_writer
from edgepack.interop.tflite_writer import Graph, builtin_options
from edgepack.ops.lut import LOGISTIC_OUTPUT, LutParams, lut_layer
from edgepack.ops.mul import MUL_MAX_LEFT_SHIFT, mul_requantization
from edgepack.plan.plan import Layer

BUILTINS = {"hard_swish": "HARD_SWISH", "logistic": "LOGISTIC", "leaky_relu": "LEAKY_RELU", "relu": "RELU",
            "relu6": "RELU6", "relu_n1_to_1": "RELU_N1_TO_1"}  # function -> builtin (both ways)

# ---- export ----------------------------------------------------------------------------------------------


@EXPORTS.register("lut")
def export_lut(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """The function's builtin, from the input's quantization to the output's."""
    code = BUILTINS.get(layer.params.function)
    y = g.activation(prefix, g.tensors[sources[0]].shape, layer.output_q)
    if layer.params.function == "mul_constant":
        _mul_by_constant(g, sources[0], y, layer.params, prefix)
    elif code is None:
        _gather_from_table(g, sources[0], y, layer, prefix)
    else:
        g.op(code, sources[:1], [y], alpha=layer.params.alpha)
    return y


def _mul_by_constant(g: Graph, x: int, y: int, params: LutParams, prefix: str) -> None:
    """MUL of x by a (1,) int8 constant in the constant's quantization: TFLite's int8 MUL is the table."""
    q = params.constant_q
    c = g.constant(f"{prefix}/constant", np.array([params.constant], np.int8), np.array([q.scale], np.float32))
    g.tensors[c].zero_point = np.array([q.zero_point], np.int64)
    g.op("MUL", [x, c], [y], activation=params.activation.upper())


def _gather_from_table(g: Graph, x: int, y: int, layer: Layer, prefix: str) -> None:
    """A function no builtin computes (a hard sigmoid) as the table itself: CAST the int8 values to int32
    (CAST ignores quantization: the raw values), ADD 128, GATHER from the int8 table constant, which holds the
    output's quantization. Integer ops only, so LiteRT gives the table's values exactly."""
    shape = g.tensors[x].shape
    wide, index = _int32_tensor(g, f"{prefix}/int32", shape), _int32_tensor(g, f"{prefix}/index", shape)
    g.op("CAST", [x], [wide])
    g.op("ADD", [wide, g.constant(f"{prefix}/offset", np.array([128], np.int32))], [index], activation="NONE")
    q = layer.output_q
    table = g.constant(f"{prefix}/table", layer.arrays["table"], np.array([q.scale], np.float32))
    g.tensors[table].zero_point = np.array([q.zero_point], np.int64)
    g.op("GATHER", [table, index], [y])


def _int32_tensor(g: Graph, name: str, shape: tuple[int, ...]) -> int:
    g.tensors.append(tflite_writer.Tensor(name, tuple(shape), "int32"))
    return len(g.tensors) - 1


@builtin_options("CAST", 1)
def _cast_options(b, tfl, o, vector):
    return tfl.BuiltinOptions.NONE, 0


@builtin_options("GATHER", 1)
def _gather_options(b, tfl, o, vector):
    tfl.GatherOptionsStart(b)
    tfl.GatherOptionsAddAxis(b, 0)
    return tfl.BuiltinOptions.GatherOptions, tfl.GatherOptionsEnd(b)


def _no_options(b, tfl, o, vector):
    return tfl.BuiltinOptions.NONE, 0


for _code, _version in (("LOGISTIC", 2), ("RELU", 2), ("RELU6", 2), ("RELU_N1_TO_1", 1)):
    builtin_options(_code, _version)(_no_options)


@builtin_options("HARD_SWISH", 1)
def _hard_swish_options(b, tfl, o, vector):
    tfl.HardSwishOptionsStart(b)
    return tfl.BuiltinOptions.HardSwishOptions, tfl.HardSwishOptionsEnd(b)


@builtin_options("LEAKY_RELU", 2)
def _leaky_relu_options(b, tfl, o, vector):
    tfl.LeakyReluOptionsStart(b)
    tfl.LeakyReluOptionsAddAlpha(b, float(o["alpha"]))
    return tfl.BuiltinOptions.LeakyReluOptions, tfl.LeakyReluOptionsEnd(b)


# ---- import ----------------------------------------------------------------------------------------------


@IMPORTS.register(*BUILTINS.values())
def import_lut(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """A lut layer of the builtin's function, its table from the op's two quantizations."""
    name = r.op_names[i]
    function = next(f for f, code in BUILTINS.items() if code == name)
    if value.flattened_map is not None or value.pads != NO_PADS:
        r.refuse(i, "reads a flattened map or a PAD's output", f"the int8 plan's {name} reads a layer's output as is")
    if out.dtype != "int8" or int(np.prod(out.shape)) != int(np.prod(value.shape)):
        r.refuse(i, f"outputs {out.dtype} {list(out.shape)} from {list(value.shape)}",
                 f"the int8 plan's {name} maps int8 to int8 of one shape")
    out_q = out.qparams(f"--model {r.path}: op {i}")
    if function == "logistic" and (np.float32(out_q.scale) != np.float32(LOGISTIC_OUTPUT.scale)
                                   or out_q.zero_point != LOGISTIC_OUTPUT.zero_point):
        r.refuse(i, f"outputs in scale {out_q.scale:g}, zero point {out_q.zero_point}", "TFLite's int8 LOGISTIC "
                 "outputs in scale 1/256, zero point -128: convert the model again")
    alpha = float(np.float32(r.options(op, "LeakyReluOptions").Alpha())) if function == "leaky_relu" else None
    return lut_layer(f"layer{i}_{function}", LutParams(function, alpha), value.shape, value.q, out_q)


def one_element_constant(r: Reader, inputs: list[int]) -> Tensor | None:
    """A MUL's second operand when it is a one-element int8 constant quantized per tensor, else None."""
    if len(inputs) != 2 or inputs[1] < 0 or inputs[1] in r.values:
        return None
    t = r.tensor(inputs[1])
    one = t.data is not None and int(np.prod(t.shape)) == 1 and t.data.size == 1
    return t if one and t.dtype == "int8" and len(t.scale) == 1 else None


def import_mul_by_constant(r: Reader, i: int, op, constant: Tensor, value: Value, out: Tensor) -> Layer:
    """MUL of an activation by a one-element int8 constant: a mul_constant lut (TFLite's int8 MUL per input)."""
    if value.flattened_map is not None or value.pads != NO_PADS:
        r.refuse(i, "reads a flattened map or a PAD's output", "the int8 plan's MUL by a constant reads a layer's "
                 "output as is")
    if out.dtype != "int8" or int(np.prod(out.shape)) != int(np.prod(value.shape)):
        r.refuse(i, f"outputs {out.dtype} {list(out.shape)} from {list(value.shape)}",
                 "the int8 plan's MUL by a constant maps int8 to int8 of one shape")
    where = f"--model {r.path}: op {i}"
    out_q, constant_q = out.qparams(where), constant.qparams(where)
    activation = r.activation(i, r.options(op, "MulOptions").FusedActivationFunction(), out_q)["activation"]
    if int(mul_requantization(value.q, constant_q, out_q)[1][0]) > MUL_MAX_LEFT_SHIFT:
        r.refuse(i, f"has output scale {out_q.scale:g}, below 2^-{MUL_MAX_LEFT_SHIFT} of its input scales' product",
                 "convert the model again: its scales are damaged")
    params = LutParams("mul_constant", constant=int(constant.data.reshape(-1)[0]), constant_q=constant_q,
                       activation=activation)
    return lut_layer(f"layer{i}_mul_constant", params, value.shape, value.q, out_q)
