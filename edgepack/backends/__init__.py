"""Backends, by the name a target file gives. Each module offers ``lower(build, folder) -> dict``
(writes its files, returns its manifest section) and ``Runner(folder, manifest, **options)`` for bench,
a subclass of edgepack.backends.runner.Runner (the one interface bench calls; it declares its options).
Modules are imported lazily so heavy runtimes load only when used."""
from __future__ import annotations

import importlib

from edgepack.errors import ToolchainError, missing_dependency

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
        raise missing_dependency(e, f"backend '{name}'") or e
