"""numpy integer reference executor of the int8 plan: the golden model.

Arithmetic contract (TFLite / gemmlowp): acc = sum((x - in_zp) * w) + bias in int32;
out = clamp(SaturatingRoundingDoublingHighMul(acc << max(shift,0), M0) rounding->> max(-shift,0)
+ out_zp, act_min, act_max); an fc with rounding "single" (TFLite's FULLY_CONNECTED) rounds once:
(acc * M0 + 2^(30 - shift)) >> (31 - shift). A "mean" pool is requantize(sum(x - in_zp)) with its own
multiplier (TFLite's int8 MEAN). Every other integer executor must match this bit for bit.

Convolutions are computed as float GEMMs on integer values: |x - zp| <= 255, |w| <= 127, so each
product is < 2^15; float32 holds every partial sum exactly while K * 255 * 127 < 2^24, float64 up to
2^53 (any K here); the accumulator is then checked to fit int32 before requantization.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgepack.plan.plan import ADD_LEFT_SHIFT, PLAN_INPUT, Layer, Plan

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


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


def requantize(acc: np.ndarray, layer: Layer, channel_axis: int = 1) -> np.ndarray:
    """int32 accumulators (N, C, ...) -> int8 outputs with the layer's per-channel multiplier/shift.

    Computed in place on one int64 array (the reference spends most of its time here). Two
    identities keep it short, both checked against the gemmlowp transcriptions in
    tests/test_reference.py: for b > INT32_MIN, SaturatingRoundingDoublingHighMul(a, b) ==
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
    if layer.rounding == "single":  # TFLite's FULLY_CONNECTED: one rounding, |acc * M0| < 2^62 fits int64
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


def _gemm_dtype(terms: int):
    """float32 where every partial sum is an integer below 2^24 (exact in float32, and sgemm is twice as
    fast), float64 otherwise."""
    return np.float32 if terms * 255 * 127 < 2**24 else np.float64


def _centered(x: np.ndarray, layer: Layer, dtype=np.float64) -> np.ndarray:
    return x.astype(dtype) - dtype(layer.input_q.zero_point)


