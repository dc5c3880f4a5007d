"""Seeded mutations of a .tflite file for the fuzz tests: bit flips, truncations and field edits.

Field edits go through the ``tflite`` package's generated readers: every scalar field and every element
of a scalar vector a table holds (shapes, types, buffer and opcode indices, operator inputs and outputs,
scales, zero points, builtin options, vector lengths) is located by the accessor that reads it, and
overwritten in place with a value chosen to break something (0, -1, huge, NaN, one past the end...).
"""
from __future__ import annotations

import inspect
import re
import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_FORMATS = {"Bool": "?", "Int8": "b", "Uint8": "B", "Int16": "h", "Uint16": "H", "Int32": "i", "Uint32": "I",
            "Int64": "q", "Uint64": "Q", "Float32": "f", "Float64": "d"}
_SCALAR = re.compile(r"Offset\((\d+)\).*Get\(flatbuffers\.number_types\.(\w+)Flags, o \+ self\._tab\.Pos\)", re.S)
_ELEMENT = re.compile(r"Offset\((\d+)\).*Get\(flatbuffers\.number_types\.(\w+)Flags, a \+", re.S)
_LENGTH = re.compile(r"Offset\((\d+)\).*VectorLen\(o\)", re.S)
_MAX_ELEMENTS = 16  # of a long vector (buffer data) only the first elements are fields; bit flips reach the rest


@dataclass(frozen=True)
class Field:
    what: str  # e.g. "tensor 7 shape[2]"
    position: int  # byte offset in the file
    fmt: str  # struct format, little-endian


@lru_cache(maxsize=None)
def _accessors(cls) -> tuple[tuple[str, int, str, str], ...]:
    """(name, vtable slot, struct format, "scalar" | "element" | "length") of each scalar the generated class
    reads: a scalar field, the elements of a scalar vector, the length of any vector (of tables too)."""
    found = []
    for name, fn in vars(cls).items():
        if name.startswith("_") or not inspect.isfunction(fn) or name.endswith(("AsNumpy", "IsNone")):
            continue
        source = inspect.getsource(fn)
        for pattern, kind in ((_LENGTH, "length"), (_SCALAR, "scalar"), (_ELEMENT, "element")):
            m = pattern.search(source)
            if m and (kind == "length" or m.group(2) in _FORMATS):
                found.append((name, int(m.group(1)), "I" if kind == "length" else _FORMATS[m.group(2)], kind))
                break
    return tuple(found)


def _table_fields(table, cls, what: str, out: list[Field]) -> None:
    tab = table._tab
    for name, slot, fmt, kind in _accessors(cls):
        o = tab.Offset(slot)
        if not o:
            continue  # a default value is not stored: nothing to edit in place
        if kind == "scalar":
            out.append(Field(f"{what} {name}", tab.Pos + o, fmt))
        elif kind == "length":
            out.append(Field(f"{what} {name}", tab.Vector(o) - 4, fmt))
        else:
            start, size = tab.Vector(o), struct.calcsize(fmt)
            out += [Field(f"{what} {name}[{j}]", start + j * size, fmt) for j in range(min(tab.VectorLen(o), _MAX_ELEMENTS))]


def fields(data: bytes) -> list[Field]:
    """Every editable scalar of an intact .tflite, found through the tflite schema's readers."""
    import tflite

    model, out = tflite.Model.GetRootAs(data, 0), []
    _table_fields(model, tflite.Model, "model", out)
    for i in range(model.OperatorCodesLength()):
        _table_fields(model.OperatorCodes(i), tflite.OperatorCode, f"opcode {i}", out)
    for i in range(model.BuffersLength()):
        _table_fields(model.Buffers(i), tflite.Buffer, f"buffer {i}", out)
    graph = model.Subgraphs(0)
    _table_fields(graph, tflite.SubGraph, "subgraph", out)
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        _table_fields(tensor, tflite.Tensor, f"tensor {i}", out)
        if tensor.Quantization() is not None:
            _table_fields(tensor.Quantization(), tflite.QuantizationParameters, f"tensor {i} quantization", out)
    options = {v: k for k, v in vars(tflite.BuiltinOptions).items() if not k.startswith("_")}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        _table_fields(op, tflite.Operator, f"op {i}", out)
        table, kind = op.BuiltinOptions(), options.get(op.BuiltinOptionsType())
        if table is not None and kind not in (None, "NONE"):
            opts = getattr(tflite, kind)()
            opts.Init(table.Bytes, table.Pos)
            _table_fields(opts, type(opts), f"op {i} {kind}", out)
    return out


