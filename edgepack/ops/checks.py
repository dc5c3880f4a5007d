"""Validation shared by the weighted ops (conv, depthwise, pointwise, fc): their arrays are present, typed,
sized for the layer, and inside the Q31 / int32 contract every executor relies on (README "Arithmetic")."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edgepack.ops.base import ARRAYS, Layer

_DTYPES = {"weight": np.int8, "bias": np.int32, "multiplier": np.int32, "shift": np.int32}


def weight_problems(layer: Layer, fit: Callable[[Layer], tuple[str, bool]]) -> list[str]:
    """Arrays present, typed and one per output channel; the weight as wide as the layer's input: ``fit``
    gives the kind's expected weight shape in words (e.g. "(8, 3, K, K)") and whether the weight has it."""
    a = layer.arrays
    missing = [k for k in ARRAYS if k not in a]
    if missing:
        return [f"{layer.name}: no {', '.join(missing)}"]
    out = layer.output_shape[0]
    bad = [k for k, t in _DTYPES.items() if a[k].dtype != t] + [k for k in ARRAYS if a[k].ndim < 1 or len(a[k]) != out]
    bad += [k for k in ARRAYS if k != "weight" and a[k].ndim != 1]
    if bad:
        return [f"{layer.name}: {', '.join(sorted(set(bad)))} of the wrong type or length (the layer has {out} outputs)"]
    if not np.issubdtype(a["weight_scale"].dtype, np.floating) or not np.all(np.isfinite(a["weight_scale"])):
        return [f"{layer.name}: weight_scale is not finite floating-point numbers"]
    expected, fits = fit(layer)
    if not fits:
        return [f"{layer.name}: weight of shape {list(layer.weight.shape)} does not fit a {layer.kind} layer of input "
                f"{list(layer.input_shape)} and output {list(layer.output_shape)} (expected {expected})"]
    return []


def requantization_problems(layer: Layer) -> list[str]:
    """Multipliers Q31 in [2^30, 2^31) (or 0) with shifts in [-31, 30], and a bias that cannot push the
    int32 accumulator out of range (every term is at most 255 * 127)."""
    a, found = layer.arrays, []
    m, sh = a["multiplier"].astype(np.int64), a["shift"].astype(np.int64)
    if np.any((m != 0) & ((m < 1 << 30) | (m >= 1 << 31))) or np.any((sh < -31) | (sh > 30)):
        found.append(f"{layer.name}: requantization multiplier or shift outside the Q31 contract")
    terms = int(np.prod(a["weight"].shape[1:]))
    worst = np.abs(a["bias"].astype(np.int64)) + terms * 255 * 127
    if np.any(worst > 2**31 - 1):
        found.append(f"{layer.name}: bias too large for the int32 accumulator (its weights are ~0 next to the bias)")
    return found


def map_problems(layer: Layer, reads: bool = True, writes: bool = True) -> list[str]:
    """A layer that reads / writes a (C, H, W) map, not a vector."""
    if reads and len(layer.input_shape) != 3:
        return [f"{layer.name}: a {layer.kind} layer reads a (C, H, W) map, not {list(layer.input_shape)}"]
    if writes and len(layer.output_shape) != 3:
        return [f"{layer.name}: a {layer.kind} layer outputs a (C, H, W) map, not {list(layer.output_shape)}"]
    return []