def _pad(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Zero rows/columns (top, left, bottom, right) around the centred input, i.e. the zero point."""
    top, left, bottom, right = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))) if any(pads) else x


def conv(x: np.ndarray, layer: Layer) -> np.ndarray:
    """Full or pointwise conv, groups=1: im2col + GEMM (exact in float64)."""
    o, c, k, _ = layer.weight.shape
    dtype = _gemm_dtype(c * k * k)
    w = layer.weight.astype(dtype)
    s = layer.stride
    xc = _pad(_centered(x, layer, dtype), layer.pads)
    _, oh, ow = layer.output_shape
    if k == 1:
        cols = xc[:, :, ::s, ::s][:, :, :oh, :ow]
        acc = np.einsum("nchw,oc->nohw", cols, w[:, :, 0, 0], optimize=True)
    else:
        win = sliding_window_view(xc, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :oh, :ow]  # n c oh ow kh kw
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(x.shape[0], oh, ow, c * k * k)
        acc = (cols @ w.reshape(o, -1).T).transpose(0, 3, 1, 2)
    return requantize(acc.astype(np.int64) + layer.arrays["bias"].reshape(1, -1, 1, 1), layer)  # exact integers


def depthwise(x: np.ndarray, layer: Layer) -> np.ndarray:
    """k*k taps per channel, in int32 (|sum| <= 9 * 255 * 127, far inside int32)."""
    w = layer.weight.astype(np.int32)[:, 0]  # (C, k, k)
    k, s = w.shape[-1], layer.stride
    xc = _pad(x.astype(np.int32) - layer.input_q.zero_point, layer.pads)
    _, oh, ow = layer.output_shape
    acc = np.zeros((x.shape[0], w.shape[0], oh, ow), np.int32)
    product = np.empty_like(acc)
    for i in range(k):
        for j in range(k):
            np.multiply(xc[:, :, i:i + s * oh:s, j:j + s * ow:s], w[None, :, i, j, None, None], out=product)
            acc += product
    acc += layer.arrays["bias"].astype(np.int32).reshape(1, -1, 1, 1)
    return requantize(acc, layer)


def avgpool(x: np.ndarray, layer: Layer) -> np.ndarray:
    """Global average in the shared input/output scale: round half away from zero (a "raw_average" pool
    rounds the raw values' mean, zero point included, as TFLite's AVERAGE_POOL_2D). A "mean" pool
    requantizes the sum instead, by its multiplier with 1/count folded in (TFLite's int8 MEAN)."""
    n, c = x.shape[:2]
    count = int(np.prod(x.shape[2:]))
    zp_in, zp_out = layer.pool_zero_points()
    total = (x.astype(np.int64) - zp_in).reshape(n, c, -1).sum(-1)
    if layer.pool == "mean":
        return requantize(total, layer).reshape((n,) + tuple(layer.output_shape))
    mean = np.where(total >= 0, (total + count // 2) // count, -((-total + count // 2) // count))
    out = np.clip(mean + zp_out, -128, 127).astype(np.int8)
    return out.reshape((n,) + tuple(layer.output_shape))


def fc(x: np.ndarray, layer: Layer) -> np.ndarray:
    acc = _centered(x.reshape(x.shape[0], -1), layer) @ layer.weight.astype(np.float64).T
    return requantize(np.rint(acc).astype(np.int64) + layer.arrays["bias"][None], layer)


def _rescale(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0) on int64-held int32 values."""
    return rounding_divide_by_pot(rounding_doubling_high_mul(x, np.int64(multiplier)), np.int64(-shift))


def add(a: np.ndarray, b: np.ndarray, layer: Layer) -> np.ndarray:
    """TFLite's int8 ADD (reference_integer_ops::Add): each input, minus its zero point and shifted left
    by 20 bits, is rescaled to twice the larger input scale; their sum is rescaled to the output."""
    (ma, mb, mo), (sa, sb, so) = layer.arrays["multiplier"].tolist(), layer.arrays["shift"].tolist()
    wide_a = (a.astype(np.int64) - layer.input_q.zero_point) << ADD_LEFT_SHIFT
    wide_b = (b.astype(np.int64) - layer.input2_q.zero_point) << ADD_LEFT_SHIFT
    raw = _rescale(wide_a, ma, sa) + _rescale(wide_b, mb, sb)  # |each| <= 2^27: the sum stays in int32
    out = _rescale(raw, mo, so) + layer.output_q.zero_point
    return np.clip(out, layer.act_min, layer.act_max).astype(np.int8)


KERNELS = {"conv": conv, "pointwise": conv, "depthwise": depthwise, "avgpool": avgpool, "fc": fc, "add": add}


def run(plan: Plan, x: np.ndarray, collect: bool = False):
    """int8 input (N, C, H, W) -> int8 logits (N, classes); with ``collect`` also every layer's output."""
    if x.dtype != np.int8 or tuple(x.shape[1:]) != tuple(plan.input_shape):
        raise ValueError(f"reference input must be int8 (N, {', '.join(map(str, plan.input_shape))}), got {x.dtype} {x.shape}")
    outputs, alive, last_reader = [], {PLAN_INPUT: x}, plan.last_readers()
    for i, layer in enumerate(plan.layers):
        sources = plan.inputs_of(i)
        x = KERNELS[layer.kind](*(alive[j] for j in sources), layer)
        for j in set(sources):  # a tensor is dropped after its last reader (a residual input lives until its add)
            if last_reader[j] == i:
                del alive[j]
        alive[i] = x
        if collect:
            outputs.append(x)
    return (x, outputs) if collect else x


def run_batched(plan: Plan, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """``run`` over batches, one batch per core at a time (numpy releases the GIL in its loops and BLAS
    calls; each batch uses one BLAS thread). The arithmetic is exact, so the threads change nothing."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    starts = range(0, len(x), batch)
    workers = min(len(os.sched_getaffinity(0)), len(starts))
    if workers <= 1:
        return np.concatenate([run(plan, x[i:i + batch]) for i in starts])
    with threadpool_limits(1), ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(lambda i: run(plan, x[i:i + batch]), starts)))
