"""A .tflite file read for the importer: its tables copied out of the flatbuffer and checked, and the helpers
every op's import uses (operands, options, weights, bias, requantization, fused activation, refusals).

The generic half of the importer (tflite_import walks the graph, edgepack.interop.tflite_ops maps each
builtin op): a damaged file is refused here, before any op is looked at, by what is wrong in it. The
flatbuffer's tables are copied out once (flatbuffers' own out-of-bounds errors, and only those, mean
"corrupt"), then every index, shape, type, buffer size, scale and zero point is checked against the schema
(_check_structure). The ops' own checks (operands, options, output sizes, as LiteRT's Prepare) use the
Reader's helpers, so each refusal is one line naming the op and the fix.
"""
from __future__ import annotations

import inspect
import math
import struct
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.errors import ConfigError, DataError, ToolchainError
from edgepack.ops.base import pair
from edgepack.plan.plan import PLAN_INPUT, QParams, quantize_multiplier

SCHEMA_VERSION = 3  # what LiteRT (and TFLite since 1.x) reads
NO_PADS = (0, 0, 0, 0)
ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}  # tflite.ActivationFunctionType NONE, RELU, RELU6

def _schema():
    try:
        import tflite
    except ImportError:
        raise ToolchainError("reading .tflite models needs the tflite package: pip install tflite")
    return tflite


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8", "int16", "int32", "float32", ...
    scale: np.ndarray  # float32, empty when not quantized
    zero_point: np.ndarray  # int64
    quantized_dimension: int
    data: np.ndarray | None  # constants only

    def qparams(self, where: str) -> QParams:
        if len(self.scale) != 1:
            raise ConfigError(f"{where}: tensor '{self.name}' is not quantized per tensor: activations must have one "
                              "scale and zero point (convert with full int8 quantization)")
        return QParams(float(self.scale[0]), int(self.zero_point[0]))


@dataclass
class Value:
    """An activation as the plan sees it: (C, H, W) or (F,), its quantization, and for an (F,) that a
    RESHAPE flattened from a map, that map's (C, H, W) (flattened in NHWC order, not the plan's CHW);
    the plan tensor holding it (a layer index, PLAN_INPUT for the input), the pads of a PAD that
    produced it (folded into the conv that reads it), and whether the file holds it as a rank-3 signal."""

    shape: tuple[int, ...]
    q: QParams
    flattened_map: tuple[int, int, int] | None = None
    producer: int = PLAN_INPUT
    pads: tuple[int, int, int, int] = NO_PADS
    signal: bool = False  # a (C, 1, L) / (C, L, 1) map the file holds as a (1, L, C) signal (after a 1-D conv)


# ---- reading the flatbuffer: everything copied out once, then checked, before any op is looked at ---------------

# TensorType -> numpy dtype of the types a constant may hold here; other types are named, never decoded.
_NUMPY_TYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "int8": np.int8, "int16": np.int16,
                "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32,
                "uint64": np.uint64, "bool": np.bool_}
_ZERO_POINT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
MAX_TENSOR_ELEMENTS = 2**28  # 256 Mi values: far beyond any image model the plan runs (a 4096x4096x16 map)


@dataclass
class _Op:
    """An operator as the file stores it (indices into the opcode and tensor tables)."""

    opcode: int
    inputs: list[int]
    outputs: list[int]
    options_type: int  # a tflite.BuiltinOptions value
    options: object | None  # the generated options reader, every field read once at load (so reads cannot fail later)


@dataclass
class _RawTensor:
    name: str
    shape: tuple[int, ...]
    type: int  # a tflite.TensorType value
    buffer: int
    scale: np.ndarray  # float32; empty: not quantized
    zero_point: np.ndarray  # int64
    quantized_dimension: int


@dataclass
class _Contents:
    """What the importer reads from a .tflite, copied out of the flatbuffer (see _read_contents)."""

    version: int  # the TFLite schema version; LiteRT reads 3 only
    opcodes: list[tuple[int, str]]  # (builtin code, custom code)
    buffers: list[bytes | None]  # constant data, None when empty
    tensors: list[_RawTensor]
    ops: list[_Op]
    inputs: list[int]
    outputs: list[int]
    type_names: dict[int, str]


