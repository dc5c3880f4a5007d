"""LiteRT (``ai-edge-litert``) runs an exported .tflite: its reference kernels, an implementation nobody
here wrote, must reproduce edgepack's int8 outputs bit for bit; its default CPU path (XNNPACK)
requantizes in float and is only measured against them.

LiteRT is imported on first use (compile needs it, ``edgepack verify`` and the firmware paths do not).
It logs "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++ when the default path
prepares a model; LiteRT 2.3 reads no environment variable for that logger (TF_CPP_MIN_LOG_LEVEL is
TensorFlow's) and exports no setter, so the native stderr is pointed at /dev/null for that one call.

One op the reference resolver refuses by version only: TILE. LiteRT 2.3 registers kernels/tile.cc's one kernel
(Register_TILE, no _REF variant) for versions 1-3 in its default resolver but 1-2 in BUILTIN_REF, and the converter
writes an int8 TILE (Keras 3's UpSampling2D) as version 3, which only records the int8 input: the kernel copies
elements by their size in bits and never reads the version. So the reference resolver is given the file with each
TILE opcode's version set to 2 in place, every other byte the file's: the same ops on the same tensors, TILE run by
the kernel LiteRT runs for it anyway, every other op by its reference kernel (reference_resolver says so).
"""
from __future__ import annotations

import contextlib
import os
import struct
import sys
from pathlib import Path

import numpy as np

from edgepack.errors import ToolchainError, VerificationError

PACKAGE = "ai-edge-litert"
TILE_REFERENCE_VERSION = 2  # the highest TILE version LiteRT 2.3's BUILTIN_REF registers (its default resolver: 3)
TILE_NOTE = ("each TILE opcode of version 3 (int8) is given to BUILTIN_REF as version 2, the highest it registers: "
             "both resolvers run tile.cc's one kernel (a copy by element size that never reads the version); "
             "every other op ran its reference kernel")


def _litert():
    try:
        from ai_edge_litert import interpreter
    except ImportError as e:
        raise ToolchainError(f"running .tflite models needs LiteRT ({e.name} is missing): pip install {PACKAGE}")
    return interpreter


def version() -> str:
    from importlib.metadata import version as installed
    _litert()
    return installed(PACKAGE)


@contextlib.contextmanager
def _native_stderr_silenced():
    """fd 2 -> /dev/null for the duration of one LiteRT call (its C++ log lines bypass sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tile_lowered(model: bytes) -> tuple[bytes, int]:
    """``model`` as BUILTIN_REF is given it (module docstring): each TILE opcode above version 2 set to 2 in
    place, and how many were set."""
    import tflite
    root, data, lowered = tflite.Model.GetRootAs(model, 0), bytearray(model), 0
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # TFLite's GetBuiltinCode
        if builtin == tflite.BuiltinOperator.TILE and code.Version() > TILE_REFERENCE_VERSION:
            field = code._tab.Offset(8)  # OperatorCode.version's slot: stored, as it is not the default 1
            struct.pack_into("<i", data, code._tab.Pos + field, TILE_REFERENCE_VERSION)
            lowered += 1
    return bytes(data), lowered


def reference_model(model: bytes | str | Path) -> bytes:
    """The bytes LiteRT's reference kernels run for ``model`` (a .tflite's bytes or path)."""
    return _tile_lowered(model if isinstance(model, bytes) else Path(model).read_bytes())[0]


def reference_resolver(model: bytes | str | Path) -> dict:
    """The manifest's account of what run_reference* ran ``model`` with."""
    lowered = _tile_lowered(model if isinstance(model, bytes) else Path(model).read_bytes())[1]
    return {"op_resolver": "BUILTIN_REF (LiteRT's reference kernels)", **({"tile": TILE_NOTE} if lowered else {})}


def _interpreter(model: bytes | str | Path, reference_kernels: bool, preserve_all_tensors: bool = False):
    lite = _litert()
    if reference_kernels:
        model = reference_model(model)
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    resolver = lite.OpResolverType.BUILTIN_REF if reference_kernels else lite.OpResolverType.AUTO
    try:
        with _native_stderr_silenced():  # the default path creates (and announces) its XNNPACK delegate here
            it = lite.Interpreter(**source, experimental_op_resolver_type=resolver, num_threads=1,
                                  experimental_preserve_all_tensors=preserve_all_tensors)
            it.allocate_tensors()
    except (ValueError, RuntimeError) as e:  # LiteRT's own checks (bias scale, op versions, shapes) refused it
        reason = "; ".join(" ".join(line.split()) for line in str(e).splitlines() if line.strip())
        raise VerificationError(f"LiteRT refuses the .tflite ({reason}): this is an edgepack exporter bug, "
                                "please report it")
    return it


