"""An int8 .tflite model read back as the int8 plan, so any backend can compile it (issue 14, item 4).

The file is read with the PyPI ``tflite`` package (the generated flatbuffer schema; no TensorFlow).
A graph of the ops the plan can express is accepted (ops in the file's execution order, each reading
tensors earlier ops produced), and an op outside supported_ops() is refused by name before any heavy work.
Each op maps onto a plan layer with TFLite's own integer arithmetic (each builtin's import is its module
in edgepack.interop.tflite_ops, IMPORTS; this module walks the graph and keeps the structural ops):

- CONV_2D / DEPTHWISE_CONV_2D (depth multiplier 1): OHWI / 1HWC weights become the plan's OIHW /
  (C, 1, KH, KW); SAME padding becomes TFLite's pads (ComputePaddingHeightWidth: bottom/right get the odd
  row on stride 2), a PAD before the conv is folded into its pads (TFLite pads int8 with the zero point,
  as the plan does); a CONV_2D whose kernel covers the whole map at the end is the classifier (how
  edgepack's exporter writes the fc);
- requantization multipliers and shifts are recomputed from the float32 scales exactly as TFLite's
  PopulateConvolutionQuantizationParams does: double(in) * double(w[c]) / double(out), then
  QuantizeMultiplier; fused RELU / RELU6 become act_min / act_max as CalculateActivationRangeQuantized;
- AVERAGE_POOL_2D over the whole map (quantization kept) is the global pool; so is edgepack's own
  QUANTIZE int8->int16, AVERAGE_POOL_2D int16, QUANTIZE int16->int8 (tflite_ops.avgpool's export);
  MEAN over H and W (keep_dims either way, Keras' GlobalAveragePooling2D) is a "mean" pool: LiteRT folds
  1/count into its requantization (plan.mean_requantization), which may rescale;
- FULLY_CONNECTED is an fc with rounding "single": LiteRT rounds acc * M once, not twice as gemmlowp
  (an NHWC-flattened input's weights are reordered to the plan's CHW order); for the tflm target the front end
  makes it rounding "tflm" (TFLM's kernel rounds twice: edgepack.ops.fc.as_tflm), still FULLY_CONNECTED;
  RESHAPE is a no-op (a dense layer's vector RESHAPEd to a map for a conv: that fc writes the map's CHW order,
  _vector_to_map); a trailing SOFTMAX is dropped: the plan's output is its input, the logits (same top class);
- ADD of two activations of one shape (a residual sum, e.g. MobileNetV2's) is an "add" layer reading the
  layers that produced them, its multipliers prepared as TFLite's int8 ADD does (plan.add_multipliers) and
  its fused RELU / RELU6 the same clamp as a conv's;
- the converter's default float32 interface (a first QUANTIZE float32 -> int8, a last DEQUANTIZE) is
  dropped too: the plan takes and gives the int8 tensors inside it (the import record gives their scales);
  a QUANTIZE int8 -> int8 between layers is TFLite's requantize, exactly a LEAKY_RELU of alpha 1 (a lut);
  a MUL(constant, x) is MUL(x, constant).

AVERAGE_POOL_2D over an even count with a non-zero zero point rounds the raw sum, zero point included,
where the plan's "average" pool rounds the zero-point-free sum (ties differ): it becomes a "raw_average"
pool. All of this is checked against LiteRT 2.3's reference kernels (tests/e2e/test_tflite_heads.py and
tests/e2e/test_tflite_import.py).

A damaged file is refused before any of this, by what is wrong in it: the flatbuffer's tables are copied
out once (flatbuffers' own out-of-bounds errors, and only those, mean "corrupt"), then every index,
shape, type, buffer size, scale and zero point is checked against the schema (tflite_reader); the walk
checks each op's operands, options and output sizes as LiteRT's Prepare would, and last LiteRT itself
loads and prepares the file, so compile never meets a file LiteRT refuses or aborts on.

Whether the plan is bit-exact with the file is not assumed: compile checks the numpy reference
against LiteRT's reference kernels on the file itself (edgepack.frontends.tflite).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgepack import ops
from edgepack.errors import ConfigError, DataError, ToolchainError
from edgepack.interop import litert
from edgepack.interop.tflite_ops import IMPORTS
from edgepack.interop.tflite_ops.avgpool import global_pool
from edgepack.interop.tflite_ops.resize import tiled_upsample
from edgepack.interop.tflite_ops.pad import import_pad
from edgepack.interop.tflite_reader import NO_PADS, Reader, Tensor, Value
from edgepack.ops.lut import LutParams, lut_layer
from edgepack.plan.plan import Layer, Plan, QParams
from edgepack.targets.backends import PLAN_BACKENDS

# The walker's own: RESHAPE and a trailing SOFTMAX / DEQUANTIZE give no layer, a PAD folds into the conv after it,
# QUANTIZE is the float input's, edgepack's int16 global-pool pattern (_int16_pool) or a requantize (_requantize).
STRUCTURAL_OPS = ("RESHAPE", "PAD", "QUANTIZE", "SOFTMAX", "DEQUANTIZE", "TRANSPOSE")
NCHW_TO_NHWC = [0, 2, 3, 1]  # the one TRANSPOSE imported: a channels-first model input's, absorbed
SOFTMAX_DROPPED = ("dropped: outputs are the logits (the trailing SOFTMAX's input); softmax is monotonic, so the "
                   "top class (argmax) is unchanged, but apply a softmax yourself where probabilities are needed")
SOFTMAX_KEPT = ("kept (--keep-softmax): outputs are the SOFTMAX's int8 probabilities (scale 1/256, zero point -128), "
                "TFLite's reference arithmetic")


def supported_ops() -> tuple[str, ...]:
    """The builtins a file may use: each op module's (tflite_ops.IMPORTS, sorted) and the structural ones."""
    return tuple(sorted(IMPORTS.names())) + tuple(name for name in STRUCTURAL_OPS if name not in IMPORTS)


