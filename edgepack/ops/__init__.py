"""The op registry: what a plan layer of each kind is, in one place.

Each op kind (``conv``, ``fc``, ``add``, ...) is one module in this package that registers an ``Op``: how
many tensors it reads, its typed parameters (a ``Params`` subclass), its validation and its numpy reference
kernel (TFLite's arithmetic, README "Arithmetic"). Executors (C codegen, TVM generic, the hand-scheduled
TVM sets, TFLite export) keep a ``Lowerings`` table, one entry per kind they implement; a plan holding a
kind an executor has no entry for is refused by op name before any work. Adding an op is one module
here, one lowering per executor and one conformance test, as TFLite Micro's one registration per kernel.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from typing import Callable

from edgepack.errors import UnsupportedModelError


@dataclass(frozen=True)
class Op:
    """One op kind. ``reference(layer, *inputs)`` maps int8 (N, ...) arrays to the int8 output;
    ``problems(plan, i)`` lists what breaks the int8 contract for layer ``i`` of this kind beyond the checks
    every layer gets (shapes match producers, quantization parameters, clamp), [] when it is valid."""
    kind: str
    reference: Callable
    problems: Callable
    arity: int = 1  # tensors it reads (with ``variadic``, the fewest it reads)
    variadic: bool = False  # reads ``arity`` or more tensors (a concat)
    own_input_shapes: bool = False  # its problems() checks the inputs after the first (a concat's channels, a mul's gate)
    params: type | None = None  # its Params subclass (Layer.params), None when it has none
    weighted: bool = False  # carries weight / bias / multiplier / shift / weight_scale arrays
    summary: str = ""  # one phrase for refusals and `edgepack info`, e.g. "3x3 / 1x1 convolution"
    extra: dict = field(default_factory=dict, compare=False)
    classifier: bool = False  # may end a plan: outputs the (classes,) logits (a .tflite's output, the importer's end)


_OPS: dict[str, Op] = {}
_BUILTINS_LOADED = False
_LOADING = threading.RLock()


def register(op: Op) -> Op:
    """Add an op kind (called by each module of this package at import; a test may add a toy op)."""
    if op.kind in _OPS and _OPS[op.kind] is not op:
        raise ValueError(f"op kind {op.kind!r} is registered twice")
    _OPS[op.kind] = op
    return op


def unregister(kind: str) -> None:
    _OPS.pop(kind, None)


def _load_builtins() -> None:
    """Import every module of this package once, so each registers its op. Marked done only after the last
    import, under a lock: reference.run_batched's threads may be the first to ask, and none may see a
    half-filled registry."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _LOADING:
        if not _BUILTINS_LOADED:
            for info in pkgutil.iter_modules(__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{__name__}.{info.name}")
            _BUILTINS_LOADED = True


def get(kind: str) -> Op | None:
    """The registered op of ``kind``, None when there is none."""
    _load_builtins()
    return _OPS.get(kind)


def kinds() -> tuple[str, ...]:
    _load_builtins()
    return tuple(_OPS)


class Lowerings:
    """One executor's lowering per op kind: ``@LOWER.register("conv", "pointwise")`` on a function, then
    ``LOWER.check(plan)`` before any work and ``LOWER[layer.kind]`` per layer."""

    def __init__(self, executor: str):
        self.executor = executor
        self._table: dict[str, Callable] = {}

    def register(self, *op_kinds: str):
        def add(fn: Callable) -> Callable:
            for kind in op_kinds:
                self._table[kind] = fn
            return fn
        return add

    def __getitem__(self, kind: str) -> Callable:
        return self._table[kind]

    def __contains__(self, kind: str) -> bool:
        return kind in self._table

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._table)

    def check(self, plan) -> None:
        """Refuse by op name the first layer whose kind this executor does not lower."""
        for i, layer in enumerate(plan.layers):
            if layer.kind not in self._table:
                raise UnsupportedModelError(
                    f"layer {i} '{layer.name}' is a {layer.kind!r} op, which the {self.executor} executor does not "
                    f"implement (it runs {', '.join(self._table)}): choose another target or remove that layer")
