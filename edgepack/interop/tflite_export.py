"""The int8 plan as a TFLite flatbuffer (.tflite), for LiteRT / TFLite and the tools that read it.

Every op is a TFLite builtin whose integer arithmetic is the plan's (README "Arithmetic"), so LiteRT's
reference kernels (op resolver BUILTIN_REF) reproduce edgepack's int8 outputs bit for bit:

- activations NHWC int8 (the model input too), one scale / zero point per tensor (the plan's QParams);
- conv and pointwise weights OHWI, depthwise 1HWC, per-channel symmetric int8 with
  quantized_dimension 0 (3 for depthwise), as the TFLite converter writes them; bias int32 with scale
  in_scale * w_scale[c]. TFLite derives each requantization multiplier from these float32 scales in
  double precision, as the plan builder did, so it gets the plan's Q31 multipliers and shifts;
- the plan's (top, left, bottom, right) pads become SAME where they are TFLite's SAME pads for that
  shape (bottom/right first: a stride-2 layer on an even input pads 0 top / 1 bottom), VALID where
  they are 0, and otherwise (PyTorch's symmetric 1 on such a layer) an explicit PAD (filled with the
  input's zero point, i.e. real 0) before a VALID conv;
- the global average pool is AVERAGE_POOL_2D over the whole map (in int16 with zero point 0 when the
  count is even, see _global_average_pool); a "mean" pool (imported from a MEAN) is MEAN again;
- the fc is a CONV_2D whose kernel covers the map, then RESHAPE to (1, classes): LiteRT's
  FULLY_CONNECTED rounds acc * M once, the plan's fc twice (see _fully_connected); an fc with
  rounding "single" (imported from a FULLY_CONNECTED) is FULLY_CONNECTED again;
- an add is ADD (its int8 kernel prepares the plan's add multipliers from the two input scales and the
  output scale, see edgepack.ops.arith.add_multipliers); a residual tensor feeds both its readers;
- fused ReLU / ReLU6 become TFLite fused activations whose clamp equals the plan's act_min/act_max.

LiteRT's default CPU path (XNNPACK) requantizes in fp32 and differs by one step on some values.
The bytes depend on the plan alone (no timestamps, no version strings): same plan, same file.
Uses the PyPI ``tflite`` package (the generated schema builders) and ``flatbuffers``; no TensorFlow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack import ops
from edgepack.errors import ToolchainError, UnsupportedModelError
from edgepack.ops import Lowerings
from edgepack.plan.plan import PLAN_INPUT, Layer, Plan, QParams

DESCRIPTION = "edgepack int8 plan"
SCHEMA_VERSION = 3
# Op versions as the TFLite converter marks int8 (per-channel) models; they only select a registration.
OP_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "PAD": 2, "AVERAGE_POOL_2D": 2, "QUANTIZE": 2, "RESHAPE": 1,
               "ADD": 2, "FULLY_CONNECTED": 4, "MEAN": 2}
_CONST_ALIGNMENT = 16  # constant buffers start on 16 bytes, as the converter lays them out


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8" | "int16" | "int32"
    scale: np.ndarray | None = None  # float32, one per tensor or one per channel
    zero_point: np.ndarray | None = None  # int64
    quantized_dimension: int = 0
    data: np.ndarray | None = None  # constants only


@dataclass
class _Op:
    code: str  # a tflite.BuiltinOperator name
    inputs: list[int]
    outputs: list[int]
    options: dict  # fields of the op's builtin options table (see _OPTIONS)


class _Graph:
    """Tensors and ops in execution order; indices are positions in these lists."""

    def __init__(self):
        self.tensors: list[_Tensor] = []
        self.ops: list[_Op] = []
        self.quant: dict[int, QParams] = {}
        self.input = self.output = -1
        self.more_inputs: list[int] = []  # further subgraph inputs (one-op test models)

    def activation(self, name: str, shape: tuple[int, ...], q: QParams, dtype: str = "int8") -> int:
        self.tensors.append(_Tensor(name, tuple(shape), dtype, np.array([q.scale], np.float32),
                                    np.array([q.zero_point], np.int64)))
        self.quant[len(self.tensors) - 1] = q
        return len(self.tensors) - 1

    def constant(self, name: str, data: np.ndarray, scale: np.ndarray | None = None, axis: int = 0) -> int:
        data = np.ascontiguousarray(data)
        zero = None if scale is None else np.zeros(len(scale), np.int64)
        dtype = {np.dtype(np.int8): "int8", np.dtype(np.int32): "int32"}[data.dtype]
        self.tensors.append(_Tensor(name, data.shape, dtype, scale, zero, axis, data))
        return len(self.tensors) - 1

    def op(self, code: str, inputs: list[int], outputs: list[int], **options) -> None:
        self.ops.append(_Op(code, inputs, outputs, options))


LOWER = Lowerings("TFLite export")  # op kind -> fn(graph, sources, layer, prefix) -> the output tensor


def plan_to_tflite(plan: Plan) -> bytes:
    """The plan as .tflite bytes: int8 NHWC input (1, H, W, C) -> int8 logits (1, classes)."""
    LOWER.check(plan)
    if not plan.layers or not ops.get(plan.layers[-1].kind).classifier:
        raise UnsupportedModelError("only plans that end in an fc classifier can be written as .tflite")
    g = _Graph()
    c, h, w = plan.input_shape
    produced = {PLAN_INPUT: g.activation("input", (1, h, w, c), plan.input_q)}  # plan tensor -> .tflite tensor
    g.input = produced[PLAN_INPUT]
    for i, layer in enumerate(plan.layers):
        sources = [produced[j] for j in plan.inputs_of(i)]
        for t, q in zip(sources, layer.inputs_q()):
            if g.quant[t] != q:
                raise UnsupportedModelError(f"{layer.name}: its input quantization differs from its producer's output: "
                                            "the plan has no requantize op to express that in .tflite")
        produced[i] = LOWER[layer.kind](g, sources, layer, f"{i}.{layer.name}")
    g.output = produced[len(plan.layers) - 1]
    return _serialize(g)


def write_tflite(plan: Plan, path: Path) -> Path:
    """Write ``plan_to_tflite(plan)`` to ``path``."""
    path = Path(path)
    path.write_bytes(plan_to_tflite(plan))
    return path


def _padded(g: _Graph, x: int, layer: Layer, prefix: str) -> tuple[int, str]:
    """(the conv's input, its TFLite padding): SAME or VALID when one pads as the plan, else an explicit PAD
    (filled with the zero point) before a VALID conv."""
    c, h, w = layer.input_shape
    _, oh, ow = layer.output_shape
    k, s, (top, left, bottom, right) = layer.weight.shape[-1], layer.stride, layer.pads
    padding = _tflite_padding(h, w, k, s, layer.pads, oh, ow)
    if padding is not None:
        return x, padding
    pads = g.constant(f"{prefix}/paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32))
    padded = g.activation(f"{prefix}/padded", (1, top + h + bottom, left + w + right, c), layer.input_q)
    g.op("PAD", [x, pads], [padded])
    return padded, "VALID"


@LOWER.register("conv", "pointwise")
def _convolution(g: _Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """CONV_2D, weights OHWI (the plan's (O, I, k, k) transposed)."""
    x, padding = _padded(g, sources[0], layer, prefix)
    weight = layer.weight.transpose(0, 2, 3, 1)
    wt, bias, y = _weighted_conv_tensors(g, layer, prefix, weight, 0)
    g.op("CONV_2D", [x, wt, bias], [y], padding=padding, stride=layer.stride, activation=_fused_activation(layer))
    return y


@LOWER.register("depthwise")
def _depthwise(g: _Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """DEPTHWISE_CONV_2D, weights 1HWC (the plan's (C, 1, k, k)), quantized along dimension 3."""
    x, padding = _padded(g, sources[0], layer, prefix)
    weight = layer.weight[:, 0].transpose(1, 2, 0)[None]
    wt, bias, y = _weighted_conv_tensors(g, layer, prefix, weight, 3)
    g.op("DEPTHWISE_CONV_2D", [x, wt, bias], [y], depth_multiplier=1, padding=padding, stride=layer.stride,
         activation=_fused_activation(layer))
    return y


def _weighted_conv_tensors(g: _Graph, layer: Layer, prefix: str, weight: np.ndarray, axis: int) -> tuple[int, int, int]:
    """The weight (per-channel scales along ``axis``), bias and output tensors of a convolution."""
    o, oh, ow = layer.output_shape
    w_scale = layer.weight_scales().astype(np.float32)
    wt = g.constant(f"{prefix}/weight", weight, w_scale, axis)
    bias = g.constant(f"{prefix}/bias", layer.arrays["bias"].astype(np.int32), _bias_scale(layer.input_q, w_scale))
    return wt, bias, g.activation(prefix, (1, oh, ow, o), layer.output_q)


@LOWER.register("avgpool")
def _global_average_pool(g: _Graph, sources: list[int], layer: Layer, prefix: str) -> int:
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


@LOWER.register("fc")
def _fully_connected(g: _Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """The fc as a VALID CONV_2D whose kernel covers the whole (H, W) map, then RESHAPE to (1, classes).
    LiteRT's FULLY_CONNECTED requantizes per-channel int8 with a 16-bit multiplier rounded once (its
    int64 MultiplyByQuantizedMultiplier), which differs from the plan on ties; CONV_2D rounds as the plan.
    The weight (O, C*H*W) flattened in the plan's NCHW order becomes OHWI (O, H, W, C): no TRANSPOSE.
    An fc that rounds once is TFLite's FULLY_CONNECTED (_single_rounding_fc)."""
    x = sources[0]
    if layer.params.rounding == "single":
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
    bias = g.constant(f"{prefix}/bias", layer.arrays["bias"].astype(np.int32), _bias_scale(layer.input_q, w_scale))
    y4 = g.activation(f"{prefix}/conv", (1, 1, 1, classes), layer.output_q)
    g.op("CONV_2D", [x, wt, bias], [y4], padding="VALID", stride=1, activation=_fused_activation(layer))
    new_shape = g.constant(f"{prefix}/shape", np.array([1, classes], np.int32))
    y = g.activation(prefix, (1, classes), layer.output_q)
    g.op("RESHAPE", [y4, new_shape], [y], new_shape=[1, classes])
    return y


def _single_rounding_fc(g: _Graph, x: int, layer: Layer, prefix: str) -> int:
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
    bias = g.constant(f"{prefix}/bias", layer.arrays["bias"].astype(np.int32), _bias_scale(layer.input_q, w_scale))
    y = g.activation(prefix, (1, classes), layer.output_q)
    g.op("FULLY_CONNECTED", [x, wt, bias], [y], activation=_fused_activation(layer))
    return y


@LOWER.register("add")
def _add(g: _Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """ADD: its int8 kernel prepares the plan's add multipliers from the three scales (add_multipliers)."""
    y = g.activation(prefix, g.tensors[sources[0]].shape, layer.output_q)
    g.op("ADD", sources, [y], activation=_fused_activation(layer))
    return y


def _tflite_padding(h: int, w: int, k: int, s: int, pads: tuple[int, int, int, int], oh: int, ow: int) -> str | None:
    """"VALID" or "SAME" when one of them pads exactly as the plan's (top, left, bottom, right), else None."""
    top, left, bottom, right = pads
    if not any(pads):
        return "VALID"
    for size, out, before, after in ((h, oh, top, bottom), (w, ow, left, right)):
        same_out = -(-size // s)
        total = max((same_out - 1) * s + k - size, 0)
        if same_out != out or (total // 2, total - total // 2) != (before, after):
            return None
    return "SAME"


def _bias_scale(in_q: QParams, w_scale: np.ndarray) -> np.ndarray:
    return (np.float64(np.float32(in_q.scale)) * w_scale.astype(np.float64)).astype(np.float32)


def _round_half_away(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _fused_activation(layer: Layer) -> str:
    """The TFLite fused activation whose clamp (CalculateActivationRangeQuantized) is the plan's."""
    scale, zp = np.float32(layer.output_q.scale), layer.output_q.zero_point

    def q(real: float) -> int:  # TFLite quantizes the bound in float32, rounding half away from zero
        return zp + _round_half_away(float(np.float32(real) / scale))

    ranges = {"NONE": (-128, 127), "RELU": (max(-128, zp), 127), "RELU6": (max(-128, zp), min(127, q(6.0))),
              "RELU_N1_TO_1": (max(-128, q(-1.0)), min(127, q(1.0)))}
    preferred = {"relu": "RELU", "relu6": "RELU6"}.get(layer.activation, "NONE")
    for name in [preferred] + list(ranges):
        if ranges[name] == (layer.act_min, layer.act_max):
            return name
    raise UnsupportedModelError(f"{layer.name}: clamp [{layer.act_min}, {layer.act_max}] is no TFLite fused activation "
                                f"at output scale {layer.output_q.scale}: the plan cannot be written as .tflite")


# ---- flatbuffer serialization -------------------------------------------------------------------------

def _schema():
    try:
        import flatbuffers
        import tflite
    except ImportError as e:
        raise ToolchainError(f"writing .tflite needs the {e.name} package: pip install tflite flatbuffers")
    return flatbuffers, tflite


class _Writer:
    """A flatbuffers.Builder with the three vector kinds the model needs. Flatbuffers are built back to
    front, so the order of the calls below fixes the bytes: keep it."""

    def __init__(self, flatbuffers):
        self.b = flatbuffers.Builder(1024)

    def vector(self, values, dtype) -> int:
        return self.b.CreateNumpyVector(np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")))

    def tables(self, offsets: list[int]) -> int:
        self.b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def raw_bytes(self, data: bytes) -> int:
        b = self.b
        b.StartVector(1, len(data), _CONST_ALIGNMENT)
        b.head = b.head - len(data)
        b.Bytes[b.head:b.head + len(data)] = data
        return b.EndVector()


def _serialize(g: _Graph) -> bytes:
    flatbuffers, tfl = _schema()
    w = _Writer(flatbuffers)
    b = w.b
    buffer_of, buffers = _buffers(w, tfl, g)
    tensors = _tensors(w, tfl, g, buffer_of)
    codes = sorted({op.code for op in g.ops}, key=lambda c: getattr(tfl.BuiltinOperator, c))
    operators = _operators(w, tfl, g, codes)

    tensor_vec, op_vec = w.tables(tensors), w.tables(operators)
    inputs, outputs, name = w.vector([g.input] + g.more_inputs, np.int32), w.vector([g.output], np.int32), b.CreateString("main")
    tfl.SubGraphStart(b)
    tfl.SubGraphAddTensors(b, tensor_vec)
    tfl.SubGraphAddInputs(b, inputs)
    tfl.SubGraphAddOutputs(b, outputs)
    tfl.SubGraphAddOperators(b, op_vec)
    tfl.SubGraphAddName(b, name)
    subgraph = tfl.SubGraphEnd(b)

    opcodes = []
    for code in codes:
        value = getattr(tfl.BuiltinOperator, code)
        tfl.OperatorCodeStart(b)
        tfl.OperatorCodeAddDeprecatedBuiltinCode(b, min(value, 127))  # 127 = "see builtin_code"
        tfl.OperatorCodeAddBuiltinCode(b, value)
        tfl.OperatorCodeAddVersion(b, OP_VERSIONS[code])
        opcodes.append(tfl.OperatorCodeEnd(b))

    opcode_vec, subgraph_vec, buffer_vec = w.tables(opcodes), w.tables([subgraph]), w.tables(buffers)
    description = b.CreateString(DESCRIPTION)
    tfl.ModelStart(b)
    tfl.ModelAddVersion(b, SCHEMA_VERSION)
    tfl.ModelAddOperatorCodes(b, opcode_vec)
    tfl.ModelAddSubgraphs(b, subgraph_vec)
    tfl.ModelAddDescription(b, description)
    tfl.ModelAddBuffers(b, buffer_vec)
    b.Finish(tfl.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _buffers(w: _Writer, tfl, g: _Graph) -> tuple[dict[int, int], list[int]]:
    """(tensor index -> buffer index, the buffer tables): 0 is the empty sentinel every activation points
    at; then one per constant, its bytes little-endian."""
    buffer_of, blobs = {}, [None]
    for index, t in enumerate(g.tensors):
        if t.data is not None:
            buffer_of[index] = len(blobs)
            blobs.append(t.data.astype(t.data.dtype.newbyteorder("<")).tobytes())
    blob_offsets = [None if blob is None else w.raw_bytes(blob) for blob in blobs]
    buffers = []
    for off in blob_offsets:
        tfl.BufferStart(w.b)
        if off is not None:
            tfl.BufferAddData(w.b, off)
        buffers.append(tfl.BufferEnd(w.b))
    return buffer_of, buffers


def _tensors(w: _Writer, tfl, g: _Graph, buffer_of: dict[int, int]) -> list[int]:
    b = w.b
    tensor_type = {"int8": tfl.TensorType.INT8, "int16": tfl.TensorType.INT16, "int32": tfl.TensorType.INT32,
                   "float32": tfl.TensorType.FLOAT32}  # float32: the import tests' converter-like float in/out
    tensors = []
    for index, t in enumerate(g.tensors):
        name, shape = b.CreateString(t.name), w.vector(t.shape, np.int32)
        quant = None
        if t.scale is not None:
            scale, zero = w.vector(t.scale, np.float32), w.vector(t.zero_point, np.int64)
            tfl.QuantizationParametersStart(b)
            tfl.QuantizationParametersAddScale(b, scale)
            tfl.QuantizationParametersAddZeroPoint(b, zero)
            tfl.QuantizationParametersAddQuantizedDimension(b, t.quantized_dimension)
            quant = tfl.QuantizationParametersEnd(b)
        tfl.TensorStart(b)
        tfl.TensorAddShape(b, shape)
        tfl.TensorAddType(b, tensor_type[t.dtype])
        tfl.TensorAddBuffer(b, buffer_of.get(index, 0))
        tfl.TensorAddName(b, name)
        if quant is not None:
            tfl.TensorAddQuantization(b, quant)
        tensors.append(tfl.TensorEnd(b))
    return tensors


def _operators(w: _Writer, tfl, g: _Graph, codes: list[str]) -> list[int]:
    b, operators = w.b, []
    for op in g.ops:
        inputs, outputs = w.vector(op.inputs, np.int32), w.vector(op.outputs, np.int32)
        options_type, options = _OPTIONS[op.code](b, tfl, op.options, w.vector)
        tfl.OperatorStart(b)
        tfl.OperatorAddOpcodeIndex(b, codes.index(op.code))
        tfl.OperatorAddInputs(b, inputs)
        tfl.OperatorAddOutputs(b, outputs)
        tfl.OperatorAddBuiltinOptionsType(b, options_type)
        tfl.OperatorAddBuiltinOptions(b, options)
        operators.append(tfl.OperatorEnd(b))
    return operators


def _conv_options(b, tfl, o, vector):
    tfl.Conv2DOptionsStart(b)
    tfl.Conv2DOptionsAddPadding(b, getattr(tfl.Padding, o["padding"]))
    tfl.Conv2DOptionsAddStrideW(b, o["stride"])
    tfl.Conv2DOptionsAddStrideH(b, o["stride"])
    tfl.Conv2DOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    tfl.Conv2DOptionsAddDilationWFactor(b, 1)
    tfl.Conv2DOptionsAddDilationHFactor(b, 1)
    return tfl.BuiltinOptions.Conv2DOptions, tfl.Conv2DOptionsEnd(b)


def _depthwise_options(b, tfl, o, vector):
    tfl.DepthwiseConv2DOptionsStart(b)
    tfl.DepthwiseConv2DOptionsAddPadding(b, getattr(tfl.Padding, o["padding"]))
    tfl.DepthwiseConv2DOptionsAddStrideW(b, o["stride"])
    tfl.DepthwiseConv2DOptionsAddStrideH(b, o["stride"])
    tfl.DepthwiseConv2DOptionsAddDepthMultiplier(b, o["depth_multiplier"])
    tfl.DepthwiseConv2DOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    tfl.DepthwiseConv2DOptionsAddDilationWFactor(b, 1)
    tfl.DepthwiseConv2DOptionsAddDilationHFactor(b, 1)
    return tfl.BuiltinOptions.DepthwiseConv2DOptions, tfl.DepthwiseConv2DOptionsEnd(b)


def _reshape_options(b, tfl, o, vector):
    new_shape = vector(o["new_shape"], np.int32)
    tfl.ReshapeOptionsStart(b)
    tfl.ReshapeOptionsAddNewShape(b, new_shape)
    return tfl.BuiltinOptions.ReshapeOptions, tfl.ReshapeOptionsEnd(b)


def _pool_options(b, tfl, o, vector):
    tfl.Pool2DOptionsStart(b)
    tfl.Pool2DOptionsAddPadding(b, getattr(tfl.Padding, o["padding"]))
    tfl.Pool2DOptionsAddStrideW(b, o["stride"])
    tfl.Pool2DOptionsAddStrideH(b, o["stride"])
    tfl.Pool2DOptionsAddFilterWidth(b, o["filter_w"])
    tfl.Pool2DOptionsAddFilterHeight(b, o["filter_h"])
    tfl.Pool2DOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    return tfl.BuiltinOptions.Pool2DOptions, tfl.Pool2DOptionsEnd(b)


def _add_options(b, tfl, o, vector):
    tfl.AddOptionsStart(b)
    tfl.AddOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    return tfl.BuiltinOptions.AddOptions, tfl.AddOptionsEnd(b)


def _fully_connected_options(b, tfl, o, vector):
    tfl.FullyConnectedOptionsStart(b)
    tfl.FullyConnectedOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    return tfl.BuiltinOptions.FullyConnectedOptions, tfl.FullyConnectedOptionsEnd(b)


def _mean_options(b, tfl, o, vector):
    tfl.ReducerOptionsStart(b)
    tfl.ReducerOptionsAddKeepDims(b, o["keep_dims"])
    return tfl.BuiltinOptions.ReducerOptions, tfl.ReducerOptionsEnd(b)


def _quantize_options(b, tfl, o, vector):
    tfl.QuantizeOptionsStart(b)
    return tfl.BuiltinOptions.QuantizeOptions, tfl.QuantizeOptionsEnd(b)


def _pad_options(b, tfl, o, vector):
    tfl.PadOptionsStart(b)
    return tfl.BuiltinOptions.PadOptions, tfl.PadOptionsEnd(b)


_OPTIONS = {"CONV_2D": _conv_options, "DEPTHWISE_CONV_2D": _depthwise_options, "RESHAPE": _reshape_options,
            "AVERAGE_POOL_2D": _pool_options, "QUANTIZE": _quantize_options, "PAD": _pad_options, "ADD": _add_options,
            "FULLY_CONNECTED": _fully_connected_options, "MEAN": _mean_options}
