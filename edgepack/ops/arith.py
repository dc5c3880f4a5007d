"""The integer arithmetic every op shares (TFLite / gemmlowp, README "Arithmetic"): Q31 multipliers as
TFLite prepares them, and the roundings that requantize an int32 accumulator to int8. Pure functions of
numbers and arrays, so the reference kernels, the plan builder and the .tflite importer use one copy.
"""
from __future__ import annotations

import math

import numpy as np

from edgepack.ops.base import Layer, QParams

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD widens both inputs by 2^20 before rescaling them


def rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    ab = a.astype(np.int64) * b.astype(np.int64)
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    v = ab + nudge
    high = np.where(v >= 0, v >> 31, -((-v) >> 31))  # C integer division truncates toward zero
    saturate = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(saturate, INT32_MAX, high)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: round half away from zero."""
    exponent = exponent.astype(np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize(acc: np.ndarray, layer: Layer, channel_axis: int = 1, single_rounding: bool = False) -> np.ndarray:
    """int32 accumulators (N, C, ...) -> int8 outputs with the layer's per-channel multiplier/shift.

    Computed in place on one int64 array (the reference spends most of its time here). Two
    identities keep it short, both checked against the gemmlowp transcriptions in
    tests/e2e/test_reference.py: for b > INT32_MIN, SaturatingRoundingDoublingHighMul(a, b) ==
    floor((a*b + 2^30) / 2^31); RoundingDivideByPOT(x, e) == floor((x + (2^e-1 >> 1) + [x >= 0 and
    e > 0]) / 2^e). Any multiplier equal to INT32_MIN falls back to the literal functions.
    """
    if acc.min(initial=0) < INT32_MIN or acc.max(initial=0) > INT32_MAX:
        raise OverflowError(f"{layer.name}: accumulator leaves int32")
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    mult = layer.arrays["multiplier"].astype(np.int64).reshape(shape)
    shift = layer.arrays["shift"].astype(np.int64).reshape(shape)
    v = acc.astype(np.int64)
    if single_rounding:  # TFLite's FULLY_CONNECTED: one rounding, |acc * M0| < 2^62 fits int64
        v *= mult
        v += np.int64(1) << (30 - shift)
        v >>= 31 - shift
    else:
        v = _round_twice(v, mult, shift)
    v += layer.output_q.zero_point
    np.clip(v, layer.act_min, layer.act_max, out=v)
    return v.astype(np.int8)


def _round_twice(v: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul then RoundingDivideByPOT, in place where it can."""
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    if left.any():
        v <<= left
        np.clip(v, INT32_MIN, INT32_MAX, out=v)
    if (mult == INT32_MIN).any():
        return rounding_divide_by_pot(rounding_doubling_high_mul(v, mult), right)
    v *= mult
    v += 1 << 30
    v >>= 31
    if right.any():
        nonneg = v >= 0
        v += ((np.int64(1) << right) - 1) >> 1
        v += nonneg & (right > 0)
        v >>= right
    return v


def rescale(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0) on int64-held int32 values."""
    return rounding_divide_by_pot(rounding_doubling_high_mul(x, np.int64(multiplier)), np.int64(-shift))


def mean_requantization(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """(multiplier, shift) of TFLite's int8 MEAN over ``count`` values (LiteRT 2.3, reference/reduce.h
    QuantizedMeanOrSum): QuantizeMultiplier(in / out) of the float32 scales widened to double, then 1/count
    folded in: the multiplier times 2^s integer-divided by count, s = floor(log2(count)) capped at 32 and at
    31 + shift, and the shift lowered by s. The mean is then the usual requantize(sum(x - in_zp))."""
    m, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    s = min(count.bit_length() - 1, 32, 31 + shift)
    return (m << s) // count, shift - s


def quantize_multiplier(real: float) -> tuple[int, int]:
    """real = M0 * 2^shift with M0 a Q31 integer in [2^30, 2^31) (TFLite's QuantizeMultiplier)."""
    if real <= 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)  # real = mantissa * 2^shift, mantissa in [0.5, 1)
    q = math.floor(mantissa * (1 << 31) + 0.5)  # std::round, half away from zero (Python's round() is half-even)
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:  # too small to matter: the output is always the zero point
        return 0, 0
    return q, shift


def add_multipliers(a: QParams, b: QParams, out: QParams) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) int32 (3,) for [input a, input b, output] as TFLite's int8 ADD prepares them
    (kernels/add.cc): both inputs rescaled to twice the larger input scale after a 2^20 left shift,
    then to the output scale. Scales are float32 in a .tflite, so they are rounded to float32 first."""
    sa, sb, so = (float(np.float32(q.scale)) for q in (a, b, out))
    twice_max = 2.0 * max(sa, sb)
    reals = (sa / twice_max, sb / twice_max, twice_max / ((1 << ADD_LEFT_SHIFT) * so))
    pairs = [quantize_multiplier(r) for r in reals]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)