@dataclass
class ImportedModel:
    """The plan read from a .tflite file, and where its output lives in that file (for LiteRT)."""

    path: Path
    sha256: str
    plan: Plan
    logits_tensor: int  # the file's tensor holding the plan's output: the SOFTMAX's input when it was dropped
    softmax: str | None  # SOFTMAX_DROPPED, SOFTMAX_KEPT, or None when the file has no trailing SOFTMAX
    float_input: bool  # the file takes float32 and QUANTIZEs it (to the plan's input_q): LiteRT is fed floats
    op_counts: dict[str, int] = field(default_factory=dict)
    channels_first: bool = False  # the file takes NCHW and TRANSPOSEs it to NHWC first: the plan's own layout
    float_output: bool = False  # the file ends in a DEQUANTIZE to float32 (absorbed): the plan gives the int8 before it
    output_tensors: tuple[int, ...] = ()  # a file with several outputs: its output tensors, the plan's outputs in order

    def litert_tensors(self) -> int | tuple[int, ...]:
        """The file's tensor(s) LiteRT's run is compared on: the logits tensor, or every output in order."""
        return self.output_tensors or self.logits_tensor

    @property
    def resolution(self) -> int:
        """An image's height; a vector input's length (its artifact is named after it)."""
        shape = self.plan.input_shape
        return shape[1] if len(shape) == 3 else shape[0]

    @property
    def classes(self) -> int:
        return self.plan.output_shape[0]

    def record(self) -> dict:
        """The manifest's account of the import."""
        return {"file": str(self.path), "sha256": self.sha256, "ops": self.op_counts, "softmax": self.softmax,
                "input": ("float32, quantized by its first QUANTIZE: the artifact takes that int8" if self.float_input
                          else "int8"), "logits_tensor": self.logits_tensor,
                "input_layout": ("NCHW: its leading TRANSPOSE to NHWC is absorbed (the plan is (C, H, W))"
                                 if self.channels_first else "as the file's input"),
                "output": ("float32, dequantized by its last DEQUANTIZE: the artifact gives the int8 before it"
                           if self.float_output else "int8"), **self._float_interface()}

    def _float_interface(self) -> dict:
        """How to use an artifact whose .tflite took or gave float32: the scales the absorbed QUANTIZE /
        DEQUANTIZE applied, which the caller now applies (also in the manifest's plan.input / plan.output)."""
        record = {}
        if self.float_input:
            q = self.plan.input_q
            record["float_input"] = {"scale": q.scale, "zero_point": q.zero_point,
                                     "how": "int8 input = clamp(round(x / scale) + zero_point, -128, 127), as the "
                                     "file's first QUANTIZE did"}
        if self.float_output:
            q = self.plan.output_q
            record["float_output"] = {"scale": q.scale, "zero_point": q.zero_point, "how": "float output = scale * "
                                      "(int8 output - zero_point), as the file's last DEQUANTIZE did" + (
                                          " (of the logits: the SOFTMAX before it is dropped)" if self.softmax == SOFTMAX_DROPPED else "")}
        return record

    def litert_input(self) -> tuple[float, int] | None:
        """What litert.run_reference_tensor needs to feed a float-input file."""
        q = self.plan.input_q
        return (q.scale, q.zero_point) if self.float_input else None


