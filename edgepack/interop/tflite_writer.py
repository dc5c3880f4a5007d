"""The .tflite flatbuffer as edgepack writes it: a graph of tensors and builtin ops, serialized to bytes.

The generic half of the exporter (tflite_export walks the plan, edgepack.interop.tflite_ops maps each op
kind): tensors with their quantization, ops in execution order, and the flatbuffer writer. Each builtin op
code is written with its options table and version; the structural ops the walker itself writes (PAD,
QUANTIZE, RESHAPE) are here, an op module adds its own codes with ``@builtin_options(code, version)``.
The bytes depend on the graph alone (no timestamps, no version strings): same graph, same file.
Uses the PyPI ``tflite`` package (the generated schema builders) and ``flatbuffers``; no TensorFlow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgepack.errors import ToolchainError, UnsupportedModelError
from edgepack.ops.base import pair
from edgepack.plan.plan import Layer, QParams

DESCRIPTION = "edgepack int8 plan"
SCHEMA_VERSION = 3
# Op versions as the TFLite converter marks int8 (per-channel) models; they only select a registration.
OP_VERSIONS: dict[str, int] = {}
_CONST_ALIGNMENT = 16  # constant buffers start on 16 bytes, as the converter lays them out


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8" | "int16" | "int32"
    scale: np.ndarray | None = None  # float32, one per tensor or one per channel
    zero_point: np.ndarray | None = None  # int64
    quantized_dimension: int = 0
    data: np.ndarray | None = None  # constants only


@dataclass
class Operator:
    code: str  # a tflite.BuiltinOperator name
    inputs: list[int]
    outputs: list[int]
    options: dict  # fields of the op's builtin options table (see OPTIONS)


class Graph:
    """Tensors and ops in execution order; indices are positions in these lists."""

    def __init__(self):
        self.tensors: list[Tensor] = []
        self.ops: list[Operator] = []
        self.quant: dict[int, QParams] = {}
        self.input = self.output = -1
        self.more_inputs: list[int] = []  # further subgraph inputs (one-op test models)
        self.more_outputs: list[int] = []  # further subgraph outputs (a plan with several outputs)

    def activation(self, name: str, shape: tuple[int, ...], q: QParams, dtype: str = "int8") -> int:
        self.tensors.append(Tensor(name, tuple(shape), dtype, np.array([q.scale], np.float32),
                                   np.array([q.zero_point], np.int64)))
        self.quant[len(self.tensors) - 1] = q
        return len(self.tensors) - 1

    def constant(self, name: str, data: np.ndarray, scale: np.ndarray | None = None, axis: int = 0) -> int:
        data = np.ascontiguousarray(data)
        zero = None if scale is None else np.zeros(len(scale), np.int64)
        dtype = {np.dtype(np.int8): "int8", np.dtype(np.int32): "int32"}[data.dtype]
        self.tensors.append(Tensor(name, data.shape, dtype, scale, zero, axis, data))
        return len(self.tensors) - 1

    def op(self, code: str, inputs: list[int], outputs: list[int], **options) -> None:
        self.ops.append(Operator(code, inputs, outputs, options))


def bias_scale(in_q: QParams, w_scale: np.ndarray) -> np.ndarray:
    """The int32 bias's per-channel scale, in_scale * w_scale[c] in float32 as the converter writes it."""
    return (np.float64(np.float32(in_q.scale)) * w_scale.astype(np.float64)).astype(np.float32)


def _round_half_away(v: float) -> int:
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def fused_activation(layer: Layer) -> str:
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

OPTIONS: dict[str, Callable] = {}  # op code -> fn(builder, tflite, options, vector) -> (options type, offset)


