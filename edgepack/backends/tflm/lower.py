"""lower(): the verified model.tflite as a C array (model_data.c/.h), the tensor arena TFLM needs and the
ops to register.

The arena comes from arena.py, which reproduces TFLM's own planner (head) and persistent allocations (tail)
for TFLM's reference kernels; the header carries the 32-bit figure (Cortex-M), the manifest both it and
the 64-bit one that the ``tflite-micro`` interpreter on this host is checked against.
"""
from __future__ import annotations

from pathlib import Path

from edgepack.backends.lowered import Lowered
from edgepack.backends.tflm import arena as tflm_arena
from edgepack.errors import UnsupportedModelError

ARRAY_NAME = "g_edgepack_model_data"
ALIGNMENT = tflm_arena.ALIGNMENT  # TFLM aligns every arena buffer (and wants the flatbuffer) to 16 bytes


def arena_estimate(tflite_bytes: bytes) -> dict:
    """The arena for 32-bit pointers (the header's figure), with its parts and the 64-bit figure."""
    mcu, host = tflm_arena.arena_bytes(tflite_bytes, 4), tflm_arena.arena_bytes(tflite_bytes, 8)
    return {"arena_bytes": mcu["arena_bytes"], "arena_bytes_64bit": host["arena_bytes"],
            "activations_bytes": mcu["head_bytes"], "persistent_bytes": mcu["tail_bytes"],
            "persistent_parts": mcu["tail_parts"], "naive_activations_bytes": mcu["naive_head_bytes"],
            "planner": "TFLM GreedyMemoryPlanner (its order: size, ties later tensor first), 16-byte aligned",
            "kernels": "reference (CMSIS-NN kernels also request scratch buffers: add them)", "is_estimate": True}


def op_registrations(tflite_bytes: bytes) -> list[str]:
    """MicroMutableOpResolver calls for exactly the builtin ops the model uses, in first-use order."""
    names = dict.fromkeys(name for name, *_ in tflm_arena.read_graph(tflite_bytes).ops)
    return ["Add" + "".join(part if part[0].isdigit() else part.capitalize() for part in name.split("_")) + "()"
            for name in names]  # CONV_2D -> AddConv2D(), FULLY_CONNECTED -> AddFullyConnected()


def c_array(tflite_bytes: bytes, arena: dict) -> tuple[str, str]:
    """model_data.h / model_data.c: the flatbuffer as a 16-byte aligned const array (C99, GCC/Clang/armcc)."""
    ops = op_registrations(tflite_bytes)
    header = f"""/* model.tflite as a C array, written by edgepack. Load it with TensorFlow Lite Micro (see README). */
#ifndef EDGEPACK_MODEL_DATA_H
#define EDGEPACK_MODEL_DATA_H

/* tensor arena the model needs with 32-bit pointers and TFLM's reference kernels, from TFLM's planner
   ({arena['arena_bytes_64bit']} on a 64-bit host); CMSIS-NN kernels add scratch buffers: round up if
   AllocateTensors() fails */
#define EDGEPACK_TENSOR_ARENA_SIZE {arena['arena_bytes']}

/* the {len(ops)} ops model.tflite uses: tflite::MicroMutableOpResolver<EDGEPACK_TFLM_OP_COUNT> ops;
   EDGEPACK_TFLM_REGISTER_OPS(ops); */
#define EDGEPACK_TFLM_OP_COUNT {len(ops)}
#define EDGEPACK_TFLM_REGISTER_OPS(resolver) do {{ {" ".join(f"(resolver).{op};" for op in ops)} }} while (0)

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
    header, source = c_array(data, arena)
    (Path(folder) / "model_data.h").write_text(header)
    (Path(folder) / "model_data.c").write_text(source)
    return Lowered({"runtime": "tensorflow lite micro (bench runs the tflite-micro package's interpreter)",
                    "model_file": "model.tflite", "c_array": ["model_data.c", "model_data.h"], "array": ARRAY_NAME,
                    "model_bytes": len(data), "arena": arena,
                    "ops": op_registrations(data)}, files=("model_data.h", "model_data.c"))
