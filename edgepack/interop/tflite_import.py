"""An int8 .tflite model read back as the int8 plan, so any backend can compile it (issue 14, item 4).

The file is read with the PyPI ``tflite`` package (the generated flatbuffer schema; no TensorFlow).
A graph of the ops the plan can express is accepted (ops in the file's execution order, each reading
tensors earlier ops produced), and an op outside SUPPORTED_OPS is refused by name before any heavy work.
Each op maps onto a plan layer with TFLite's own integer arithmetic:

- CONV_2D / DEPTHWISE_CONV_2D (depth multiplier 1): OHWI / 1HWC weights become the plan's OIHW /
  (C, 1, KH, KW); SAME padding becomes TFLite's pads (ComputePaddingHeightWidth: bottom/right get the odd
  row on stride 2), a PAD before the conv is folded into its pads (TFLite pads int8 with the zero point,
  as the plan does); a CONV_2D whose kernel covers the whole map at the end is the classifier (how
  edgepack's exporter writes the fc);
- requantization multipliers and shifts are recomputed from the float32 scales exactly as TFLite's
  PopulateConvolutionQuantizationParams does: double(in) * double(w[c]) / double(out), then
  QuantizeMultiplier; fused RELU / RELU6 become act_min / act_max as CalculateActivationRangeQuantized;
- AVERAGE_POOL_2D over the whole map (quantization kept) is the global pool; so is edgepack's own
  QUANTIZE int8->int16, AVERAGE_POOL_2D int16, QUANTIZE int16->int8 (tflite_export._global_average_pool);
  MEAN over H and W (keep_dims either way, Keras' GlobalAveragePooling2D) is a "mean" pool: LiteRT folds
  1/count into its requantization (plan.mean_requantization), which may rescale;
- FULLY_CONNECTED is an fc with rounding "single": LiteRT rounds acc * M once, not twice as gemmlowp
  (an NHWC-flattened input's weights are reordered to the plan's CHW order);
  RESHAPE is a no-op; a trailing SOFTMAX is dropped: the plan's output is its input, the logits;
- ADD of two activations of one shape (a residual sum, e.g. MobileNetV2's) is an "add" layer reading the
  layers that produced them, its multipliers prepared as TFLite's int8 ADD does (plan.add_multipliers) and
  its fused RELU / RELU6 the same clamp as a conv's;
- the converter's default float32 interface (a first QUANTIZE float32 -> int8, a last DEQUANTIZE) is
  dropped too: the plan takes and gives the int8 tensors inside it.

AVERAGE_POOL_2D over an even count with a non-zero zero point rounds the raw sum, zero point included,
where the plan's "average" pool rounds the zero-point-free sum (ties differ): it becomes a "raw_average"
pool. All of this is checked against LiteRT 2.3's reference kernels (tests/e2e/test_tflite_heads.py and
tests/e2e/test_tflite_import.py).

A damaged file is refused before any of this, by what is wrong in it: the flatbuffer's tables are copied
out once (flatbuffers' own out-of-bounds errors, and only those, mean "corrupt"), then every index,
shape, type, buffer size, scale and zero point is checked against the schema (_check_structure); the walk
checks each op's operands, options and output sizes as LiteRT's Prepare would, and last LiteRT itself
loads and prepares the file, so compile never meets a file LiteRT refuses or aborts on.

Whether the plan is bit-exact with the file is not assumed: compile checks the numpy reference
against LiteRT's reference kernels on the file itself (edgepack.frontends.tflite).
"""
from __future__ import annotations

import hashlib
import inspect
import math
import struct
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgepack import ops
from edgepack.errors import ConfigError, DataError, ToolchainError
from edgepack.ops.add import AddParams
from edgepack.ops.avgpool import AvgPoolParams
from edgepack.ops.fc import FcParams
from edgepack.plan.plan import ADD_LEFT_SHIFT, PLAN_INPUT, Layer, Plan, QParams, add_multipliers, mean_requantization, quantize_multiplier

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED", "ADD", "RESHAPE",
                 "PAD", "QUANTIZE", "SOFTMAX", "DEQUANTIZE")
SCHEMA_VERSION = 3  # what LiteRT (and TFLite since 1.x) reads
SOFTMAX_DROPPED = "dropped: outputs are the logits (the trailing SOFTMAX's input)"
PLAN_BACKENDS = ("c", "tvm", "tflm")  # backends that lower the int8 plan itself
_COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MEAN", "QUANTIZE", "ADD")
_NO_PADS = (0, 0, 0, 0)
_ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}  # tflite.ActivationFunctionType NONE, RELU, RELU6


