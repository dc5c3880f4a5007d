"""Running an OpenVINO IR, for the compile's verification and for bench alike: load (compile) it for a
device, infer float images one at a time, and count the layers that executed in int8 and in float."""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

INT8, FLOAT = ("u8", "i8"), ("f32", "bf16", "f16")
UNTIMED_LAYERS = {"Const", "Input", "Output"}


def load(core, model, device: str, config: dict):
    """Compile ``model`` for ``device``; returns (compiled model, load time in ms)."""
    start = time.perf_counter()
    compiled = core.compile_model(model, device, config)
    return compiled, (time.perf_counter() - start) * 1e3


def infer_all(compiled, images: np.ndarray) -> np.ndarray:
    """Float logits of float NCHW images, one batch-1 inference each (the IR's shape is static)."""
    request = compiled.create_infer_request()
    out = []
    for image in images:
        request.infer({0: np.ascontiguousarray(image[None], np.float32)})
        out.append(request.get_output_tensor(0).data.copy())
    return np.concatenate(out)


def layer_precisions(core, model, device: str, config: dict, image: np.ndarray) -> dict:
    """Run one profiled inference and count the layers that executed, by runtime precision.

    The runtime model names each executed layer's type (Convolution, FullyConnected, ...), its
    ``runtimePrecision`` (u8/i8 = integer kernel) and its kernel (``primitiveType``, e.g.
    ``brgconv_avx512_1x1_I8``); layers that never ran (constants, folded reshapes) say
    ``execTimeMcs = not_executed`` and are not counted.
    """
    compiled, _ = load(core, model, device, {**config, "PERF_COUNT": True})
    compiled.create_infer_request().infer({0: np.ascontiguousarray(image[None], np.float32)})
    by_type: dict[str, Counter] = {}
    kernels: Counter = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        get = lambda key: info[key].astype(str) if key in info else ""  # noqa: E731
        kind = get("layerType")
        if kind in UNTIMED_LAYERS or get("execTimeMcs") in ("", "not_executed"):
            continue
        by_type.setdefault(kind, Counter())[get("runtimePrecision")] += 1
        kernels[get("primitiveType")] += 1
    counts = Counter()
    for precisions in by_type.values():
        counts.update(precisions)
    int8 = sum(n for p, n in counts.items() if p in INT8)
    floats = sum(n for p, n in counts.items() if p in FLOAT)
    convs = by_type.get("Convolution", Counter())
    return {
        "executed_layers": sum(counts.values()), "int8_layers": int8, "float_layers": floats,
        "other_layers": sum(counts.values()) - int8 - floats,
        "convolutions": {"total": sum(convs.values()), "int8": sum(n for p, n in convs.items() if p in INT8)},
        "by_type": {k: dict(sorted(v.items())) for k, v in sorted(by_type.items())},
        "kernels": dict(sorted(kernels.items())),
    }


def describe_layers(layers: dict) -> str:
    c = layers["convolutions"]
    return (f"{layers['int8_layers']} of {layers['executed_layers']} executed layers in u8/i8, {layers['float_layers']} in float; "
            f"convolutions {c['int8']}/{c['total']} int8")


def one_line(error: str) -> str:
    """OpenVINO errors are stacks of 'Exception from file:line:' frames: keep the messages on one line."""
    lines = [line.strip() for line in error.splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("Exception from "))
