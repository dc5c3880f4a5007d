"""Whether a target's external tools are here, read from the target file alone: no backend is imported,
nothing is installed or fetched, so `edgepack targets` stays fast. The lookups are the ones the backends
make when they build (edgepack.devices.require on PATH; Python packages by importlib's finder, unimported)."""
from __future__ import annotations

import importlib.util
import platform

from edgepack import devices
from edgepack.errors import ToolchainError
from edgepack.targets import Target

# c needs none; tflm compiles without tflite_micro but its bench runs TFLM's own interpreter from it
PYTHON_MODULE = {"tvm": "tvm", "openvino": "openvino", "onnxruntime": "onnxruntime", "tflm": "tflite_micro"}


def needed_programs(target: Target) -> list[str]:
    """The programs a compile for ``target`` runs (compiler, size tool, the emulator it verifies under)."""
    if target.backend == "c":
        tc, run = target.toolchain, target.run
        return [p for p in (tc.cc or "gcc", tc.size or "size", run.emulator) if p]
    if target.backend == "tvm":
        arch = target.compiler.arch or platform.machine()
        if arch == platform.machine():
            return ["g++"]
        return [target.compiler.cross_compiler or f"{arch}-linux-gnu-g++", f"qemu-{arch}"]
    return []


def missing_tools(target: Target) -> list[str]:
    """What ``target`` needs that is not installed here (programs on PATH, the backend's Python package)."""
    missing = []
    for program in needed_programs(target):
        try:
            devices.require(program, program)
        except ToolchainError:
            missing.append(program)
    module = PYTHON_MODULE.get(target.backend)
    if module and importlib.util.find_spec(module) is None:
        missing.append(f"python module {module}")
    return missing
