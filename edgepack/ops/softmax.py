"""``softmax``: TFLite's int8 SOFTMAX over a (classes,) vector, its reference kernel's integer arithmetic
(reference_ops::Softmax<int8_t, int8_t>, the one LiteRT's BUILTIN_REF runs): each input's difference to the
row's max, rescaled by beta * input_scale into Q5.26, gemmlowp's fixed-point exp, the sum of exps in Q12.19,
its reciprocal by Newton-Raphson, and the output in scale 1/256, zero point -128 (TFLite requires that
output quantization). The multiplier, left shift and diff_min are softmax.cc Prepare's (PreprocessSoftmaxScaling,
CalculateInputRadius), computed from the input scale and beta, so the layer carries no arrays and a .tflite
twin of the layer gives the same outputs. Where the real sum of a row's exps reaches 512 (hundreds of
near-equal logits) TFLite's kernel aborts (TFLITE_CHECK on its output shift, exponent > 31); the reference
and the C kernel compute the same formula with that wider shift (int64), so their outputs stay defined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.arith import INT32_MAX, INT32_MIN, rounding_doubling_high_mul
from edgepack.ops.base import Layer, Params, QParams

SOFTMAX_OUTPUT = QParams(1.0 / 256, -128)  # TFLite's int8 SOFTMAX requires this output quantization
SCALED_DIFF_INTEGER_BITS = 5  # kScaledDiffIntegerBits: the exp's input is Q5.26
ACCUMULATION_INTEGER_BITS = 12  # kAccumulationIntegerBits: the sum of exps is Q12.19
MAX_CLASSES = 1 << 12  # more exps than this could overflow the Q12.19 sum
# gemmlowp exp_on_negative_values' barrel shifter: (exponent, Q0.31 of exp(-2^exponent))
EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
              (4, 242))


@dataclass(frozen=True)
class SoftmaxParams(Params):
    beta: float = 1.0  # SoftmaxOptions.beta (float32 in the file)


def softmax_scaling(input_scale: float, beta: float) -> tuple[int, int, int]:
    """softmax.cc Prepare (kReference): PreprocessSoftmaxScaling(beta, input_scale, 5) -> (multiplier,
    left_shift), and diff_min = -CalculateInputRadius(5, left_shift); beta and scale are float32 in TFLite."""
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)),
               float((1 << 31) - 1))
    mantissa, shift = math.frexp(real)  # QuantizeMultiplierGreaterThanOne
    q = int(math.floor(mantissa * (1 << 31) + 0.5))
    if q == 1 << 31:
        q //= 2
        shift += 1
    radius = ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << shift)
    return q, shift, -int(math.floor(radius))


def _wrap(x: np.ndarray) -> np.ndarray:
    """int32 two's complement wrap of int64-held values (gemmlowp's raw + and - on int32)."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _srdhm(a, b) -> np.ndarray:
    return rounding_doubling_high_mul(np.asarray(a, np.int64), np.asarray(b, np.int64))


