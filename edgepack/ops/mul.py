"""``mul``: the elementwise product of two int8 tensors, TFLite's int8 MUL (reference_integer_ops::Mul and
BroadcastMul4DSlow): (a - zp_a) * (b - zp_b) in int32, requantized by M = s_a * s_b / s_out (kernels/mul.cc
Prepare: the product and quotient of the float32 scales, then QuantizeMultiplier) with
MultiplyByQuantizedMultiplier, plus zp_out, clamped to the fused activation. Both tensors have one shape, or
one of them is (C, 1, 1) and is broadcast over the other's (C, H, W): a squeeze-and-excite gate, in either
operand order. ``MulParams`` holds the second input's quantization and shape (``Layer.input_shape`` is the
first's); the output has the larger shape. Arrays: "multiplier" and "shift" (1,)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.arith import quantize_multiplier, requantize
from edgepack.ops.base import Layer, Params, QParams

MUL_MAX_LEFT_SHIFT = 15  # 255 * 255 << 15 < 2^31: TFLite's x * (1 << left_shift) cannot overflow int32


@dataclass(frozen=True)
class MulParams(Params):
    input2_q: QParams  # the second input's quantization (Layer.input_q is the first's)
    input2_shape: tuple[int, ...]  # the second input's shape: the first's, the output's or (C, 1, 1)

    def __post_init__(self):
        if isinstance(self.input2_shape, list):  # from plan.json
            object.__setattr__(self, "input2_shape", tuple(self.input2_shape))

    def more_inputs_q(self) -> tuple[QParams, ...]:
        return (self.input2_q,)


def mul_requantization(a: QParams, b: QParams, out: QParams) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) int32 (1,) as TFLite's int8 MUL prepares them: ``input1->params.scale *
    input2->params.scale / output->params.scale`` is float32 arithmetic (the scales are float), widened to
    double for QuantizeMultiplier."""
    real = np.float32(np.float32(a.scale) * np.float32(b.scale)) / np.float32(out.scale)
    m, shift = quantize_multiplier(float(np.float32(real)))
    return np.array([m], np.int32), np.array([shift], np.int32)


def mul_reference(layer: Layer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's int8 MUL on int64-held int32 values; numpy broadcasts a (C, 1, 1) operand as
    BroadcastMul4DSlow does."""
    n = len(a)
    a = a.reshape(n, *layer.input_shape).astype(np.int64) - layer.input_q.zero_point
    b = b.reshape(n, *layer.params.input2_shape).astype(np.int64) - layer.params.input2_q.zero_point
    return requantize(a * b, layer)  # |product| <= 255 * 255; multiplier (1,) broadcasts


def mul_output_shape(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The output shape of a mul of these operand shapes, None when the plan's mul does not take them: one
    shape, or a (C, 1, 1) gate and a (C, H, W) map of the same channels."""
    shape_a, shape_b = tuple(shape_a), tuple(shape_b)
    if shape_a == shape_b:
        return shape_a
    for gate, full in ((shape_a, shape_b), (shape_b, shape_a)):
        if len(full) == 3 and gate == (full[0], 1, 1):
            return full
    return None


def mul_problems(plan, i: int) -> list[str]:
    """Operand shapes as the producers write them and as MUL broadcasts them, and one Q31 multiplier with a
    shift in [-31, 15]."""
    layer = plan.layers[i]  # two inputs: the shared arity check ran first
    if layer.params is None:
        return [f"{layer.name}: a mul needs input2_q and input2_shape (its second input's quantization and shape)"]
    declared = (tuple(layer.input_shape), tuple(layer.params.input2_shape))
    made = tuple(plan.tensor_shape(j) for j in plan.inputs_of(i))
    if made != declared:
        return [f"{layer.name}: a mul declares inputs {[list(s) for s in declared]} but reads {[list(s) for s in made]}"]
    if mul_output_shape(*declared) != tuple(layer.output_shape):
        return [f"{layer.name}: a mul of {[list(s) for s in declared]} outputs {list(layer.output_shape)}: it takes one "
                "shape, or a (C, 1, 1) gate and a (C, H, W) map, and outputs the larger"]
    a = layer.arrays
    if set(a) != {"multiplier", "shift"} or any(a[k].dtype != np.int32 or a[k].shape != (1,) for k in a):
        return [f"{layer.name}: a mul needs int32 multiplier and shift arrays of 1 (and no others)"]
    m, sh = int(a["multiplier"][0]), int(a["shift"][0])
    if (m != 0 and not (1 << 30) <= m < (1 << 31)) or not -31 <= sh <= MUL_MAX_LEFT_SHIFT:
        return [f"{layer.name}: a mul's multiplier must be Q31 in [2^30, 2^31) with a shift in [-31, {MUL_MAX_LEFT_SHIFT}]"]
    return []


# own_input_shapes: the plan's shared shape check leaves the second input (a (C, 1, 1) gate) to mul_problems
MUL = register(Op("mul", mul_reference, mul_problems, arity=2, own_input_shapes=True, params=MulParams,
                  summary="product of two tensors (a (C, 1, 1) gate broadcast)"))
