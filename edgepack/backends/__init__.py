"""Backends, by the name a target file gives. Each module offers ``lower(build, folder) -> dict``
(writes its files, returns its manifest section) and ``Runner(folder, manifest, **options)`` for bench,
a subclass of edgepack.backends.runner.Runner (the one interface bench calls; it declares its options).
Modules are imported lazily so heavy runtimes load only when used."""
from __future__ import annotations

import importlib

from edgepack.errors import ToolchainError, UnsupportedModelError, missing_dependency

MODULES = {
    "onnxruntime": "edgepack.backends.onnxruntime",
    "openvino": "edgepack.backends.openvino",
    "tvm": "edgepack.backends.tvm",
    "c": "edgepack.backends.c",
    "tflm": "edgepack.backends.tflm",
}

# Whether a backend lowers a graph plan (layers reading earlier layers' outputs: the "add" of a residual block,
# e.g. MobileNetV2's), not only a chain. Read without importing the backend, so a residual model is refused
# before any torch work; a backend that learns graphs flips its entry here.
SUPPORTS_GRAPHS = {"onnxruntime": True, "openvino": True, "tvm": True, "c": True, "tflm": True}


def check_graph_support(target, model: str) -> None:
    """Refuse the residual ``model`` (a name for the message) for ``target`` if its backend lowers chains only."""
    if not SUPPORTS_GRAPHS.get(target.backend, False):
        able = "/".join(name for name, ok in SUPPORTS_GRAPHS.items() if ok)
        raise UnsupportedModelError(f"{model} has residual adds, which the {target.backend} backend of target {target.name} "
                                    f"does not lower yet: use a target of the {able} backends, e.g. c-host, cortex-m4 or host")


def backend_module(name: str):
    if name not in MODULES:
        raise ToolchainError(f"backend '{name}' is not available in this edgepack: available are {', '.join(MODULES)}")
    try:
        return importlib.import_module(MODULES[name])
    except ImportError as e:
        raise missing_dependency(e, f"backend '{name}'") or e
