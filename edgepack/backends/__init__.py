"""Backends, by the name a target file gives. Each module offers ``lower(build, folder) -> dict``
(writes its files, returns its manifest section) and ``Runner(folder, manifest)`` for bench.
Modules are imported lazily so heavy runtimes load only when used."""
from __future__ import annotations

import importlib

from edgepack.errors import ToolchainError

MODULES = {
    "onnxruntime": "edgepack.backends.onnxruntime",
    "openvino": "edgepack.backends.openvino",
    "tvm": "edgepack.backends.tvm",
    "c": "edgepack.backends.c",
    "tflm": "edgepack.backends.tflm",
}


def backend_module(name: str):
    if name not in MODULES:
        raise ToolchainError(f"backend '{name}' is not available in this edgepack: available are {', '.join(MODULES)}")
    try:
        return importlib.import_module(MODULES[name])
    except ImportError as e:
        raise ToolchainError(f"backend '{name}' needs {e.name}, which is not installed: pip install -e '.[{name}]'")
