"""The one list of backends: the name a target file gives -> the module that implements it, and whether it
compiles the int8 plan itself.

Only names, module paths and flags, importing nothing, so the target loader (edgepack.targets), the manifest
checks and the .tflite importer read the backend list without loading any backend or its runtime; the
modules themselves are imported lazily by edgepack.backends.backend_module. It lives with the target files,
below the backends, because targets name backends and backends read targets: the list is what both share.
Adding a backend is one line here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    module: str
    lowers_plan: bool  # compiles the int8 plan itself (so it takes an imported .tflite); False: it runs qdq.onnx


ENTRIES = {
    "onnxruntime": Backend("edgepack.backends.onnxruntime", lowers_plan=False),
    "tvm": Backend("edgepack.backends.tvm", lowers_plan=True),
    "openvino": Backend("edgepack.backends.openvino", lowers_plan=False),
    "c": Backend("edgepack.backends.c", lowers_plan=True),
    "tflm": Backend("edgepack.backends.tflm", lowers_plan=True),
}
MODULES = {name: entry.module for name, entry in ENTRIES.items()}
NAMES = tuple(ENTRIES)
PLAN_BACKENDS = tuple(name for name, entry in ENTRIES.items() if entry.lowers_plan)  # an imported .tflite has only its plan