def _read_contents(tfl, data: bytes, path: Path) -> _Contents:
    """The file's tables copied into plain values. The generated readers follow offsets without checking
    them: a corrupt file makes flatbuffers raise struct.error, ValueError (numpy reading a vector past the
    end), TypeError (its own offset range check) or IndexError. Only those, raised inside the flatbuffers
    package, mean "corrupt"; anything else is an edgepack bug and propagates."""
    try:
        return _copy_contents(tfl, data, path)
    except (struct.error, ValueError, TypeError, IndexError) as e:
        frames = traceback.extract_tb(e.__traceback__)
        if not frames or Path(frames[-1].filename).parent.name != "flatbuffers":
            raise
        kind = type(e).__name__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__name__}"
        raise DataError(f"--model {path} is corrupt: an offset or length in it points outside the file ({kind}): "
                        "convert the model again or copy it intact") from None


def _length(n: int, data: bytes, path: Path, what: str) -> int:
    """A table vector's length, bounded by the file (each entry takes 4 bytes) before it is iterated."""
    if not 0 <= n <= len(data) // 4:
        raise DataError(f"--model {path} is corrupt: it claims {n} {what} in {len(data)} bytes: convert the model again")
    return n


def _copy_contents(tfl, data: bytes, path: Path) -> _Contents:
    model = tfl.Model.GetRootAs(data, 0)
    subgraphs = _length(model.SubgraphsLength(), data, path, "subgraphs")
    if subgraphs != 1:
        raise ConfigError(f"--model {path} has {subgraphs} subgraphs: only single-graph models (no control flow) "
                          "can be imported")
    graph = model.Subgraphs(0)
    opcodes = []
    for i in range(_length(model.OperatorCodesLength(), data, path, "operator codes")):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        opcodes.append((max(code.BuiltinCode(), code.DeprecatedBuiltinCode()),  # TFLite's GetBuiltinCode
                        custom.decode(errors="replace") if custom else ""))
    buffers = []
    for i in range(_length(model.BuffersLength(), data, path, "buffers")):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            buffers.append(buffer.DataAsNumpy().tobytes())
        elif buffer.Offset() > 1:  # large models keep constants after the flatbuffer
            offset, size = buffer.Offset(), buffer.Size()
            if offset + size > len(data):
                raise DataError(f"--model {path} is corrupt: buffer {i} lies at bytes {offset}..{offset + size}, past "
                                f"the end of the {len(data)}-byte file: convert the model again or copy it intact")
            buffers.append(data[offset:offset + size])
        else:
            buffers.append(None)
    tensors = [_copy_tensor(graph.Tensors(i)) for i in range(_length(graph.TensorsLength(), data, path, "tensors"))]
    options = {v: k for k, v in vars(tfl.BuiltinOptions).items() if not k.startswith("_")}
    ops = [_copy_op(tfl, graph.Operators(i), options)
           for i in range(_length(graph.OperatorsLength(), data, path, "operators"))]
    io = [graph.InputsAsNumpy() if graph.InputsLength() else [], graph.OutputsAsNumpy() if graph.OutputsLength() else []]
    type_names = {v: k.lower() for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
    return _Contents(model.Version(), opcodes, buffers, tensors, ops, *([int(x) for x in v] for v in io), type_names)


def _copy_tensor(t) -> _RawTensor:
    q = t.Quantization()
    scale = np.array(q.ScaleAsNumpy() if q is not None and q.ScaleLength() else [], np.float32)
    zero = np.array(q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else [], np.int64)
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    return _RawTensor((t.Name() or b"").decode(errors="replace"), shape, t.Type(), t.Buffer(), scale, zero,
                      q.QuantizedDimension() if q is not None else 0)


def _copy_op(tfl, op, option_names: dict[int, str]) -> _Op:
    inputs = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
    outputs = [int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else []
    kind = option_names.get(op.BuiltinOptionsType())
    table, options = op.BuiltinOptions(), None
    if table is not None and kind not in (None, "NONE") and hasattr(tfl, kind):
        options = getattr(tfl, kind)()
        options.Init(table.Bytes, table.Pos)
        for name, method in vars(type(options)).items():  # read every scalar field now, inside the guard
            if inspect.isfunction(method) and method.__code__.co_argcount == 1 and not name.startswith("_"):
                getattr(options, name)()
    return _Op(op.OpcodeIndex(), inputs, outputs, op.BuiltinOptionsType(), options)


def _default_options(tfl, table_class: str):
    """An options table with every field at its schema default, as TFLite reads an op stored without one."""
    import flatbuffers

    b = flatbuffers.Builder(16)
    getattr(tfl, f"{table_class}Start")(b)
    b.Finish(getattr(tfl, f"{table_class}End")(b))
    return getattr(tfl, table_class).GetRootAs(b.Output(), 0)


def _op_name(names: dict[int, str], value: int, custom: str) -> str:
    name = names.get(value, f"builtin {value}")
    return f"CUSTOM '{custom}'" if name == "CUSTOM" else name


def _check_structure(c: _Contents, path: Path) -> None:
    """Every index, shape, buffer size and quantization checked against the schema before any is used."""
    def corrupt(what: str):
        raise DataError(f"--model {path} is corrupt: {what}: convert the model again")

    if c.version != SCHEMA_VERSION:
        raise ConfigError(f"--model {path} has TFLite schema version {c.version}, not {SCHEMA_VERSION}: convert it with a "
                          "current TFLite converter")
    tensors = len(c.tensors)
    for role, indices in (("input", c.inputs), ("output", c.outputs)):
        bad = [t for t in indices if not 0 <= t < tensors]
        if bad:
            corrupt(f"the model's {role} is tensor {bad[0]}, and it has {tensors} tensors")
    for i, op in enumerate(c.ops):
        if not 0 <= op.opcode < len(c.opcodes):
            corrupt(f"op {i} uses opcode {op.opcode}, and the opcode table has {len(c.opcodes)}")
        bad = [t for t in op.inputs if not -1 <= t < tensors] + [t for t in op.outputs if not 0 <= t < tensors]
        if bad:
            corrupt(f"op {i} reads or writes tensor {bad[0]}, and the model has {tensors} tensors")
    for i, t in enumerate(c.tensors):
        _check_tensor(c, i, t, path, corrupt)


def _check_tensor(c: _Contents, i: int, t: _RawTensor, path: Path, corrupt) -> None:
    where = f"tensor {i} ('{t.name}')"
    dtype = c.type_names.get(t.type)
    if dtype is None:
        corrupt(f"{where} has type {t.type}, which the TFLite schema does not define")
    if any(d < 1 for d in t.shape) or math.prod(t.shape) > MAX_TENSOR_ELEMENTS:
        corrupt(f"{where} has shape {_dims(t.shape)}: dimensions must be positive and at most "
                f"{MAX_TENSOR_ELEMENTS} values in all")
    if not 0 <= t.buffer < len(c.buffers):
        corrupt(f"{where} uses buffer {t.buffer}, and the model has {len(c.buffers)} buffers")
    raw = c.buffers[t.buffer]
    if raw is not None:
        if dtype not in _NUMPY_TYPES:
            raise ConfigError(f"--model {path}: {where} holds {dtype} constants, which no op the int8 plan imports takes")
        need = math.prod(t.shape) * np.dtype(_NUMPY_TYPES[dtype]).itemsize
        if len(raw) != need:
            corrupt(f"{where} has {len(raw)} bytes in buffer {t.buffer} but its shape {_dims(t.shape)} of {dtype} "
                    f"needs {need}")
    _check_quantization(where, dtype, t, corrupt)


def _dims(shape: tuple[int, ...]) -> str:
    """A shape for a one-line message: a corrupt one may have thousands of dimensions."""
    return str(list(shape)) if len(shape) <= 8 else f"[{', '.join(map(str, shape[:8]))}, ... ({len(shape)} dimensions)]"


def _check_quantization(where: str, dtype: str, t: _RawTensor, corrupt) -> None:
    scale, zero = t.scale, t.zero_point
    if not len(scale):
        return  # not quantized: refused by name where an op needs a scale (Tensor.qparams, Reader.weights)
    if len(zero) != len(scale):  # LiteRT's InterpreterBuilder refuses it too
        corrupt(f"{where} has {len(scale)} scales and {len(zero)} zero points")
    if len(scale) > 1 and not (0 <= t.quantized_dimension < len(t.shape) and t.shape[t.quantized_dimension] == len(scale)):
        corrupt(f"{where} has {len(scale)} scales along dimension {t.quantized_dimension} of shape {_dims(t.shape)}")
    if dtype not in _ZERO_POINT_RANGES:
        return  # e.g. an int32 bias: the plan derives its requantization from the input and weight scales
    if not (np.isfinite(scale) & (scale > 0)).all():
        corrupt(f"{where} has scale {float(scale[~(np.isfinite(scale) & (scale > 0))][0])}: scales must be positive "
                "and finite")
    lo, hi = _ZERO_POINT_RANGES[dtype]
    if ((zero < lo) | (zero > hi)).any():
        corrupt(f"{where} has zero point {int(zero[(zero < lo) | (zero > hi)][0])}, outside {dtype}'s [{lo}, {hi}]")


def _decode(c: _Contents, i: int) -> Tensor:
    """A checked tensor with its constant data as numpy (little-endian, as the file stores it)."""
    t = c.tensors[i]
    dtype, raw = c.type_names[t.type], c.buffers[t.buffer]
    zero = t.zero_point
    data = None
    if raw is not None:
        numpy_type = np.dtype(_NUMPY_TYPES[dtype])
        data = np.frombuffer(raw, numpy_type.newbyteorder("<")).reshape(t.shape).astype(numpy_type)
    return Tensor(i, t.name, t.shape, dtype, t.scale, zero, t.quantized_dimension, data)



class Reader:
    """The checked contents of one .tflite file, and what an op's import needs to read and refuse it."""

    def __init__(self, path: Path, data: bytes):
        tfl = _schema()
        self.path, self.tfl = path, tfl
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ConfigError(f"--model {path} is not a TFLite flatbuffer (no TFL3 identifier): pass a .tflite model file")
        contents = _read_contents(tfl, data, path)
        _check_structure(contents, path)
        self.ops, self.inputs, self.outputs = contents.ops, contents.inputs, contents.outputs
        self.tensors = [_decode(contents, i) for i in range(len(contents.tensors))]
        names = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
        self.op_names = [_op_name(names, *contents.opcodes[op.opcode]) for op in self.ops]
        self.op_counts = {name: self.op_names.count(name) for name in sorted(set(self.op_names))}
        self.values: dict[int, Value] = {}  # .tflite tensor -> what the plan holds for it (the walker fills it)
        self.last_compute = -1  # the last op that becomes a plan layer (the walker sets it): where a classifier is

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]  # every index an op or the subgraph names was checked at load (_check_structure)

    def operand(self, i: int, inputs: list[int], k: int, what: str) -> Tensor:
        """Input ``k`` of op ``i`` (-1 marks an omitted optional input in TFLite)."""
        if len(inputs) <= k or inputs[k] < 0:
            self.refuse(i, f"has no {what} (input {k})", "convert the model again: the file is damaged")
        return self.tensors[inputs[k]]

    def options(self, op: _Op, table_class: str):
        """The op's builtin options as ``table_class`` (the file may omit them: then TFLite's defaults)."""
        expected = getattr(self.tfl.BuiltinOptions, table_class)
        if op.options_type not in (self.tfl.BuiltinOptions.NONE, expected):
            i = next(k for k, other in enumerate(self.ops) if other is op)
            raise DataError(f"--model {self.path} is corrupt: op {i} ({self.op_names[i]}) has builtin options of type "
                            f"{op.options_type}, not {table_class}: convert the model again")
        return op.options if op.options is not None else _default_options(self.tfl, table_class)

    def refuse(self, i: int, why: str, fix: str):
        raise ConfigError(f"--model {self.path}: op {i} ({self.op_names[i]}) {why}: {fix}")

    def io(self, i: int) -> tuple[list[int], list[int]]:
        return self.ops[i].inputs, self.ops[i].outputs

    # ---- what the ops' imports share ---------------------------------------------------------------------

    def weights(self, i: int, t: Tensor, shape: str, channels: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """int8 weights of layout ``shape`` ("OHWI", "1HWC", "OI") with ``channels`` along ``axis``, and their
        per-output-channel float32 scales (a per-tensor scale repeated)."""
        if len(t.shape) != len(shape) or t.shape[axis] != channels:
            self.refuse(i, f"has weights of shape {list(t.shape)}", f"expected {shape} weights with {channels} "
                        f"channels along axis {axis}")
        if t.data is None or t.dtype != "int8":
            self.refuse(i, f"has {t.dtype} or non-constant weights", "quantize the weights to int8 (full int8 conversion)")
        if t.zero_point.any():
            self.refuse(i, "has asymmetric weights (non-zero weight zero point)", "weights must be symmetric int8")
        if (t.data == -128).any():
            self.refuse(i, "has weights of -128", "the int8 plan takes symmetric weights in [-127, 127], as the TFLite "
                        "converter writes them")
        if len(t.scale) == 1:
            scales = np.full(channels, t.scale[0], np.float32)
        elif len(t.scale) == channels and t.quantized_dimension == axis:
            scales = t.scale.astype(np.float32)
        else:
            self.refuse(i, f"has {len(t.scale)} weight scales along axis {t.quantized_dimension}",
                        f"quantize per tensor or per output channel ({channels} scales)")
        return t.data, scales

    def bias(self, i: int, inputs: list[int], channels: int) -> np.ndarray:
        if len(inputs) < 3 or inputs[2] < 0:
            return np.zeros(channels, np.int32)
        t = self.tensor(inputs[2])
        if t.data is None or t.dtype != "int32" or t.data.size != channels:
            self.refuse(i, f"has a {t.dtype} bias of {t.data.size if t.data is not None else 0} values",
                        f"the int8 plan takes a constant int32 bias of {channels} values")
        return t.data.reshape(channels).astype(np.int32)

    def arrays(self, i, inputs, weight: np.ndarray, in_q: QParams, scales: np.ndarray, out_q: QParams) -> dict:
        """A conv's or fc's plan arrays. A multiplier above 1 is a left shift of the int32 accumulator, which
        TFLite's kernels do in int32 (overflow is undefined there): refused unless no input can overflow it."""
        arrays = {"weight": weight, "bias": self.bias(i, inputs, len(weight)), **self.requantization(in_q, scales, out_q)}
        terms = np.abs(weight.reshape(len(weight), -1).astype(np.int64)).sum(axis=1)
        worst = terms * 255 + np.abs(arrays["bias"].astype(np.int64))  # |accumulator| for any input
        shifted = worst * 2.0 ** np.maximum(arrays["shift"], 0)
        if (shifted > 2**31 - 1).any():
            c = int(np.argmax(shifted))
            self.refuse(i, f"requantizes channel {c} by {float(in_q.scale) * float(scales[c]) / float(out_q.scale):g} "
                        "(input scale x weight scale / output scale), which overflows int32 in TFLite's kernels",
                        "convert the model again: its weight or output scales are damaged")
        return arrays

    def requantization(self, in_q: QParams, w_scales: np.ndarray, out_q: QParams) -> dict:
        """Multipliers and shifts as TFLite's PopulateConvolutionQuantizationParams: each float32 scale
        widened to double, in_scale * w_scale[c] / out_scale, then QuantizeMultiplier."""
        in_s, out_s = float(np.float32(in_q.scale)), float(np.float32(out_q.scale))
        pairs = [quantize_multiplier(in_s * float(s) / out_s) for s in w_scales]
        return {"multiplier": np.array([m for m, _ in pairs], np.int32), "shift": np.array([s for _, s in pairs], np.int32),
                "weight_scale": w_scales.astype(np.float32)}

    def activation(self, i: int, code: int, out_q: QParams) -> dict:
        """act_min / act_max as TFLite's CalculateActivationRangeQuantized: the bound divided by the float32
        scale in float32, rounded half away from zero, plus the zero point."""
        if code not in ACTIVATIONS:
            self.refuse(i, f"has fused activation {code}", "use NONE, RELU or RELU6")
        scale = np.float32(out_q.scale)

        def quantize(real: float) -> int:
            with np.errstate(over="ignore"):
                v = float(np.float32(real) / scale)
            if not abs(v) < 2**31:  # TFLite casts it to int32: undefined beyond, inf included
                self.refuse(i, f"has output scale {out_q.scale:g}, so small that its {ACTIVATIONS[code].upper()} bound "
                            f"{real} / scale leaves int32", "convert the model again: the file is damaged")
            return out_q.zero_point + int(math.copysign(math.floor(abs(v) + 0.5), v))

        activation = ACTIVATIONS[code]
        lo = -128 if activation == "none" else max(-128, quantize(0.0))
        hi = min(127, quantize(6.0)) if activation == "relu6" else 127
        return {"activation": activation, "act_min": int(lo), "act_max": int(hi)}

    def same_pads(self, h: int, w: int, k, s, oh: int, ow: int) -> tuple[int, int, int, int]:
        """TFLite's ComputePaddingHeightWidth (dilation 1): total = max((out - 1) * s + k - in, 0) per axis, the
        odd row / column at the bottom / right. ``k`` and ``s``: one int, or (along H, along W)."""
        (kh, kw), (sh, sw) = pair(k), pair(s)
        th, tw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
        return th // 2, tw // 2, th - th // 2, tw - tw // 2