def is_tflite_spec(spec) -> bool:
    """A --model value (or the Python API's model argument) naming a .tflite file."""
    return isinstance(spec, (str, Path)) and str(spec).lower().endswith(".tflite")


def read_tflite(path, keep_softmax: bool = False) -> ImportedModel:
    """Parse ``path`` into the int8 plan; a ConfigError names what the plan cannot express and the fix, a
    DataError what is damaged in the file (each exit 2, one line). ``keep_softmax``: a trailing SOFTMAX is the
    plan's last layer (its probabilities are the outputs) instead of being dropped."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--model {path}: no such .tflite file: pass the path of an int8 TFLite model")
    data = path.read_bytes()
    graph = _Graph(path, data)
    graph.keep_softmax = keep_softmax
    plan, logits, softmax, float_input = graph.to_plan()
    outputs = tuple(graph.outputs) if plan.multi_output() else ()
    problems = plan.problems()
    if problems:
        raise ConfigError(f"--model {path}: the int8 plan read from it is invalid ({problems[0]}): "
                          "convert the model with int8 weights in [-127, 127] and int32 biases")
    _check_litert_prepares(path, data)
    return ImportedModel(path.absolute(), hashlib.sha256(data).hexdigest(), plan, logits, softmax, float_input,
                         graph.op_counts, channels_first=graph.channels_first, float_output=graph.float_output,
                         output_tensors=outputs)


def _check_litert_prepares(path: Path, data: bytes) -> None:
    """compile checks the plan against LiteRT's reference kernels on this very file: a file LiteRT itself
    refuses (its flatbuffer verifier, an op version it lacks, a kernel's Prepare check) is bad input, refused
    here with LiteRT's reason. Run after the checks above, which also keep LiteRT from aborting on what
    it does not check (a SOFTMAX's beta). It is given the bytes compile's check runs (litert.reference_model: an
    int8 TILE's opcode version as BUILTIN_REF registers it)."""
    try:
        from ai_edge_litert import interpreter as lite
    except ImportError as e:
        raise ToolchainError(f"importing .tflite models needs LiteRT ({e.name} is missing): pip install ai-edge-litert")
    try:
        lite.Interpreter(model_content=litert.reference_model(data),
                         experimental_op_resolver_type=lite.OpResolverType.BUILTIN_REF, num_threads=1).allocate_tensors()
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


class _Graph(Reader):
    """The walk: each op (and the ops it fuses) becomes a plan layer, through IMPORTS or as a structural op."""

    keep_softmax = False  # read_tflite's keep_softmax: a trailing SOFTMAX becomes the plan's softmax layer

    def __init__(self, path: Path, data: bytes):
        super().__init__(path, data)
        supported = supported_ops()
        unsupported = sorted(set(self.op_names) - set(supported))
        if unsupported:
            raise ConfigError(f"--model {path} uses {', '.join(unsupported)}, outside the int8 plan: edgepack imports "
                              f"only {', '.join(supported)}")

    def to_plan(self) -> tuple[Plan, int, str | None, bool]:
        if len(self.inputs) != 1 or not self.outputs:
            raise ConfigError(f"--model {self.path} has {len(self.inputs)} inputs and {len(self.outputs)} outputs: "
                              "import a model with one image input and at least one output")
        inp, start = self._plan_input()
        end, softmax = self._dropped_tail()
        if len(self.outputs) > 1 and end < len(self.ops):
            raise ConfigError(f"--model {self.path} has {len(self.outputs)} outputs and ends in {self.op_names[end]}: a model "
                              "with several outputs is imported with int8 outputs straight from its ops (convert with "
                              "inference_output_type=tf.int8 and no SOFTMAX at the end)")
        self.channels_first = self._input_transpose(start, inp)
        shape = tuple(inp.shape[1:]) if self.channels_first else self._plan_input_shape(inp)
        input_q = inp.qparams(f"--model {self.path}: the model input")
        self._layers: list[Layer] = []
        self._folded_pads: dict[int, Layer] = {}  # .tflite tensor of a PAD folded for a conv -> its pad layer
        self.values = {inp.index: Value(shape, input_q)}
        if self.channels_first:  # the TRANSPOSE's NHWC output is the same (C, H, W) plan tensor
            self.values[self.io(start)[1][0]] = self.values[inp.index]
        layer_ops = set(IMPORTS.names()) | {"QUANTIZE"}  # the ops that become plan layers
        self.last_compute = max((i for i, n in enumerate(self.op_names[:end]) if n in layer_ops), default=-1)
        current, i = inp.index, start + self.channels_first
        while i < end:
            current, used = self._step(i)
            i += used
        if len(self.outputs) == 1:
            self._check_dropped_tail(end, current)
        return self._finished_plan(input_q, shape), current, softmax, start == 1

    def _plan_input_shape(self, inp: Tensor) -> tuple[int, ...]:
        """The plan's input: (C, H, W) from an NHWC (1, H, W, C) map of any H and W, (F,) from a (1, F) vector,
        and from a (1, L, C) signal the (C, 1, L) map it is (or the (1, H, W, C) a RESHAPE first makes of it:
        a line of L values is the same bytes in NHWC and NCHW)."""
        if len(inp.shape) == 2:
            return (inp.shape[1],)
        if len(inp.shape) == 3:
            return self._signal_input_shape(inp)
        _, h, w, c = inp.shape
        return (c, h, w)

    def _signal_input_shape(self, inp: Tensor) -> tuple[int, int, int]:
        """A (1, L, C) signal (Keras' Conv1D input) as the (C, H, W) map the RESHAPE reading it makes, (1, L) or
        (L, 1) (TFLiteConverter writes Conv1D as a RESHAPE to (1, 1, L, C) and a 1 x k CONV_2D), else (C, 1, L)."""
        _, length, c = inp.shape
        first = next((j for j, name in enumerate(self.op_names) if inp.index in self.io(j)[0]), None)
        if first is not None and self.op_names[first] == "RESHAPE" and len(self.io(first)[1]) == 1:
            shape = self.tensor(self.io(first)[1][0]).shape
            if len(shape) == 4 and shape[3] == c and 1 in shape[1:3] and shape[1] * shape[2] == length:
                return (c, shape[1], shape[2])
        return (c, 1, length)

    def _input_transpose(self, start: int, inp: Tensor) -> bool:
        """Whether op ``start`` TRANSPOSEs the (1, C, H, W) model input to NHWC (a PyTorch model's export): the
        plan's (C, H, W) is that input's own layout, so the TRANSPOSE moves nothing and is absorbed. Any other
        TRANSPOSE there is refused by what it does."""
        if self.op_names[start:start + 1] != ["TRANSPOSE"]:
            return False
        inputs, outputs = self.io(start)
        perm = self.operand(start, inputs, 1, "permutation").data
        perm = None if perm is None else [int(p) for p in perm.reshape(-1)]
        fix = f"only a TRANSPOSE of an NCHW model input to NHWC (perm {NCHW_TO_NHWC}) is imported"
        if inputs[:1] != [inp.index] or len(inp.shape) != 4 or perm != NCHW_TO_NHWC or len(outputs) != 1:
            self.refuse(start, f"permutes the input {list(inp.shape)} with perm {perm}", fix)
        out, (_, c, h, w) = self.tensor(outputs[0]), inp.shape
        if tuple(out.shape) != (1, h, w, c) or out.dtype != "int8" or out.qparams(f"--model {self.path}: op {start}") \
                != inp.qparams(f"--model {self.path}: the model input"):
            self.refuse(start, f"gives {out.dtype} {list(out.shape)} with other quantization", fix)
        return True

    def _append(self, layer: Layer, reads: tuple[int, ...]) -> Value:
        """Add ``layer`` reading the plan tensors ``reads`` (() = the previous layer, as a chain stores it)."""
        layers = self._layers
        layer.inputs = () if reads == (len(layers) - 1,) and ops.get(layer.kind).arity == 1 else reads
        layers.append(layer)
        return Value(layer.output_shape, layer.output_q, producer=len(layers) - 1)

    def _step(self, i: int) -> tuple[int, int]:
        """Map op ``i`` (and the ops it fuses) into the plan: (the .tflite tensor it outputs, ops consumed)."""
        op, name, values = self.ops[i], self.op_names[i], self.values
        inputs, outputs = self.io(i)
        if name == "MUL" and len(inputs) == 2 and inputs[0] not in values and inputs[1] in values:
            inputs = inputs[::-1]  # MUL(constant, x) is MUL(x, constant): TFLite's int8 MUL is symmetric
        if not inputs or inputs[0] not in values or len(outputs) != 1:
            self.refuse(i, "reads a tensor no earlier op produced", "import a model whose ops are stored in "
                        "execution order, each with one output")
        out = self.tensor(outputs[0])
        if name != "QUANTIZE" and out.dtype != "int8":
            self.refuse(i, f"outputs {out.dtype}", "the int8 plan's ops output int8 (convert with full int8 "
                        "quantization)")
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            self._unfold_pads(inputs)  # a PAD folded for a conv is a pad layer before any other op
        value = values[inputs[0]]
        if name in ("PAD", "PADV2"):
            values[out.index] = self._pad(i, op, inputs, value, out)
        elif name == "QUANTIZE" and out.dtype == "int8":
            values[out.index] = self._append(self._requantize(i, value, out), (value.producer,))
        elif name == "QUANTIZE":
            layer, out = self._int16_pool(i, value, out)
            values[out.index] = self._append(layer, (value.producer,))
            return out.index, 3
        elif name == "RESHAPE" and (tiled := tiled_upsample(self, i, value)) is not None:
            layer, out, used = tiled  # Keras 3's UpSampling2D: RESHAPE, TILE, RESHAPE, TILE, RESHAPE
            values[out.index] = self._append(layer, (value.producer,))
            return out.index, used
        elif name == "RESHAPE":
            values[out.index] = self._reshape(i, value, out, self._reshape_target(i, op, inputs))
        elif name in IMPORTS:
            layer = IMPORTS[name](self, i, op, inputs, value, out)
            op_of = ops.get(layer.kind)  # a variadic op (concat) reads every input; others their arity (checked by the import)
            reads = tuple(values[t].producer for t in (inputs if op_of.variadic else inputs[:op_of.arity]))
            values[out.index] = self._append(layer, reads)
        elif name == "TRANSPOSE":
            self.refuse(i, "is not the first op on the model input", "only a TRANSPOSE of an NCHW model input to "
                        f"NHWC (perm {NCHW_TO_NHWC}) is imported: export the model channels-last or without it")
        else:  # SOFTMAX, DEQUANTIZE
            self.refuse(i, "is not at the model's end", f"only a trailing {name} can be dropped")
        return out.index, 1

    def _check_dropped_tail(self, end: int, current: int) -> None:
        """The dropped SOFTMAX / DEQUANTIZE continue the chain from the last plan op to the model output."""
        tail = current
        for j in range(end, len(self.ops)):
            inputs, outputs = self.io(j)
            if inputs[:1] != [tail] or len(outputs) != 1:
                self.refuse(j, "does not continue the chain from the previous op", "only a trailing SOFTMAX / "
                            "DEQUANTIZE of the logits can be dropped")
            self._check_dropped(j, self.tensor(tail), self.tensor(outputs[0]))
            tail = outputs[0]
        layers = self._layers
        if tail != self.outputs[0] or not layers or self.values[current].producer != len(layers) - 1:
            raise ConfigError(f"--model {self.path}: the output tensor is not the result of the last op: import a "
                              "model whose last op gives the output")

    def _finished_plan(self, input_q: QParams, shape: tuple[int, int, int]) -> Plan:
        """The plan, refused unless it ends in a classifier (one output) and every layer leads to an output."""
        layers = self._layers
        outputs = self._output_layers() if len(self.outputs) > 1 else ()
        if not outputs and (not layers or not ops.get(layers[-1].kind).classifier):
            raise ConfigError(f"--model {self.path} does not end in a classifier (FULLY_CONNECTED, or a CONV_2D over the "
                              "whole map): the int8 plan ends in an fc layer")
        plan = Plan(input_q, shape, layers, outputs)
        unread = sorted(set(range(len(layers) - 1)) - set(plan.last_readers()) - set(outputs))
        if unread:  # a branch that never reaches the output: the plan would compute it for nothing
            raise ConfigError(f"--model {self.path}: the output of {layers[unread[0]].name} is never used: import a "
                              "model whose every op leads to the output")
        return plan

    def _output_layers(self) -> tuple[int, ...]:
        """The plan layer of each of the file's outputs, in the file's order: each a layer's own output (not the plan
        input, a folded PAD, a flattened map or a signal, whose byte order the plan's differs from), no two alike,
        the last layer among them."""
        found = []
        for t in self.outputs:
            value, tensor = self.values.get(t), self.tensor(t)
            if value is None or value.producer < 0 or value.pads != NO_PADS or value.flattened_map is not None \
                    or value.signal or len(tensor.shape) != len(value.shape) + 1:
                raise ConfigError(f"--model {self.path}: output '{tensor.name}' is not a layer's own int8 (1, H, W, C) map "
                                  "or (1, F) vector: import a model whose every output is an op's result as that op wrote it")
            found.append(value.producer)
        if len(set(found)) != len(found) or len(self._layers) - 1 not in found:
            raise ConfigError(f"--model {self.path}: its outputs are layers {found} of {len(self._layers)}: import a model "
                              "whose outputs are distinct and whose last op gives one of them")
        return tuple(found)

    def _plan_input(self) -> tuple[Tensor, int]:
        """The int8 (1, H, W, C) tensor the plan takes, and the first op the plan computes."""
        inp, start = self.tensor(self.inputs[0]), 0
        if inp.dtype == "float32" and self.op_names[:1] == ["QUANTIZE"] and self.io(0)[0][:1] == [inp.index]:
            if len(self.io(0)[1]) != 1:
                self.refuse(0, "has no single output", "convert the model again: the file is damaged")
            inp, start = self.tensor(self.io(0)[1][0]), 1  # the converter's default float input: the plan takes its int8
            if inp.shape != self.tensor(self.inputs[0]).shape:
                self.refuse(0, f"quantizes {list(self.tensor(self.inputs[0]).shape)} into {list(inp.shape)}",
                            "convert the model again: the file is damaged")
        where = f"--model {self.path}: input '{inp.name}' is {inp.dtype} {list(inp.shape)}"
        if inp.dtype != "int8":
            raise ConfigError(f"{where}: edgepack imports int8 models (an int8 input, or float32 straight into a "
                              "QUANTIZE to int8): convert with full int8 quantization")
        if len(inp.shape) not in (2, 3, 4):
            raise ConfigError(f"{where}, not an image, a signal or a vector: edgepack imports an int8 (1, H, W, C) map, "
                              "e.g. [1, 96, 96, 3], a (1, L, C) signal, e.g. [1, 30, 1], or a (1, F) vector, e.g. [1, 640]")
        if inp.shape[0] != 1:
            raise ConfigError(f"{where}: edgepack takes one image at a time: convert with batch 1, input "
                              f"[1, {', '.join(map(str, inp.shape[1:]))}]")
        return inp, start

    def _check_dropped(self, j: int, x: Tensor, y: Tensor) -> None:
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
        self.float_output = self.op_names[end - 1:end] == ["DEQUANTIZE"]
        if self.float_output:
            end -= 1
        if self.op_names[end - 1:end] == ["SOFTMAX"]:
            end, softmax = (end, SOFTMAX_KEPT) if self.keep_softmax else (end - 1, SOFTMAX_DROPPED)
        return end, softmax

    def _pad(self, i, op, inputs, value, out) -> Value:
        """A PAD / PADV2 of the zero point folds into the conv that reads it (the conv takes the unpadded map; the
        pad layer is kept for any other reader); one of another constant is a pad layer now (tflite_ops.pad)."""
        layer = import_pad(self, i, op, inputs, value, out)
        if layer.params.value != value.q.zero_point:
            return self._append(layer, (value.producer,))
        self._folded_pads[out.index] = layer
        return replace(value, pads=layer.pads)

    def _unfold_pads(self, inputs: list[int]) -> None:
        """Each folded PAD these inputs hold becomes its pad layer (once: later readers read that layer)."""
        for t in inputs:
            held = self.values.get(t)
            if held is not None and held.pads != NO_PADS:
                self.values[t] = self._append(self._folded_pads[t], (held.producer,))

    def _int16_pool(self, i, value, wide) -> tuple[Layer, Tensor]:
        """edgepack's exporter's exact global pool: QUANTIZE int8 -> int16 (zero point 0, same scale),
        AVERAGE_POOL_2D in int16, QUANTIZE int16 -> int8 (same scale)."""
        names = self.op_names[i:i + 3]
        fix = "QUANTIZE is imported only in edgepack's int8 -> int16 -> int8 global-pool pattern"
        if names != ["QUANTIZE", "AVERAGE_POOL_2D", "QUANTIZE"] or wide.dtype != "int16":
            self.refuse(i, f"starts {' -> '.join(names)} ({wide.dtype})", fix)
        wide_q = wide.qparams(f"--model {self.path}: op {i}")
        if wide_q != QParams(value.q.scale, 0):
            self.refuse(i, "rescales", fix)
        pool_op, (pool_inputs, pool_outputs) = self.ops[i + 1], self.io(i + 1)
        quant_inputs, quant_outputs = self.io(i + 2)
        if len(pool_outputs) != 1 or len(quant_outputs) != 1 or pool_inputs[:1] != [wide.index]:
            self.refuse(i, "is not followed by an int16 pool and its QUANTIZE", fix)
        pooled = self.tensor(pool_outputs[0])
        if quant_inputs[:1] != [pooled.index] or pooled.dtype != "int16":
            self.refuse(i, "is not followed by an int16 pool and its QUANTIZE", fix)
        out = self.tensor(quant_outputs[0])
        if out.dtype != "int8" or pooled.qparams(f"--model {self.path}: op {i + 1}") != wide_q:
            self.refuse(i + 2, f"gives {out.dtype}", fix)
        layer = global_pool(self, i + 1, pool_op, value, out, value.q)
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

    def _reshape(self, i, value, out, target: list[int] | None) -> Value:
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
            return Value((out.shape[3], 1, 1), value.q, producer=value.producer)
        if len(out.shape) == 2 and out.shape[0] == 1:
            flat = value.shape if len(value.shape) == 3 and value.shape[1:] != (1, 1) else value.flattened_map
            return Value((out.shape[1],), value.q, flat, producer=value.producer)
        if len(out.shape) == 4 and len(value.shape) == 3 and tuple(out.shape[1:]) == (value.shape[1], value.shape[2], value.shape[0]):
            return value
        if len(out.shape) == 3 and len(value.shape) == 3 and 1 in value.shape[1:] and \
                tuple(out.shape[1:]) == (value.shape[1] * value.shape[2], value.shape[0]):
            return replace(value, signal=True)  # a (C, 1, L) map as the (1, L, C) signal it is (a 1-D conv's output)
        if len(out.shape) == 4 and len(value.shape) == 1 and value.flattened_map is None:
            return self._vector_to_map(i, value, out)
        self.refuse(i, f"reshapes to {list(out.shape)}", "RESHAPE may only flatten the map before the fc")

    def _vector_to_map(self, i: int, value: Value, out: Tensor) -> Value:
        """A vector RESHAPEd to a (1, H, W, C) map for a convolution (a decoder's dense layer): the file's vector is
        the map in HWC order, the plan's (C, H, W) is CHW, so the fc that made it gets its output rows reordered
        to CHW; its (F,) output is then the map itself (the plan reads a flattened map as the map: one tensor)."""
        _, h, w, c = out.shape
        fix = "a vector becomes a map only straight from a FULLY_CONNECTED, read by CONV_2D / DEPTHWISE_CONV_2D alone"
        vector = self.io(i)[0][0]
        readers = [self.op_names[j] for j in range(len(self.ops)) if out.index in self.io(j)[0]]
        if not readers or set(readers) - {"CONV_2D", "DEPTHWISE_CONV_2D"} or out.index in self.outputs:
            self.refuse(i, f"reshapes a vector to {list(out.shape)} read by {', '.join(readers) or 'no op'}", fix)
        if c > 1 and h * w > 1:  # HWC and CHW orders differ: the producing fc writes CHW instead
            layers, producer = self._layers, value.producer
            shared = [j for j in range(len(self.ops)) if j != i and vector in self.io(j)[0]]
            if producer < 0 or layers[producer].kind != "fc" or shared or vector in self.outputs:
                self.refuse(i, f"reshapes a vector to {list(out.shape)} that is not a FULLY_CONNECTED's output read "
                            "by this RESHAPE alone", fix)
            order = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)  # CHW position -> HWC row
            layer = layers[producer]
            layer.arrays = {k: a[order] if a.ndim and len(a) == len(order) else a for k, a in layer.arrays.items()}
        return Value((c, h, w), value.q, producer=value.producer)

    def _requantize(self, i: int, value: Value, out: Tensor) -> Layer:
        """QUANTIZE int8 -> int8 between layers (a converter's change of scale): TFLite's Requantize,
        MultiplyByQuantizedMultiplier(x - in_zp, double(in_scale) / double(out_scale)) + out_zp clamped to int8, is
        exactly its int8 LEAKY_RELU of alpha 1 (both slopes that multiplier): a leaky_relu lut, the same table."""
        if value.flattened_map is not None or value.pads != NO_PADS or out.shape != self.tensor(self.io(i)[0][0]).shape:
            self.refuse(i, "requantizes a flattened map, a PAD's output or into another shape", "QUANTIZE int8 -> int8 "
                        "is imported where it reads a layer's output as is")
        out_q = out.qparams(f"--model {self.path}: op {i}")
        return lut_layer(f"layer{i}_requantize", LutParams("leaky_relu", alpha=1.0), value.shape, value.q, out_q)
