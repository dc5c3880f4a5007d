"""TensorFlow Lite Micro's own interpreter (the ``tflite-micro`` package: TFLM's reference kernels and
allocator, built for x86-64) on this host: runs a model.tflite in a given arena, and finds the smallest
arena it accepts, the figure edgepack's 64-bit arena estimate is checked against."""
from __future__ import annotations

import contextlib
import faulthandler
import os

import numpy as np

from edgepack.backends.tflm import arena as tflm_arena
from edgepack.errors import DeviceError, DeviceUnavailable, VerificationError
from edgepack.interop import litert

PACKAGE = "tflite-micro==0.dev20261023182759"  # the pinned build (pyproject's test extras; a dev version only)


@contextlib.contextmanager
def _quiet_stderr():
    """TFLM prints every failed allocation to the C stderr: probing arena sizes would print pages."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise DeviceUnavailable(f"the tflm bench (and a tflm compile of an imported FULLY_CONNECTED, checked in TFLM's "
                                f"arithmetic) runs TensorFlow Lite Micro's interpreter: pip install '{PACKAGE}'")
    return runtime


def load(model: bytes, arena_bytes: int):
    """TFLM's interpreter for ``model`` in an ``arena_bytes`` arena, tensors allocated; DeviceError if TFLM
    refuses the arena (or the model). In this process: call accepts() first for an arena that may be short."""
    runtime = _runtime()
    try:
        with _quiet_stderr():
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=int(arena_bytes))
            details = interpreter.get_input_details(0)
            interpreter.set_input(np.zeros(details["shape"], details["dtype"]), 0)
            interpreter.invoke()  # the arena is checked at the first invoke (AllocateTensors)
    except RuntimeError as e:
        raise DeviceError(f"TensorFlow Lite Micro refused model.tflite in a {arena_bytes}-byte arena: "
                          f"{str(e).splitlines()[0] if str(e) else 'AllocateTensors failed'}")
    return interpreter


def accepts(model: bytes, arena_bytes: int) -> bool:
    """Whether TFLM runs ``model`` in an ``arena_bytes`` arena, tried in a forked child: for some arenas too
    small this build of TFLM crashes (SIGSEGV) instead of returning an error."""
    _runtime()
    pid = os.fork()
    if pid == 0:  # the child: no Python cleanup, only the exit code goes back
        code = 1
        faulthandler.disable()  # a crash here is an answer (refused), not a traceback for the parent's stderr
        try:
            load(model, arena_bytes)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def minimum_arena(model: bytes, start: int = 1 << 14) -> int:
    """The smallest arena TFLM's interpreter runs ``model`` in, by bisection (TFLM's own figure)."""
    low, high = 0, start
    while not accepts(model, high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if accepts(model, middle) else (middle, high)
    return high


def run(interpreter, x_int8: np.ndarray, outputs: int = 1) -> np.ndarray:
    """int8 (N, C, H, W) (or (N, F)) in, int8 (N, ...) out, one image at a time (the model has batch 1); a model
    with several ``outputs`` gives each flattened in the plan's (C, H, W) order, one after another (as LiteRT's)."""
    details = interpreter.get_input_details(0)
    shape = tuple(int(d) for d in details["shape"])
    layout = litert._file_layout(  # the same input layouts LiteRT is fed
        x_int8.shape[1:], shape)
    if layout is None:
        raise DeviceError(f"model.tflite takes {shape}, not {x_int8.shape[1:]} as NHWC or as it is")
    rows = []
    for image in x_int8:
        interpreter.set_input(np.ascontiguousarray(image.transpose(layout)).reshape(shape), 0)
        interpreter.invoke()
        parts = [np.array(interpreter.get_output(k)) for k in range(outputs)]
        rows.append(np.concatenate([(litert.plan_order(part) if outputs > 1 else part).reshape(-1) for part in parts]))
    return np.array(rows, dtype=np.int8)


def output_count(model: bytes) -> int:
    return len(tflm_arena.read_graph(model).outputs)


def verify(model_path, images: np.ndarray, want: np.ndarray) -> dict:
    """Refuse model.tflite unless TFLM's interpreter gives ``want`` (edgepack's int8 reference, in TFLM's
    arithmetic) on every image: a tflm artifact whose FULLY_CONNECTED rounds as TFLM does, not as LiteRT, is
    checked against TFLM itself. Returns how far LiteRT's reference kernels are from it (reported, not refused)."""
    model = open(model_path, "rb").read()
    arena = tflm_arena.arena_bytes(model, 8)["arena_bytes"] * 2 + (1 << 16)  # room: the estimate is checked by bench
    got = run(load(model, arena), images, output_count(model)).reshape(want.shape)
    if not np.array_equal(got, want):
        raise VerificationError(
            f"model.tflite is not bit-exact with the int8 reference under TensorFlow Lite Micro's interpreter: "
            f"{int((got != want).sum())} of {want.size} values differ: this is an edgepack bug: please report it")
    lite = litert.run_reference(model, images).reshape(want.shape)
    return {"images": len(images), "values": int(want.size), "bit_exact": True, "tflm": PACKAGE,
            "litert_reference_values_differing": int((lite != want).sum())}
