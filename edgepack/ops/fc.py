"""``fc``: a fully connected layer, (C, H, W) or (F,) -> (O,), weights (O, features) int8 with per-channel
requantization: the classifier after a pool or a flatten, or any layer of an FC-only chain on a vector input
(an autoencoder's 640 -> 128 -> 8 -> 128 -> 640). It may end a plan (``classifier``): its output is then the
model's, class logits or any other values (bench measures unlabelled outputs for fidelity, not accuracy).
Its ``FcParams.rounding`` is "double" (gemmlowp's two roundings, the plan's own), "single" (acc * M rounded
once, TFLite's FULLY_CONNECTED under LiteRT; README "Arithmetic") or "tflm" (TFLite's FULLY_CONNECTED as
TensorFlow Lite Micro computes it: TFLM builds its kernels without TFLITE_SINGLE_ROUNDING, so it rounds twice
as gemmlowp; a tflm artifact's imported fc, see as_tflm)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.arith import requantize
from edgepack.ops.base import Layer, Params
from edgepack.ops.checks import requantization_problems, weight_problems
from edgepack.ops.conv import centered

ROUNDINGS = ("double", "single", "tflm")  # gemmlowp's two, LiteRT FULLY_CONNECTED's one, TFLM FULLY_CONNECTED's two


@dataclass(frozen=True)
class FcParams(Params):
    rounding: str = "double"


def rounds_once(layer: Layer) -> bool:
    """Whether ``layer`` requantizes as TFLite's FULLY_CONNECTED (only an fc can; every other kind rounds twice)."""
    return isinstance(layer.params, FcParams) and layer.params.rounding == "single"


def as_tflm(layer: Layer) -> Layer:
    """An imported FULLY_CONNECTED (rounding "single", LiteRT's arithmetic) as TFLM computes it (rounding "tflm":
    two roundings, still written as FULLY_CONNECTED); any other layer as it is. LiteRT and TFLM differ by 1 on
    ties (e.g. 4 of 3,000 logits of a converter-made MobileNet-like model)."""
    if isinstance(layer.params, FcParams) and layer.params.rounding == "single":
        return replace(layer, params=FcParams("tflm"))
    return layer


def fc_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    acc = centered(x.reshape(x.shape[0], -1), layer) @ layer.weight.astype(np.float64).T
    return requantize(np.rint(acc).astype(np.int64) + layer.arrays["bias"][None], layer,
                      single_rounding=rounds_once(layer))


def _fc_weight(layer: Layer) -> tuple[str, bool]:
    """(O, features): as wide as the flattened input."""
    w, features = layer.weight, math.prod(layer.input_shape)
    return f"({layer.output_shape[0]}, {features})", w.ndim == 2 and w.shape[1] == features


def fc_problems(plan, i: int) -> list[str]:
    layer = plan.layers[i]
    if math.prod(layer.output_shape) != layer.output_shape[0]:
        return [f"{layer.name}: an fc outputs a vector, not {list(layer.output_shape)}"]
    if layer.params.rounding not in ROUNDINGS:
        return [f"{layer.name}: rounding {layer.params.rounding!r} is not one of {', '.join(ROUNDINGS)}"]
    return weight_problems(layer, _fc_weight) or requantization_problems(layer)


FC = register(Op("fc", fc_reference, fc_problems, params=FcParams, weighted=True,
                 summary="fully connected layer (a classifier, or a chain on vectors)", classifier=True))