def builtin_options(code: str, version: int):
    """Register how op ``code``'s builtin options are written and the version its opcode is marked with."""
    def add(fn: Callable) -> Callable:
        if code in OPTIONS and OPTIONS[code] is not fn:
            raise ValueError(f"TFLite op {code} has its options writer registered twice: {_where(OPTIONS[code])} "
                             f"and {_where(fn)}")
        OPTIONS[code], OP_VERSIONS[code] = fn, version
        return fn
    return add


def _where(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def pool2d_options(b, tfl, o, vector):
    """Pool2DOptions, which AVERAGE_POOL_2D and MAX_POOL_2D share (each registers it with builtin_options)."""
    tfl.Pool2DOptionsStart(b)
    tfl.Pool2DOptionsAddPadding(b, getattr(tfl.Padding, o["padding"]))
    stride_h, stride_w = pair(o["stride"])
    tfl.Pool2DOptionsAddStrideW(b, stride_w)
    tfl.Pool2DOptionsAddStrideH(b, stride_h)
    tfl.Pool2DOptionsAddFilterWidth(b, o["filter_w"])
    tfl.Pool2DOptionsAddFilterHeight(b, o["filter_h"])
    tfl.Pool2DOptionsAddFusedActivationFunction(b, getattr(tfl.ActivationFunctionType, o["activation"]))
    return tfl.BuiltinOptions.Pool2DOptions, tfl.Pool2DOptionsEnd(b)


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


def serialize(g: Graph) -> bytes:
    """The graph as .tflite bytes; every op code in it has its options writer registered (OPTIONS)."""
    flatbuffers, tfl = _schema()
    w = _Writer(flatbuffers)
    b = w.b
    buffer_of, buffers = _buffers(w, tfl, g)
    tensors = _tensors(w, tfl, g, buffer_of)
    codes = sorted({op.code for op in g.ops}, key=lambda c: getattr(tfl.BuiltinOperator, c))
    operators = _operators(w, tfl, g, codes)

    tensor_vec, op_vec = w.tables(tensors), w.tables(operators)
    inputs, outputs, name = w.vector([g.input] + g.more_inputs, np.int32), w.vector([g.output] + g.more_outputs, np.int32), b.CreateString("main")
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


def _buffers(w: _Writer, tfl, g: Graph) -> tuple[dict[int, int], list[int]]:
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


def _tensors(w: _Writer, tfl, g: Graph, buffer_of: dict[int, int]) -> list[int]:
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


def _operators(w: _Writer, tfl, g: Graph, codes: list[str]) -> list[int]:
    b, operators = w.b, []
    for op in g.ops:
        inputs, outputs = w.vector(op.inputs, np.int32), w.vector(op.outputs, np.int32)
        options_type, options = OPTIONS[op.code](b, tfl, op.options, w.vector)
        tfl.OperatorStart(b)
        tfl.OperatorAddOpcodeIndex(b, codes.index(op.code))
        tfl.OperatorAddInputs(b, inputs)
        tfl.OperatorAddOutputs(b, outputs)
        tfl.OperatorAddBuiltinOptionsType(b, options_type)
        tfl.OperatorAddBuiltinOptions(b, options)
        operators.append(tfl.OperatorEnd(b))
    return operators


@builtin_options("RESHAPE", 1)
def _reshape_options(b, tfl, o, vector):
    new_shape = vector(o["new_shape"], np.int32)
    tfl.ReshapeOptionsStart(b)
    tfl.ReshapeOptionsAddNewShape(b, new_shape)
    return tfl.BuiltinOptions.ReshapeOptions, tfl.ReshapeOptionsEnd(b)


@builtin_options("QUANTIZE", 2)
def _quantize_options(b, tfl, o, vector):
    tfl.QuantizeOptionsStart(b)
    return tfl.BuiltinOptions.QuantizeOptions, tfl.QuantizeOptionsEnd(b)


@builtin_options("PAD", 2)
def _pad_options(b, tfl, o, vector):
    tfl.PadOptionsStart(b)
    return tfl.BuiltinOptions.PadOptions, tfl.PadOptionsEnd(b)