def _rdbp(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT by a constant exponent."""
    mask = (1 << exponent) - 1
    return (x >> exponent) + ((x & mask) > ((mask >> 1) + (x < 0)))


def _sat_shift_left(x: np.ndarray, n: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<n> for n > 0."""
    return np.clip(x * (1 << n), INT32_MIN, INT32_MAX)


def _exp_quarter(a: np.ndarray) -> np.ndarray:
    """exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31."""
    x = _wrap(a + (1 << 28))
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4_over_4 = _rdbp(_srdhm(x2, x2), 2)
    poly = _rdbp(_wrap(_srdhm(_wrap(x4_over_4 + x3), 715827883) + x2), 1)
    return _wrap(1895147668 + _srdhm(1895147668, _wrap(x + poly)))


def exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """gemmlowp exp_on_negative_values for a Q5.26 input (<= 0), Q0.31 output."""
    fractional = 31 - SCALED_DIFF_INTEGER_BITS
    quarter = 1 << (fractional - 2)
    a_mod = _wrap((a & (quarter - 1)) - quarter)
    result = _exp_quarter(_sat_shift_left(a_mod, SCALED_DIFF_INTEGER_BITS))
    remainder = _wrap(a_mod - a)
    for exponent, multiplier in EXP_BARREL:
        result = np.where(remainder & (1 << (fractional + exponent)), _srdhm(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 in, Q0.31 out (Newton-Raphson in Q2.29)."""
    total = a + INT32_MAX
    half = np.where(total >= 0, (total + 1) // 2, -((-(total - 1)) // 2))  # RoundingHalfSum, C division
    x = _wrap(1515870810 + _srdhm(half, -1010580540))
    for _ in range(3):
        one_minus = _wrap((1 << 29) - _srdhm(half, x))
        x = _wrap(x + _sat_shift_left(_srdhm(x, one_minus), 2))
    return _sat_shift_left(x, 1)


def _clz32(x: np.ndarray) -> np.ndarray:
    """CountLeadingZeros of positive int32 values."""
    bits = np.zeros_like(x)
    for k in range(31, -1, -1):
        bits = np.where((bits == 0) & (x >> k != 0), k + 1, bits)
    return 32 - bits


def softmax_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    """reference_ops::Softmax<int8_t, int8_t> over the last axis of (N, classes)."""
    multiplier, left_shift, diff_min = softmax_scaling(layer.input_q.scale, layer.params.beta)
    v = x.astype(np.int64)
    diff = v - v.max(axis=-1, keepdims=True)
    used = diff >= diff_min
    rescaled = _srdhm(_wrap(diff * (1 << left_shift)), multiplier)
    exps = exp_on_negative_values(np.where(used, rescaled, 0))
    total = np.where(used, _rdbp(exps, ACCUMULATION_INTEGER_BITS), 0).sum(axis=-1, keepdims=True)
    headroom_plus_one = _clz32(total)
    bits_over_unit = ACCUMULATION_INTEGER_BITS - headroom_plus_one
    shifted_minus_one = _wrap(((total << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    scale = _one_over_one_plus_x(shifted_minus_one)
    exponent = bits_over_unit + 31 - 8
    product = _srdhm(scale, exps)
    mask = (np.int64(1) << exponent) - 1
    out = (product >> exponent) + ((product & mask) > ((mask >> 1) + (product < 0))) - 128
    return np.where(used, np.clip(out, -128, 127), -128).astype(np.int8)


def softmax_problems(plan, i: int) -> list[str]:
    layer = plan.layers[i]
    shape = tuple(layer.input_shape)
    if len(shape) != 1 or tuple(layer.output_shape) != shape or not 1 <= shape[0] <= MAX_CLASSES:
        return [f"{layer.name}: a softmax reads a (classes,) vector of 1 to {MAX_CLASSES} values and keeps its shape, "
                f"got {list(layer.input_shape)} -> {list(layer.output_shape)}"]
    if not isinstance(layer.params, SoftmaxParams):
        return [f"{layer.name}: a softmax needs its beta (SoftmaxParams)"]
    beta = layer.params.beta
    if not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        return [f"{layer.name}: softmax beta {beta!r} is not a positive finite number"]
    if layer.arrays or (layer.act_min, layer.act_max) != (-128, 127):
        return [f"{layer.name}: a softmax has no arrays and no fused clamp"]
    if abs(layer.output_q.scale - SOFTMAX_OUTPUT.scale) > 0.001 / 256 or layer.output_q.zero_point != -128:
        return [f"{layer.name}: a softmax outputs in scale 1/256, zero point -128 (TFLite's int8 SOFTMAX)"]
    if float(np.float32(beta)) * float(np.float32(layer.input_q.scale)) * (1 << 26) <= 1:
        return [f"{layer.name}: beta * input scale {beta * layer.input_q.scale:g} is at most 2^-26, which TFLite's "
                "int8 SOFTMAX refuses: use a coarser input scale or a larger beta"]
    return []


def softmax_layer(name: str, classes: int, in_q: QParams, beta: float = 1.0, inputs: tuple[int, ...] = ()) -> Layer:
    """A softmax layer over ``classes`` logits of quantization ``in_q``."""
    return Layer(name, "softmax", (classes,), (classes,), input_q=in_q, output_q=SOFTMAX_OUTPUT,
                 params=SoftmaxParams(float(beta)), inputs=inputs)


SOFTMAX = register(Op("softmax", softmax_reference, softmax_problems, params=SoftmaxParams, classifier=True,
                      summary="int8 softmax over the class logits (TFLite's SOFTMAX)"))