@dataclass
class ImportedModel:
    """The plan read from a .tflite file, and where its output lives in that file (for LiteRT)."""

    path: Path
    sha256: str
    plan: Plan
    logits_tensor: int  # the file's tensor holding the plan's output: the SOFTMAX's input when it was dropped
    softmax: str | None  # SOFTMAX_DROPPED, or None when the file ends in the logits
    float_input: bool  # the file takes float32 and QUANTIZEs it (to the plan's input_q): LiteRT is fed floats
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return self.plan.input_shape[1]

    @property
    def classes(self) -> int:
        return self.plan.output_shape[0]

    def record(self) -> dict:
        """The manifest's account of the import."""
        return {"file": str(self.path), "sha256": self.sha256, "ops": self.op_counts, "softmax": self.softmax,
                "input": ("float32, quantized by its first QUANTIZE: the artifact takes that int8" if self.float_input
                          else "int8"), "logits_tensor": self.logits_tensor}

    def litert_input(self) -> tuple[float, int] | None:
        """What litert.run_reference_tensor needs to feed a float-input file."""
        q = self.plan.input_q
        return (q.scale, q.zero_point) if self.float_input else None


def is_tflite_spec(spec) -> bool:
    """A --model value (or the Python API's model argument) naming a .tflite file."""
    return isinstance(spec, (str, Path)) and str(spec).lower().endswith(".tflite")


