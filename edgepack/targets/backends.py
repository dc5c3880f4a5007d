"""The one list of backends: the name a target file gives -> the module that implements it.

Only names and module paths, importing nothing, so the target loader (edgepack.targets) and the
manifest checks read the backend names without loading any backend or its runtime; the modules
themselves are imported lazily by edgepack.backends.backend_module. It lives with the target files, below
the backends, because targets name backends and backends read targets: the list is what both share.
Adding a backend is one line here."""

MODULES = {
    "onnxruntime": "edgepack.backends.onnxruntime",
    "tvm": "edgepack.backends.tvm",
    "openvino": "edgepack.backends.openvino",
    "c": "edgepack.backends.c",
    "tflm": "edgepack.backends.tflm",
}
NAMES = tuple(MODULES)
