"""``add``: the sum of two int8 tensors of one shape (a residual connection), TFLite's int8 ADD: each
input, minus its zero point and widened by 2^20, is rescaled to twice the larger input scale, and their
sum to the output scale (add_multipliers). It reads two tensors; the second's QParams is ``AddParams.input2_q``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.arith import ADD_LEFT_SHIFT, rescale
from edgepack.ops.base import Layer, Params, QParams


@dataclass(frozen=True)
class AddParams(Params):
    input2_q: QParams  # the second input's quantization (Layer.input_q is the first's)

    def more_inputs_q(self) -> tuple[QParams, ...]:
        return (self.input2_q,)


def add_reference(layer: Layer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's int8 ADD (reference_integer_ops::Add), on int64-held int32 values."""
    (ma, mb, mo), (sa, sb, so) = layer.arrays["multiplier"].tolist(), layer.arrays["shift"].tolist()
    wide_a = (a.astype(np.int64) - layer.input_q.zero_point) << ADD_LEFT_SHIFT
    wide_b = (b.astype(np.int64) - layer.params.input2_q.zero_point) << ADD_LEFT_SHIFT
    raw = rescale(wide_a, ma, sa) + rescale(wide_b, mb, sb)  # |each| <= 2^27: the sum stays in int32
    out = rescale(raw, mo, so) + layer.output_q.zero_point
    return np.clip(out, layer.act_min, layer.act_max).astype(np.int8)


def add_problems(plan, i: int) -> list[str]:
    """Inputs and output of one shape, the second input's QParams, and Q31 multipliers with shifts <= 0
    (TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp) for [input a, input b, output]."""
    layer = plan.layers[i]
    shapes = {tuple(layer.input_shape), tuple(layer.output_shape)} | {plan.tensor_shape(j) for j in plan.inputs_of(i)}
    if len(shapes) != 1:
        return [f"{layer.name}: an add needs inputs and output of one shape, got {sorted(shapes)}"]
    if layer.params is None:
        return [f"{layer.name}: an add needs input2_q (its second input's quantization)"]
    a = layer.arrays
    if any(k not in a or a[k].dtype != np.int32 or a[k].shape != (3,) for k in ("multiplier", "shift")):
        return [f"{layer.name}: an add needs int32 multiplier and shift arrays of 3 (input a, input b, output)"]
    m, sh = a["multiplier"].astype(np.int64), a["shift"].astype(np.int64)
    if np.any((m != 0) & ((m < 1 << 30) | (m >= 1 << 31))) or np.any((sh < -31) | (sh > 0)):
        return [f"{layer.name}: add multipliers must be Q31 in [2^30, 2^31) with shifts in [-31, 0]"]
    return []


ADD = register(Op("add", add_reference, add_problems, arity=2, params=AddParams, summary="sum of two tensors"))