def read_tflite(path) -> ImportedModel:
    """Parse ``path`` into the int8 plan; a ConfigError names what the plan cannot express and the fix, a
    DataError what is damaged in the file (each exit 2, one line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--model {path}: no such .tflite file: pass the path of an int8 TFLite model")
    data = path.read_bytes()
    graph = _Graph(path, data)
    plan, logits, softmax, float_input = graph.to_plan()
    problems = plan.problems()
    if problems:
        raise ConfigError(f"--model {path}: the int8 plan read from it is invalid ({problems[0]}): "
                          "convert the model with int8 weights in [-127, 127] and int32 biases")
    _check_litert_prepares(path, data)
    return ImportedModel(path.absolute(), hashlib.sha256(data).hexdigest(), plan, logits, softmax, float_input,
                         graph.op_counts)


def _check_litert_prepares(path: Path, data: bytes) -> None:
    """compile checks the plan against LiteRT's reference kernels on this very file: a file LiteRT itself
    refuses (its flatbuffer verifier, an op version it lacks, a kernel's Prepare check) is bad input, refused
    here with LiteRT's reason. Run after the checks above, which also keep LiteRT from aborting on what
    it does not check (a SOFTMAX's beta)."""
    try:
        from ai_edge_litert import interpreter as lite
    except ImportError as e:
        raise ToolchainError(f"importing .tflite models needs LiteRT ({e.name} is missing): pip install ai-edge-litert")
    try:
        lite.Interpreter(model_content=data, experimental_op_resolver_type=lite.OpResolverType.BUILTIN_REF,
                         num_threads=1).allocate_tensors()
    except (ValueError, RuntimeError) as e:
        reason = "; ".join(" ".join(line.split()) for line in str(e).splitlines() if line.strip())
        raise DataError(f"--model {path}: LiteRT's reference kernels refuse it ({reason}): convert the model again "
                        "(a damaged file, or ops newer than LiteRT reads)") from None


def check_backend(target) -> None:
    """An imported model has only its plan: backends that run qdq.onnx (onnxruntime, openvino) cannot take it."""
    if target.backend not in PLAN_BACKENDS:
        raise ConfigError(f"target {target.name} runs qdq.onnx, which an imported .tflite does not give: use a target "
                          "that compiles the int8 plan (c-host, cortex-m4, cortex-m7, rpi4, rpi5, arm64-a53, x86-tvm, tflm)")


def plan_profile(plan: Plan) -> dict:
    """Parameters and multiply-adds of a plan (an imported model has no torch module to profile)."""
    params = macs = 0
    for layer in plan.layers:
        if "weight" not in layer.arrays:  # pools and adds: no weights, no multiply-adds
            continue
        weights = int(layer.weight.size)
        params += weights + int(layer.arrays["bias"].size)
        spatial = int(np.prod(layer.output_shape[1:])) if len(layer.output_shape) == 3 else 1
        macs += weights * spatial
    return {"params": params, "macs": macs}


def _schema():
    try:
        import tflite
    except ImportError:
        raise ToolchainError("reading .tflite models needs the tflite package: pip install tflite")
    return tflite


@dataclass
class _Tensor:
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
class _Value:
    """An activation as the plan sees it: (C, H, W) or (F,), its quantization, and for an (F,) that a
    RESHAPE flattened from a map, that map's (C, H, W) (flattened in NHWC order, not the plan's CHW);
    the plan tensor holding it (a layer index, PLAN_INPUT for the input), and the pads of a PAD that
    produced it (folded into the conv that reads it)."""

    shape: tuple[int, ...]
    q: QParams
    flattened_map: tuple[int, int, int] | None = None
    producer: int = PLAN_INPUT
    pads: tuple[int, int, int, int] = _NO_PADS


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
        return  # not quantized: refused by name where an op needs a scale (_Tensor.qparams, _weights)
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


def _decode(c: _Contents, i: int) -> _Tensor:
    """A checked tensor with its constant data as numpy (little-endian, as the file stores it)."""
    t = c.tensors[i]
    dtype, raw = c.type_names[t.type], c.buffers[t.buffer]
    zero = t.zero_point
    data = None
    if raw is not None:
        numpy_type = np.dtype(_NUMPY_TYPES[dtype])
        data = np.frombuffer(raw, numpy_type.newbyteorder("<")).reshape(t.shape).astype(numpy_type)
    return _Tensor(i, t.name, t.shape, dtype, t.scale, zero, t.quantized_dimension, data)


class _Graph:
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
        unsupported = sorted(set(self.op_names) - set(SUPPORTED_OPS))
        if unsupported:
            raise ConfigError(f"--model {path} uses {', '.join(unsupported)}, outside the int8 plan: edgepack imports "
                              f"only {', '.join(SUPPORTED_OPS)}")
        self.op_counts = {name: self.op_names.count(name) for name in sorted(set(self.op_names))}

    def tensor(self, index: int) -> _Tensor:
        return self.tensors[index]  # every index an op or the subgraph names was checked at load (_check_structure)

    def operand(self, i: int, inputs: list[int], k: int, what: str) -> _Tensor:
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

    # ---- the walk ------------------------------------------------------------------------------------

    def to_plan(self) -> tuple[Plan, int, str | None, bool]:
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ConfigError(f"--model {self.path} has {len(self.inputs)} inputs and {len(self.outputs)} outputs: "
                              "import a model with one image input and one output")
        inp, start = self._plan_input()
        end, softmax = self._dropped_tail()
        _, h, w, c = inp.shape
        if h != w:
            raise ConfigError(f"--model {self.path}: input is {h}x{w}: edgepack's data pipeline feeds square images only")
        input_q = inp.qparams(f"--model {self.path}: the model input")
        self._layers: list[Layer] = []
        self._values = {inp.index: _Value((c, h, w), input_q)}  # .tflite tensor -> what the plan holds for it
        self._last_compute = max((i for i, n in enumerate(self.op_names[:end]) if n in _COMPUTE_OPS), default=-1)
        current, i = inp.index, start
        while i < end:
            current, used = self._step(i)
            i += used
        self._check_dropped_tail(end, current)
        return self._finished_plan(input_q, (c, h, w)), current, softmax, start == 1

    def _append(self, layer: Layer, reads: tuple[int, ...]) -> _Value:
        """Add ``layer`` reading the plan tensors ``reads`` (() = the previous layer, as a chain stores it)."""
        layers = self._layers
        layer.inputs = () if reads == (len(layers) - 1,) and ops.get(layer.kind).arity == 1 else reads
        layers.append(layer)
        return _Value(layer.output_shape, layer.output_q, producer=len(layers) - 1)

    def _step(self, i: int) -> tuple[int, int]:
        """Map op ``i`` (and the ops it fuses) into the plan: (the .tflite tensor it outputs, ops consumed)."""
        op, name, values = self.ops[i], self.op_names[i], self._values
        inputs, outputs = self._io(i)
        if not inputs or inputs[0] not in values or len(outputs) != 1:
            self.refuse(i, "reads a tensor no earlier op produced", "import a model whose ops are stored in "
                        "execution order, each with one output")
        out = self.tensor(outputs[0])
        if name != "QUANTIZE" and out.dtype != "int8":
            self.refuse(i, f"outputs {out.dtype}", "the int8 plan's ops output int8 (convert with full int8 "
                        "quantization)")
        value = values[inputs[0]]
        if value.pads != _NO_PADS and name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            self.refuse(i, "follows a PAD", "a PAD must feed a CONV_2D or DEPTHWISE_CONV_2D")
        if name == "PAD":
            values[out.index] = replace(value, pads=self._pad(i, inputs, value, out))  # the conv takes the unpadded map
        elif name == "QUANTIZE":
            layer, out = self._int16_pool(i, value, out)
            values[out.index] = self._append(layer, (value.producer,))
            return out.index, 3
        elif name == "RESHAPE":
            values[out.index] = self._reshape(i, value, out, self._reshape_target(i, op, inputs))
        elif name == "ADD":
            other = self._addend(i, inputs, values)
            values[out.index] = self._append(self._add(i, op, value, other, out), (value.producer, other.producer))
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MEAN"):
            values[out.index] = self._append(self._one_input_layer(i, op, name, inputs, value, out), (value.producer,))
        else:  # SOFTMAX, DEQUANTIZE
            self.refuse(i, "is not at the model's end", f"only a trailing {name} can be dropped")
        return out.index, 1

    def _one_input_layer(self, i: int, op, name: str, inputs: list[int], value: _Value, out: _Tensor) -> Layer:
        """The plan layer of a CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D or MEAN."""
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return self._convolution(i, op, name, inputs, value, out, value.pads, i == self._last_compute)
        if name == "FULLY_CONNECTED":
            return self._fully_connected(i, op, inputs, value, out)
        if name == "MEAN":
            return self._mean(i, op, inputs, value, out)
        layer = self._global_pool(i, op, inputs, value, out, value.q)
        if int(np.prod(value.shape[1:])) % 2 == 0 and value.q.zero_point != 0:
            layer.params = AvgPoolParams("raw_average")  # TFLite rounds the raw sum: on ties unlike the plan's "average"
        return layer

    def _check_dropped_tail(self, end: int, current: int) -> None:
        """The dropped SOFTMAX / DEQUANTIZE continue the chain from the last plan op to the model output."""
        tail = current
        for j in range(end, len(self.ops)):
            inputs, outputs = self._io(j)
            if inputs[:1] != [tail] or len(outputs) != 1:
                self.refuse(j, "does not continue the chain from the previous op", "only a trailing SOFTMAX / "
                            "DEQUANTIZE of the logits can be dropped")
            self._check_dropped(j, self.tensor(tail), self.tensor(outputs[0]))
            tail = outputs[0]
        layers = self._layers
        if tail != self.outputs[0] or not layers or self._values[current].producer != len(layers) - 1:
            raise ConfigError(f"--model {self.path}: the output tensor is not the result of the last op: import a "
                              "model whose last op gives the output")

    def _finished_plan(self, input_q: QParams, shape: tuple[int, int, int]) -> Plan:
        """The plan, refused unless it ends in a classifier and every layer leads to the output."""
        layers = self._layers
        if not layers or not ops.get(layers[-1].kind).classifier:
            raise ConfigError(f"--model {self.path} does not end in a classifier (FULLY_CONNECTED, or a CONV_2D over the "
                              "whole map): the int8 plan ends in an fc layer")
        plan = Plan(input_q, shape, layers)
        unread = sorted(set(range(len(layers) - 1)) - set(plan.last_readers()))
        if unread:  # a branch that never reaches the output: the plan would compute it for nothing
            raise ConfigError(f"--model {self.path}: the output of {layers[unread[0]].name} is never used: import a "
                              "model whose every op leads to the output")
        return plan

    def _plan_input(self) -> tuple[_Tensor, int]:
        """The int8 (1, H, W, C) tensor the plan takes, and the first op the plan computes."""
        inp, start = self.tensor(self.inputs[0]), 0
        if inp.dtype == "float32" and self.op_names[:1] == ["QUANTIZE"] and self._io(0)[0][:1] == [inp.index]:
            if len(self._io(0)[1]) != 1:
                self.refuse(0, "has no single output", "convert the model again: the file is damaged")
            inp, start = self.tensor(self._io(0)[1][0]), 1  # the converter's default float input: the plan takes its int8
            if inp.shape != self.tensor(self.inputs[0]).shape:
                self.refuse(0, f"quantizes {list(self.tensor(self.inputs[0]).shape)} into {list(inp.shape)}",
                            "convert the model again: the file is damaged")
        where = f"--model {self.path}: input '{inp.name}' is {inp.dtype} {list(inp.shape)}"
        if inp.dtype != "int8":
            raise ConfigError(f"{where}: edgepack imports int8 models (an int8 input, or float32 straight into a "
                              "QUANTIZE to int8): convert with full int8 quantization")
        if len(inp.shape) != 4:
            raise ConfigError(f"{where}, not an image: edgepack imports image models whose input is an int8 "
                              "(1, H, W, C) map, e.g. [1, 96, 96, 3]")
        if inp.shape[0] != 1:
            raise ConfigError(f"{where}: edgepack takes one image at a time: convert with batch 1, input "
                              f"[1, {', '.join(map(str, inp.shape[1:]))}]")
        return inp, start

    def _io(self, i: int) -> tuple[list[int], list[int]]:
        return self.ops[i].inputs, self.ops[i].outputs

    def _check_dropped(self, j: int, x: _Tensor, y: _Tensor) -> None:
        """A dropped SOFTMAX / DEQUANTIZE is still prepared by LiteRT when compile checks the file: what its
        int8 kernels require (softmax.cc, dequantize.cc) is checked here, before LiteRT could refuse or abort."""
        if self.op_names[j] == "DEQUANTIZE":
            if (x.dtype, y.dtype) != ("int8", "float32"):
                self.refuse(j, f"takes {x.dtype} to {y.dtype}", "a trailing DEQUANTIZE takes the int8 logits to float32")
            return
        beta = float(self.options(self.ops[j], "SoftmaxOptions").Beta())
        q, out_q = x.qparams(f"--model {self.path}: op {j}"), y.qparams(f"--model {self.path}: op {j}")
        if not (math.isfinite(beta) and beta * q.scale * 2**26 > 1):  # LiteRT aborts on a smaller multiplier
            self.refuse(j, f"has beta {beta} on inputs of scale {q.scale:g}", "a SOFTMAX needs a positive beta (1.0)")
        if (x.dtype, y.dtype) != ("int8", "int8") or out_q.zero_point != -128 or abs(out_q.scale * 256 - 1) > 1e-3:
            self.refuse(j, f"outputs {y.dtype} at scale {out_q.scale:g}, zero point {out_q.zero_point}",
                        "an int8 SOFTMAX outputs scale 1/256, zero point -128")

    def _dropped_tail(self) -> tuple[int, str | None]:
        """Where the plan's ops end: before a trailing SOFTMAX (the logits are its input) and before a
        trailing DEQUANTIZE to float32 (the converter's default float output; the plan gives its int8)."""
        end, softmax = len(self.ops), None
        if self.op_names[end - 1:end] == ["DEQUANTIZE"]:
            end -= 1
        if self.op_names[end - 1:end] == ["SOFTMAX"]:
            end, softmax = end - 1, SOFTMAX_DROPPED
        return end, softmax

    def _pad(self, i, inputs, value, out) -> tuple[int, int, int, int]:
        paddings = self.operand(i, inputs, 1, "paddings").data
        if paddings is None or paddings.shape != (4, 2) or paddings.dtype.kind != "i" or len(value.shape) != 3:
            self.refuse(i, "has no constant (4, 2) paddings on an NHWC map", "fold the padding into the conv (SAME)")
        if paddings[0].any() or paddings[3].any() or (paddings < 0).any():
            self.refuse(i, "pads the batch or channel axis", "only spatial zero padding fits the int8 plan")
        if out.qparams(f"--model {self.path}: op {i}") != value.q:
            self.refuse(i, "changes the quantization", "PAD must keep its input's scale and zero point")
        (top, bottom), (left, right) = paddings[1], paddings[2]
        return int(top), int(left), int(bottom), int(right)

    def _weights(self, i: int, t: _Tensor, shape: str, channels: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
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

    def _bias(self, i: int, inputs: list[int], channels: int) -> np.ndarray:
        if len(inputs) < 3 or inputs[2] < 0:
            return np.zeros(channels, np.int32)
        t = self.tensor(inputs[2])
        if t.data is None or t.dtype != "int32" or t.data.size != channels:
            self.refuse(i, f"has a {t.dtype} bias of {t.data.size if t.data is not None else 0} values",
                        f"the int8 plan takes a constant int32 bias of {channels} values")
        return t.data.reshape(channels).astype(np.int32)

    def _arrays(self, i, inputs, weight: np.ndarray, in_q: QParams, scales: np.ndarray, out_q: QParams) -> dict:
        """A conv's or fc's plan arrays. A multiplier above 1 is a left shift of the int32 accumulator, which
        TFLite's kernels do in int32 (overflow is undefined there): refused unless no input can overflow it."""
        arrays = {"weight": weight, "bias": self._bias(i, inputs, len(weight)), **self._requantization(in_q, scales, out_q)}
        terms = np.abs(weight.reshape(len(weight), -1).astype(np.int64)).sum(axis=1)
        worst = terms * 255 + np.abs(arrays["bias"].astype(np.int64))  # |accumulator| for any input
        shifted = worst * 2.0 ** np.maximum(arrays["shift"], 0)
        if (shifted > 2**31 - 1).any():
            c = int(np.argmax(shifted))
            self.refuse(i, f"requantizes channel {c} by {float(in_q.scale) * float(scales[c]) / float(out_q.scale):g} "
                        "(input scale x weight scale / output scale), which overflows int32 in TFLite's kernels",
                        "convert the model again: its weight or output scales are damaged")
        return arrays

    def _requantization(self, in_q: QParams, w_scales: np.ndarray, out_q: QParams) -> dict:
        """Multipliers and shifts as TFLite's PopulateConvolutionQuantizationParams: each float32 scale
        widened to double, in_scale * w_scale[c] / out_scale, then QuantizeMultiplier."""
        in_s, out_s = float(np.float32(in_q.scale)), float(np.float32(out_q.scale))
        pairs = [quantize_multiplier(in_s * float(s) / out_s) for s in w_scales]
        return {"multiplier": np.array([m for m, _ in pairs], np.int32), "shift": np.array([s for _, s in pairs], np.int32),
                "weight_scale": w_scales.astype(np.float32)}

    def _activation(self, i: int, code: int, out_q: QParams) -> dict:
        """act_min / act_max as TFLite's CalculateActivationRangeQuantized: the bound divided by the float32
        scale in float32, rounded half away from zero, plus the zero point."""
        if code not in _ACTIVATIONS:
            self.refuse(i, f"has fused activation {code}", "use NONE, RELU or RELU6")
        scale = np.float32(out_q.scale)

        def quantize(real: float) -> int:
            with np.errstate(over="ignore"):
                v = float(np.float32(real) / scale)
            if not abs(v) < 2**31:  # TFLite casts it to int32: undefined beyond, inf included
                self.refuse(i, f"has output scale {out_q.scale:g}, so small that its {_ACTIVATIONS[code].upper()} bound "
                            f"{real} / scale leaves int32", "convert the model again: the file is damaged")
            return out_q.zero_point + int(math.copysign(math.floor(abs(v) + 0.5), v))

        activation = _ACTIVATIONS[code]
        lo = -128 if activation == "none" else max(-128, quantize(0.0))
        hi = min(127, quantize(6.0)) if activation == "relu6" else 127
        return {"activation": activation, "act_min": int(lo), "act_max": int(hi)}

    def _same_pads(self, h: int, w: int, k: int, s: int, oh: int, ow: int) -> tuple[int, int, int, int]:
        """TFLite's ComputePaddingHeightWidth (dilation 1): total = max((out - 1) * s + k - in, 0), the
        odd row / column at the bottom / right."""
        th, tw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
        return th // 2, tw // 2, th - th // 2, tw - tw // 2

    def _convolution(self, i, op, name, inputs, value, out, extra_pads, last) -> Layer:
        depthwise = name == "DEPTHWISE_CONV_2D"
        opts = self.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
        shape = value.shape
        if len(shape) == 1 and not value.flattened_map:  # (F,) read as a (F, 1, 1) map, e.g. after an fc
            shape = (shape[0], 1, 1)
        if len(shape) != 3 or len(out.shape) != 4:
            self.refuse(i, "does not take an NHWC map", "convolutions need (1, H, W, C) tensors")
        c, h, w = shape
        _, oh, ow, o = out.shape
        s = opts.StrideH()
        if s != opts.StrideW() or opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1:
            self.refuse(i, "has unequal strides or dilation", "the int8 plan takes equal strides and no dilation")
        if s < 1 or opts.Padding() not in (self.tfl.Padding.SAME, self.tfl.Padding.VALID):
            self.refuse(i, f"has stride {s} and padding {opts.Padding()}", "a stride of 1 or more and SAME or VALID "
                        "padding are needed: convert the model again, the file is damaged")
        out_q = out.qparams(f"--model {self.path}: op {i}")
        if depthwise:
            if opts.DepthMultiplier() not in (0, 1) or o != c:
                self.refuse(i, f"has depth multiplier {opts.DepthMultiplier()}", "use depth multiplier 1")
            weight, scales = self._weights(i, self.operand(i, inputs, 1, "weights"), "1HWC", o, 3)
            if weight.shape[0] != 1 or weight.shape[3] != c:
                self.refuse(i, f"has weights of shape {list(weight.shape)}", f"expected (1, K, K, {c})")
            weight = np.ascontiguousarray(weight[0].transpose(2, 0, 1)[:, None])  # (1, K, K, C) -> (C, 1, K, K)
        else:
            weight, scales = self._weights(i, self.operand(i, inputs, 1, "weights"), "OHWI", o, 0)
            if weight.shape[3] != c:
                self.refuse(i, f"has weights of shape {list(weight.shape)}", f"expected (O, K, K, {c})")
            weight = np.ascontiguousarray(weight.transpose(0, 3, 1, 2))  # OHWI -> OIHW
        k = weight.shape[-1]
        if weight.shape[-2] != k:
            self.refuse(i, f"has a {weight.shape[-2]}x{k} kernel", "the int8 plan takes square kernels")
        padded_h, padded_w = h + extra_pads[0] + extra_pads[2], w + extra_pads[1] + extra_pads[3]
        same = (0, 0, 0, 0)
        if opts.Padding() == self.tfl.Padding.SAME:
            if (oh, ow) != (-(-padded_h // s), -(-padded_w // s)):  # TFLite's SAME output size, whatever the kernel
                self.refuse(i, f"outputs {oh}x{ow} from {padded_h}x{padded_w} at stride {s} with SAME padding",
                            "convert the model again: the file is damaged")
            same = self._same_pads(padded_h, padded_w, k, s, oh, ow)
        pads = tuple(int(a + b) for a, b in zip(extra_pads, same))
        arrays = self._arrays(i, inputs, weight, value.q, scales, out_q)
        common = dict(input_q=value.q, output_q=out_q, arrays=arrays, **self._activation(i, opts.FusedActivationFunction(), out_q))
        if not depthwise and last and (oh, ow) == (1, 1) and (k, k) == (h, w) and not any(pads):
            fc_weight = weight.reshape(o, -1)  # OIHW flattened = the plan's CHW order
            return Layer(f"layer{i}_fc", "fc", (c * h * w,), (o,), **{**common, "arrays": {**arrays, "weight": fc_weight}})
        kind = "depthwise" if depthwise else ("pointwise" if k == 1 and not any(pads) else "conv")
        layer = Layer(f"layer{i}_{kind}", kind, (c, h, w), (o, oh, ow), stride=int(s), pads=pads, **common)
        if layer.conv_output_hw() != (oh, ow):
            self.refuse(i, f"outputs {oh}x{ow}, not the {layer.conv_output_hw()} its padding and stride give",
                        "re-convert the model")
        return layer

    def _fully_connected(self, i, op, inputs, value, out) -> Layer:
        opts = self.options(op, "FullyConnectedOptions")
        if opts.WeightsFormat() != 0 or opts.KeepNumDims():
            self.refuse(i, "uses shuffled weights or keep_num_dims", "convert with the default FULLY_CONNECTED options")
        features = int(np.prod(value.shape))
        weights = self.operand(i, inputs, 1, "weights")
        o = weights.shape[0] if weights.shape else 0
        if int(np.prod(out.shape)) != o:
            self.refuse(i, f"outputs {list(out.shape)} from weights of shape {list(weights.shape)}", "re-convert the model")
        weight, scales = self._weights(i, weights, "OI", o, 0)
        if weight.shape[1] != features:
            self.refuse(i, f"takes {weight.shape[1]} features, its input has {features}", "re-convert the model")
        if value.flattened_map is not None:  # the input was flattened in NHWC order, the plan flattens CHW
            c, h, w = value.flattened_map
            weight = weight.reshape(o, h, w, c).transpose(0, 3, 1, 2).reshape(o, features)
        elif len(value.shape) == 3 and value.shape[1:] != (1, 1):
            self.refuse(i, "reads an unflattened map", "RESHAPE the map to (1, features) before it")
        out_q = out.qparams(f"--model {self.path}: op {i}")
        arrays = self._arrays(i, inputs, np.ascontiguousarray(weight), value.q, scales, out_q)
        return Layer(f"layer{i}_fc", "fc", (features,), (o,), input_q=value.q, output_q=out_q, arrays=arrays,
                     params=FcParams("single"), **self._activation(i, opts.FusedActivationFunction(), out_q))

    def _mean(self, i, op, inputs, value, out) -> Layer:
        """MEAN over H and W of an NHWC map: a "mean" pool, requantized as LiteRT's kernel does."""
        axes = self.operand(i, inputs, 1, "axes").data
        axes_ok = axes is not None and axes.dtype.kind == "i" and ((-4 <= axes) & (axes < 4)).all()
        if len(value.shape) != 3 or not axes_ok or sorted(int(a) % 4 for a in axes.reshape(-1)) != [1, 2]:
            self.refuse(i, "does not average a (1, H, W, C) map over H and W", "only a global mean over axes [1, 2] "
                        "fits the int8 plan")
        c, h, w = value.shape
        if int(np.prod(out.shape)) != c or out.dtype != "int8":
            self.refuse(i, f"outputs {out.dtype} {list(out.shape)}", f"a global pool outputs {c} int8 values")
        out_q = out.qparams(f"--model {self.path}: op {i}")
        multiplier, shift = mean_requantization(value.q.scale, out_q.scale, h * w)
        arrays = {"multiplier": np.full(c, multiplier, np.int32), "shift": np.full(c, shift, np.int32)}
        keep = self.options(op, "ReducerOptions").KeepDims()
        return Layer(f"layer{i}_mean", "avgpool", (c, h, w), (c, 1, 1) if keep else (c,), input_q=value.q,
                     output_q=out_q, params=AvgPoolParams("mean"), arrays=arrays)

    def _addend(self, i, inputs, values) -> _Value:
        """An ADD's second operand: an activation an earlier op computed (a residual input), not a constant."""
        if len(inputs) != 2 or inputs[1] not in values:
            self.refuse(i, "does not add two activations the model computed (a constant operand?)",
                        "the int8 plan's add sums two earlier tensors, as a residual connection does")
        if values[inputs[1]].pads != _NO_PADS:
            self.refuse(i, "follows a PAD", "a PAD must feed a CONV_2D or DEPTHWISE_CONV_2D")
        return values[inputs[1]]

    def _add(self, i, op, a: _Value, b: _Value, out) -> Layer:
        """ADD of two tensors of one shape: multipliers and shifts as TFLite's int8 ADD prepares them from the
        float32 scales (plan.add_multipliers), the fused activation as a conv's."""
        if a.shape != b.shape or a.flattened_map or b.flattened_map or int(np.prod(out.shape)) != int(np.prod(a.shape)):
            self.refuse(i, f"adds {list(a.shape)} and {list(b.shape)} into {list(out.shape)}",
                        "the int8 plan adds two tensors of one shape (no broadcasting)")
        if out.dtype != "int8":
            self.refuse(i, f"outputs {out.dtype}", "the int8 plan's add outputs int8")
        out_q = out.qparams(f"--model {self.path}: op {i}")
        if 2 * max(a.q.scale, b.q.scale) >= out_q.scale * 2**ADD_LEFT_SHIFT:  # LiteRT's int8 ADD aborts on that
            self.refuse(i, f"has output scale {out_q.scale:g}, below 2^-19 of its input scales", "convert the model "
                        "again: its scales are damaged")
        multiplier, shift = add_multipliers(a.q, b.q, out_q)
        opts = self.options(op, "AddOptions")
        return Layer(f"layer{i}_add", "add", a.shape, a.shape, input_q=a.q, output_q=out_q, params=AddParams(b.q),
                     arrays={"multiplier": multiplier, "shift": shift},
                     **self._activation(i, opts.FusedActivationFunction(), out_q))

    def _global_pool(self, i, op, inputs, value, out, in_q: QParams) -> Layer:
        if len(value.shape) != 3:
            self.refuse(i, "does not take an NHWC map", "pool the (1, H, W, C) map")
        c, h, w = value.shape
        opts = self.options(op, "Pool2DOptions")
        if (opts.FilterHeight(), opts.FilterWidth()) != (h, w) or opts.FusedActivationFunction() != 0:
            self.refuse(i, f"pools {opts.FilterHeight()}x{opts.FilterWidth()} of a {h}x{w} map",
                        "only a global average pool (filter = the whole map, no activation) fits the int8 plan")
        if int(np.prod(out.shape)) != c:
            self.refuse(i, f"outputs {list(out.shape)}", f"a global pool outputs {c} values")
        out_q = out.qparams(f"--model {self.path}: op {i}")
        if out_q.scale != in_q.scale or (out.dtype == "int8" and out_q != in_q):
            self.refuse(i, "changes the quantization", "the plan's global pool keeps its input's scale and zero point")
        keep = len(out.shape) == 4
        return Layer(f"layer{i}_avgpool", "avgpool", (c, h, w), (c, 1, 1) if keep else (c,), input_q=in_q, output_q=out_q)

    def _int16_pool(self, i, value, wide) -> tuple[Layer, _Tensor]:
        """edgepack's exporter's exact global pool: QUANTIZE int8 -> int16 (zero point 0, same scale),
        AVERAGE_POOL_2D in int16, QUANTIZE int16 -> int8 (same scale)."""
        names = self.op_names[i:i + 3]
        fix = "QUANTIZE is imported only in edgepack's int8 -> int16 -> int8 global-pool pattern"
        if names != ["QUANTIZE", "AVERAGE_POOL_2D", "QUANTIZE"] or wide.dtype != "int16":
            self.refuse(i, f"starts {' -> '.join(names)} ({wide.dtype})", fix)
        wide_q = wide.qparams(f"--model {self.path}: op {i}")
        if wide_q != QParams(value.q.scale, 0):
            self.refuse(i, "rescales", fix)
        pool_op, (pool_inputs, pool_outputs) = self.ops[i + 1], self._io(i + 1)
        quant_inputs, quant_outputs = self._io(i + 2)
        if len(pool_outputs) != 1 or len(quant_outputs) != 1 or pool_inputs[:1] != [wide.index]:
            self.refuse(i, "is not followed by an int16 pool and its QUANTIZE", fix)
        pooled = self.tensor(pool_outputs[0])
        if quant_inputs[:1] != [pooled.index] or pooled.dtype != "int16":
            self.refuse(i, "is not followed by an int16 pool and its QUANTIZE", fix)
        out = self.tensor(quant_outputs[0])
        if out.dtype != "int8" or pooled.qparams(f"--model {self.path}: op {i + 1}") != wide_q:
            self.refuse(i + 2, f"gives {out.dtype}", fix)
        layer = self._global_pool(i + 1, pool_op, pool_inputs, value, out, value.q)
        return layer, out

    def _reshape_target(self, i, op, inputs) -> list[int] | None:
        """The shape LiteRT reshapes to: the constant shape operand, else the options' new_shape (None: neither)."""
        if len(inputs) > 1 and inputs[1] >= 0:
            t = self.tensor(inputs[1])
            if t.data is None or t.data.ndim != 1 or t.data.dtype.kind != "i":
                self.refuse(i, "has no constant 1-D integer shape operand", "RESHAPE to a constant shape")
            return [int(v) for v in t.data]
        opts = self.options(op, "ReshapeOptions")
        return [int(v) for v in opts.NewShapeAsNumpy()] if opts.NewShapeLength() else None

    def _reshape(self, i, value, out, target: list[int] | None) -> _Value:
        """RESHAPE changes no value: a (1, 1, 1, C) map and (1, C) are the same bytes; a map flattened
        to (1, F) is read in NHWC order, which the fc after it accounts for."""
        if target is not None and target.count(-1) == 1:  # one dimension inferred from the element count
            known = math.prod(d for d in target if d != -1)
            target = [int(np.prod(value.shape)) // known if d == -1 and known > 0 else d for d in target]
        if target is not None and tuple(target) != out.shape:
            self.refuse(i, f"reshapes to {target} into a tensor of shape {list(out.shape)}", "convert the model again: "
                        "the file is damaged")
        if int(np.prod(out.shape)) != int(np.prod(value.shape)) or out.qparams(f"--model {self.path}: op {i}") != value.q:
            self.refuse(i, "changes the element count or quantization", "RESHAPE may only flatten the map before the fc")
        if len(out.shape) == 4 and out.shape[1:3] == (1, 1) and (len(value.shape) == 1 or value.shape[1:] == (1, 1)):
            return _Value((out.shape[3], 1, 1), value.q, producer=value.producer)
        if len(out.shape) == 2 and out.shape[0] == 1:
            flat = value.shape if len(value.shape) == 3 and value.shape[1:] != (1, 1) else value.flattened_map
            return _Value((out.shape[1],), value.q, flat, producer=value.producer)
        if len(out.shape) == 4 and len(value.shape) == 3 and tuple(out.shape[1:]) == (value.shape[1], value.shape[2], value.shape[0]):
            return value
        self.refuse(i, f"reshapes to {list(out.shape)}", "RESHAPE may only flatten the map before the fc")
