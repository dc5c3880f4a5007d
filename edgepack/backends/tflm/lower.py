"""lower(): the verified model.tflite as a C array (model_data.c/.h) and the tensor arena TFLM needs.

Arena estimate = TFLM's GreedyMemoryPlanner over the non-constant tensors of the .tflite (model input and
output included, as TFLM keeps them in the arena; each from the op that writes it to the last op that
reads it, sizes rounded up to 16 bytes), plus what TFLM allocates for the interpreter's lifetime: an eval
tensor per tensor, node data per operator, and each conv's per-channel output multipliers and shifts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepack.backends.c.memplan import Buffer, greedy_by_size
from edgepack.backends.lowered import Lowered
from edgepack.errors import UnsupportedModelError

ARRAY_NAME = "g_edgepack_model_data"
ALIGNMENT = 16  # TFLM aligns every arena buffer (and wants the flatbuffer) to 16 bytes
EVAL_TENSOR_BYTES, NODE_BYTES, FIXED_BYTES = 24, 64, 1024  # persistent allocations, 32-bit MCU, estimated
TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 7: 2, 9: 1}  # tflite TensorType: FLOAT32, FLOAT16, INT32, UINT8, INT64, INT16, INT8


def arena_estimate(tflite_bytes: bytes) -> dict:
    """The tensor arena TFLM needs for the model, in bytes (see the module docstring), with its parts."""
    import tflite

    model = tflite.Model.GetRootAsModel(tflite_bytes, 0)
    graph = model.Subgraphs(0)
    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    constant = {t for t in range(graph.TensorsLength())
                if model.Buffers(graph.Tensors(t).Buffer()).DataLength() > 0}
    first, last = {t: 0 for t in graph.InputsAsNumpy()}, {}
    for step, op in enumerate(ops):
        for t in op.InputsAsNumpy():
            if t >= 0 and t not in constant:
                last[t] = step
        for t in op.OutputsAsNumpy():
            first.setdefault(t, step)
            last[t] = max(last.get(t, step), step)
    for t in graph.OutputsAsNumpy():
        last[t] = len(ops) - 1
    buffers = []
    for t in sorted(first):
        tensor = graph.Tensors(t)
        size = int(np.prod(tensor.ShapeAsNumpy())) * TYPE_BYTES.get(tensor.Type(), 4)
        buffers.append(Buffer(f"t{t}", -(-size // ALIGNMENT) * ALIGNMENT, first[t], last.get(t, first[t])))
    activations = greedy_by_size(buffers)
    per_channel = 0
    for op in ops:  # conv / depthwise / fc keep int32 multiplier and shift per output channel (MEAN's axes: none)
        if op.InputsLength() >= 2 and op.Inputs(1) in constant and graph.Tensors(op.Inputs(1)).Type() == 9:  # INT8
            weight = graph.Tensors(op.Inputs(1))
            per_channel += 2 * 4 * int(weight.ShapeAsNumpy()[0 if weight.ShapeAsNumpy()[0] > 1 else -1])
    persistent = graph.TensorsLength() * EVAL_TENSOR_BYTES + len(ops) * NODE_BYTES + per_channel + FIXED_BYTES
    return {"arena_bytes": activations + persistent, "activations_bytes": activations,
            "persistent_bytes_estimate": persistent, "naive_activations_bytes": sum(b.size for b in buffers),
            "planner": "greedy by size (TFLM GreedyMemoryPlanner), 16-byte aligned", "is_estimate": True}


def c_array(tflite_bytes: bytes, arena_bytes: int) -> tuple[str, str]:
    """model_data.h / model_data.c: the flatbuffer as a 16-byte aligned const array (C99, GCC/Clang/armcc)."""
    header = f"""/* model.tflite as a C array, written by edgepack. Load it with TensorFlow Lite Micro (see README). */
#ifndef EDGEPACK_MODEL_DATA_H
#define EDGEPACK_MODEL_DATA_H

/* tensor arena the model needs, estimated by edgepack for TFLM's planner; round up if AllocateTensors fails */
#define EDGEPACK_TENSOR_ARENA_SIZE {arena_bytes}

extern const unsigned char {ARRAY_NAME}[];
extern const unsigned int {ARRAY_NAME}_len;

#endif
"""
    rows = [", ".join(f"0x{b:02x}" for b in tflite_bytes[i:i + 12]) for i in range(0, len(tflite_bytes), 12)]
    source = (f'#include "model_data.h"\n\n'
              f"#if defined(__GNUC__) || defined(__clang__) || defined(__ARMCC_VERSION)\n"
              f"#define EDGEPACK_ALIGNED __attribute__((aligned({ALIGNMENT})))\n#else\n#define EDGEPACK_ALIGNED\n#endif\n\n"
              f"const unsigned char {ARRAY_NAME}[] EDGEPACK_ALIGNED = {{\n  " + ",\n  ".join(rows) + "\n};\n"
              f"const unsigned int {ARRAY_NAME}_len = {len(tflite_bytes)}u;\n")
    return header, source


def lower(build, folder: Path) -> Lowered:
    """model_data.c/.h from the verified model.tflite the compile wrote, and the arena estimate."""
    tflite_file = Path(folder) / "model.tflite"
    if build.plan is None or not tflite_file.is_file():
        raise UnsupportedModelError("the tflm target ships an int8 model.tflite: compile with --quant ptq or qat")
    data = tflite_file.read_bytes()
    arena = arena_estimate(data)
    header, source = c_array(data, arena["arena_bytes"])
    (Path(folder) / "model_data.h").write_text(header)
    (Path(folder) / "model_data.c").write_text(source)
    return Lowered({"runtime": "tensorflow lite micro (not built here; bench runs LiteRT's reference kernels)",
                    "model_file": "model.tflite", "c_array": ["model_data.c", "model_data.h"], "array": ARRAY_NAME,
                    "model_bytes": len(data), "arena": arena}, files=("model_data.h", "model_data.c"))
