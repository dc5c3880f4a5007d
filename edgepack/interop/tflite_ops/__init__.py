"""Each op kind's TFLite mapping, both directions, in one module of this package.

A module here (``conv``, ``fc``, ``avgpool``, ``add``) holds, for its plan op kind(s):

- the export lowering, ``@EXPORTS.register("conv", "pointwise")`` on fn(graph, sources, layer, prefix) ->
  the output tensor, writing TFLite builtins into a tflite_writer.Graph, and the options writer of each
  builtin it writes (``@tflite_writer.builtin_options(code, version)``);
- the import, ``@IMPORTS.register("CONV_2D", "DEPTHWISE_CONV_2D")`` on fn(reader, i, op, inputs, value, out)
  -> the plan Layer of op ``i`` (a tflite_reader.Reader; ``value`` is what its first input holds, ``out``
  its output tensor). The op's further activation inputs, up to its arity, are read by the walker from
  ``inputs`` once the function has checked them.

tflite_export and tflite_import walk the plan / the file and dispatch through these two tables; the
structural ops (RESHAPE, PAD, QUANTIZE, a trailing SOFTMAX / DEQUANTIZE) stay in the walkers. Adding an
op's TFLite mapping is one module here. The modules are imported on first use of a table, once, under a
lock (as edgepack.ops loads its op modules).
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from typing import Callable

from edgepack.ops import Lowerings

_LOADED = False
_LOADING = threading.RLock()


def load() -> None:
    """Import every module of this package once, so each registers its mappings; marked done only after the
    last import, so no thread sees half-filled tables. The tables are then sorted by name: what a refusal
    lists does not depend on which module some caller imported first."""
    global _LOADED
    if _LOADED:
        return
    with _LOADING:
        if not _LOADED:
            for info in pkgutil.iter_modules(__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{__name__}.{info.name}")
            EXPORTS.sort()
            IMPORTS.sort()
            _LOADED = True


class _Exports(Lowerings):
    """The TFLite export's lowering per plan op kind (ops.Lowerings), filled on first use."""

    def __getitem__(self, kind: str) -> Callable:
        load()
        return super().__getitem__(kind)

    def __contains__(self, kind: str) -> bool:
        load()
        return super().__contains__(kind)

    def kinds(self) -> tuple[str, ...]:
        load()
        return super().kinds()

    def check(self, plan) -> None:
        load()
        super().check(plan)

    def unregister(self, kind: str) -> None:
        """Drop ``kind``'s lowering (a test's toy op)."""
        self._table.pop(kind, None)

    def sort(self) -> None:
        self._table = dict(sorted(self._table.items()))


class _Imports:
    """The TFLite import's function per builtin op name, filled on first use."""

    def __init__(self):
        self._table: dict[str, Callable] = {}

    def register(self, *names: str):
        def add(fn: Callable) -> Callable:
            for name in names:
                if name in self._table and self._table[name] is not fn:
                    raise ValueError(f"TFLite op {name} has its import registered twice")
                self._table[name] = fn
            return fn
        return add

    def unregister(self, name: str) -> None:
        """Drop ``name``'s import (a test's toy op)."""
        self._table.pop(name, None)

    def sort(self) -> None:
        self._table = dict(sorted(self._table.items()))

    def __getitem__(self, name: str) -> Callable:
        load()
        return self._table[name]

    def __contains__(self, name: str) -> bool:
        load()
        return name in self._table

    def names(self) -> tuple[str, ...]:
        load()
        return tuple(self._table)


EXPORTS = _Exports("TFLite export")
IMPORTS = _Imports()
