"""``fc``: the fully connected classifier, (C, H, W) or (F,) -> (O,), weights (O, features) int8 with
per-channel requantization. Its ``rounding`` field is "double" (gemmlowp's two roundings, the plan's own)
or "single" (acc * M rounded once, TFLite's FULLY_CONNECTED; README "Arithmetic")."""
from __future__ import annotations

import math

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.arith import requantize
from edgepack.ops.base import ROUNDINGS, Layer, field_problem
from edgepack.ops.checks import requantization_problems, weight_problems
from edgepack.ops.conv import centered


def fc_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    acc = centered(x.reshape(x.shape[0], -1), layer) @ layer.weight.astype(np.float64).T
    return requantize(np.rint(acc).astype(np.int64) + layer.arrays["bias"][None], layer)


def _fc_weight(layer: Layer) -> tuple[str, bool]:
    """(O, features): as wide as the flattened input."""
    w, features = layer.weight, math.prod(layer.input_shape)
    return f"({layer.output_shape[0]}, {features})", w.ndim == 2 and w.shape[1] == features


def fc_problems(plan, i: int) -> list[str]:
    layer = plan.layers[i]
    if math.prod(layer.output_shape) != layer.output_shape[0]:
        return [f"{layer.name}: an fc outputs a vector, not {list(layer.output_shape)}"]
    if layer.rounding not in ROUNDINGS:
        return [field_problem(layer, "rounding")]
    return weight_problems(layer, _fc_weight) or requantization_problems(layer)


FC = register(Op("fc", fc_reference, fc_problems, fields=("rounding",), weighted=True,
                 summary="fully connected classifier", classifier=True))