def constant_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the constant buffers' data (weights, biases): what a bit flip there changes is a value."""
    import tflite

    model, ranges = tflite.Model.GetRootAs(data, 0), []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        o = buffer._tab.Offset(4)
        if o:
            start = buffer._tab.Vector(o)
            ranges.append((start, start + buffer._tab.VectorLen(o)))
    return ranges


def _int_values(fmt: str, current: int, rng) -> list[int]:
    bits = struct.calcsize(fmt) * 8
    lo, hi = (0, 2**bits - 1) if fmt.isupper() else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    wanted = [0, 1, -1, 2, 3, 4, 7, 9, 17, 127, 128, -128, -129, 255, 256, 2**15, 2**16 + 3, 2**31 - 1, -(2**31),
              2**40, current + 1, current - 1, current * 2, current * 3 + 1, int(rng.integers(-1000, 1000))]
    return [v for v in wanted if lo <= v <= hi and v != current]


def _float_values(current: float) -> list[float]:
    return [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-45, 1e-30, 3e38, -current, current * 2,
            current * 1e6, current / 1e6, 1.0]


def edit(data: bytes, field: Field, rng) -> tuple[str, bytes]:
    (current,) = struct.unpack_from("<" + field.fmt, data, field.position)
    if field.fmt == "?":
        value = not current
    elif field.fmt in "fd":
        choices = _float_values(float(current))
        value = choices[int(rng.integers(len(choices)))]
    else:
        choices = _int_values(field.fmt, int(current), rng)
        value = choices[int(rng.integers(len(choices)))]
    mutated = bytearray(data)
    struct.pack_into("<" + field.fmt, mutated, field.position, value)
    return f"{field.what}: {current!r} -> {value!r}", bytes(mutated)


def flip_bits(data: bytes, rng, ranges: list[tuple[int, int]]) -> tuple[str, bytes]:
    """Flip 1-4 bits, half the time outside the constant buffers (in the tables, where a flip breaks structure)."""
    mutated = bytearray(data)
    structure = np.ones(len(data), bool)
    for start, end in ranges:
        structure[start:end] = False
    where = np.flatnonzero(structure) if rng.random() < 0.5 and structure.any() else np.arange(len(data))
    flipped = []
    for _ in range(int(rng.integers(1, 5))):
        byte, bit = int(where[int(rng.integers(len(where)))]), int(rng.integers(8))
        mutated[byte] ^= 1 << bit
        flipped.append(f"{byte}.{bit}")
    return f"bit flips at {', '.join(flipped)}", bytes(mutated)


def truncate(data: bytes, rng) -> tuple[str, bytes]:
    """Cut the file: anywhere, just after the header, or a few bytes short of its end."""
    length = int(rng.choice([rng.integers(0, len(data)), rng.integers(8, 64), len(data) - rng.integers(1, 64)]))
    return f"truncated to {length} of {len(data)} bytes", data[:length]


def mutations(data: bytes, seed: int, count: int):
    """``count`` seeded mutations of ``data``: (description, bytes), about 1/5 bit flips, 1/10 truncations,
    the rest field edits."""
    rng = np.random.default_rng(seed)
    editable, ranges = fields(data), constant_ranges(data)
    for _ in range(count):
        kind = rng.random()
        if kind < 0.2:
            yield flip_bits(data, rng, ranges)
        elif kind < 0.3:
            yield truncate(data, rng)
        else:
            yield edit(data, editable[int(rng.integers(len(editable)))], rng)


def converter_like(**kwargs) -> bytes:
    """tests.e2e.test_tflite_import._converter_like: a TensorFlow-converter-style MobileNet, with SOFTMAX."""
    from tests.e2e import test_tflite_import as t

    return t._converter_like(**kwargs)


def edited(data: bytes, **values) -> bytes:
    """``data`` with fields set by name: edited(data, **{"tensor 3 Type": 7})."""
    by_name = {f.what: f for f in fields(data)}
    mutated = bytearray(data)
    for what, value in values.items():
        struct.pack_into("<" + by_name[what].fmt, mutated, by_name[what].position, value)
    return bytes(mutated)