def _run(model: bytes | str | Path, x_nchw_int8: np.ndarray, reference_kernels: bool, tensor: int | None = None,
         float_input: tuple[float, int] | None = None, channels_first: bool = False) -> np.ndarray:
    """One image at a time (the exported model has batch 1): int8 (N, C, H, W) in, int8 (N, ...) out: the
    model's output, or its tensor number ``tensor`` (then every tensor is kept readable after invoke).
    ``float_input`` (scale, zero point): the model takes float32 and quantizes it with these, so it is fed
    the int8 values dequantized, which its QUANTIZE maps back exactly."""
    if isinstance(tensor, tuple) or tensor is None and _outputs(model) > 1:
        return _run_outputs(model, x_nchw_int8, reference_kernels, tensor, float_input, channels_first)
    it = _interpreter(model, reference_kernels, preserve_all_tensors=tensor is not None)
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0] if tensor is None else next(t for t in it.get_tensor_details() if t["index"] == tensor)
    n, layout = len(x_nchw_int8), _file_layout(x_nchw_int8.shape[1:], tuple(inp["shape"]), channels_first)
    dtype = np.float32 if float_input else np.int8
    if inp["dtype"] != dtype or layout is None:
        raise VerificationError(f"the .tflite takes {inp['dtype'].__name__} {tuple(inp['shape'])}, not "
                                f"{np.dtype(dtype).name} {x_nchw_int8.shape[1:]} as NHWC or as it is: re-export it "
                                "from this artifact's plan")
    outputs = []
    for image in x_nchw_int8:
        if float_input:
            image = (image.astype(np.float32) - np.float32(float_input[1])) * np.float32(float_input[0])
        it.set_tensor(inp["index"], np.ascontiguousarray(image.transpose(layout)).reshape(tuple(inp["shape"])))
        it.invoke()
        outputs.append(it.get_tensor(out["index"])[0].copy())
    return np.array(outputs, dtype=np.int8).reshape((n,) + tuple(out["shape"][1:]))


def _outputs(model: bytes | str | Path) -> int:
    return len(_interpreter(model, True).get_output_details())


def _run_outputs(model, x_nchw_int8: np.ndarray, reference_kernels: bool, tensors: tuple[int, ...] | None,
                 float_input, channels_first: bool) -> np.ndarray:
    """A model with several outputs (the model's, or the tensors numbered ``tensors``): per image each output
    flattened in the plan's (C, H, W) order (an NHWC map transposed, a (L, C) signal too), concatenated in order,
    the buffer edgepack's executors hand over (Plan.output_row_shape)."""
    it = _interpreter(model, reference_kernels)
    tensors = tensors or tuple(t["index"] for t in it.get_output_details())
    parts = [_run(model, x_nchw_int8, reference_kernels, t, float_input, channels_first) for t in tensors]
    return np.concatenate([plan_order(part).reshape(len(part), -1) for part in parts], axis=1)


def plan_order(part: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W) and (N, L, C) -> (N, C, L): a file's output in the plan's order."""
    return part.transpose(0, 3, 1, 2) if part.ndim == 4 else part.transpose(0, 2, 1) if part.ndim == 3 else part


def _file_layout(shape: tuple[int, ...], file_shape: tuple[int, ...], channels_first: bool = False) -> tuple[int, ...] | None:
    """The axes order that turns one plan input (C, H, W) into the file's input: NHWC (1, H, W, C) as the
    converter writes images; else the plan's own order (a (1, F) vector, an NCHW input whose TRANSPOSE the
    import absorbed: ``channels_first``); a (C, 1, L) or (C, L, 1) map is fed NHWC to a (1, L, C) signal input;
    None when none fits."""
    if channels_first:
        return tuple(range(len(shape))) if file_shape == (1, *shape) else None
    if len(shape) == 3 and file_shape == (1, shape[1], shape[2], shape[0]):
        return (1, 2, 0)
    if len(shape) == 3 and 1 in shape[1:] and file_shape == (1, shape[1] * shape[2], shape[0]):
        return (1, 2, 0)
    return tuple(range(len(shape))) if file_shape == (1, *shape) else None


def run_reference(model: bytes | str | Path, x_nchw_int8: np.ndarray) -> np.ndarray:
    """int8 outputs of LiteRT's reference kernels (op resolver BUILTIN_REF: no delegate, no optimized kernels)."""
    return _run(model, x_nchw_int8, reference_kernels=True)


def run_reference_tensor(model: bytes | str | Path, x_nchw_int8: np.ndarray, tensor: int,
                         float_input: tuple[float, int] | None = None, channels_first: bool = False) -> np.ndarray:
    """int8 values of tensor number ``tensor`` under LiteRT's reference kernels: an imported model's logits
    when its trailing SOFTMAX (or DEQUANTIZE) was dropped; see _run for ``float_input``. ``channels_first``:
    the file takes NCHW (its leading TRANSPOSE was absorbed), fed as the plan's (C, H, W) is."""
    return _run(model, x_nchw_int8, reference_kernels=True, tensor=tensor, float_input=float_input,
                channels_first=channels_first)


def run_xnnpack(model: bytes | str | Path, x_nchw_int8: np.ndarray) -> np.ndarray:
    """int8 outputs of LiteRT's default CPU path (the XNNPACK delegate), what apps get."""
    return _run(model, x_nchw_int8, reference_kernels=False)


def verify(model: bytes | str | Path, images: np.ndarray, want: np.ndarray) -> dict:
    """Refuse the .tflite unless LiteRT's reference kernels give ``want`` (edgepack's int8 reference
    outputs) on every image; return how far LiteRT's default (XNNPACK) path is from it on the same images."""
    got = run_reference(model, images)
    if not np.array_equal(got, want):
        differ = np.flatnonzero((got != want).reshape(len(want), -1).any(axis=1))
        raise VerificationError(
            f"model.tflite is not bit-exact with the int8 reference under LiteRT's reference kernels: "
            f"{int((got != want).sum())} of {want.size} values differ on {len(differ)} of {len(want)} images "
            f"(first: image {int(differ[0])}); this is an edgepack exporter bug: please report it")
    diff = np.abs(run_xnnpack(model, images).astype(np.int32) - want.astype(np.int32))
    return {"images": len(images), "values": int(want.size), "values_differing": int((diff > 0).sum()),
            "max_abs_diff": int(diff.max())}
