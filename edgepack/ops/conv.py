"""The convolutions: ``conv`` (full, groups=1), ``pointwise`` (1x1, no pads) and ``depthwise`` (one k x k
filter per channel). Weights (O, I, K, K) int8, per-channel requantization (README "Arithmetic"); the
input is padded with its zero point by the layer's (top, left, bottom, right) pads.

Reference kernels: float GEMMs on integer values are exact here (|x - zp| <= 255, |w| <= 127: every
product is < 2^15; float32 holds every partial sum while K * 255 * 127 < 2^24, float64 any K here), and
the accumulator is checked to fit int32 before requantization.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgepack.ops import Op, register
from edgepack.ops.arith import requantize
from edgepack.ops.base import MAX_TENSOR_ELEMENTS, Layer
from edgepack.ops.checks import map_problems, requantization_problems, weight_problems


def _gemm_dtype(terms: int):
    """float32 where every partial sum is an integer below 2^24 (exact in float32, and sgemm is twice as
    fast), float64 otherwise."""
    return np.float32 if terms * 255 * 127 < 2**24 else np.float64


def centered(x: np.ndarray, layer: Layer, dtype=np.float64) -> np.ndarray:
    """The int8 input minus its zero point, as ``dtype``."""
    return x.astype(dtype) - dtype(layer.input_q.zero_point)


def _pad(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """Zero rows/columns (top, left, bottom, right) around the centred input, i.e. the zero point."""
    top, left, bottom, right = pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))) if any(pads) else x


def conv_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Full or pointwise conv, groups=1: im2col + GEMM (exact in float64)."""
    o, c, k, _ = layer.weight.shape
    dtype = _gemm_dtype(c * k * k)
    w = layer.weight.astype(dtype)
    s = layer.stride
    xc = _pad(centered(x, layer, dtype), layer.pads)
    _, oh, ow = layer.output_shape
    if k == 1:
        cols = xc[:, :, ::s, ::s][:, :, :oh, :ow]
        acc = np.einsum("nchw,oc->nohw", cols, w[:, :, 0, 0], optimize=True)
    else:
        win = sliding_window_view(xc, (k, k), axis=(2, 3))[:, :, ::s, ::s][:, :, :oh, :ow]  # n c oh ow kh kw
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(x.shape[0], oh, ow, c * k * k)
        acc = (cols @ w.reshape(o, -1).T).transpose(0, 3, 1, 2)
    return requantize(acc.astype(np.int64) + layer.arrays["bias"].reshape(1, -1, 1, 1), layer)  # exact integers


def depthwise_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
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


def _full_weight(layer: Layer) -> tuple[str, bool]:
    """(O, C, K, K) for a conv of C input channels."""
    w, c = layer.weight, layer.input_shape[0]
    return f"({layer.output_shape[0]}, {c}, K, K)", w.ndim == 4 and w.shape[1] == c


def _depthwise_weight(layer: Layer) -> tuple[str, bool]:
    """(C, 1, K, K): one filter per channel, C in = C out."""
    w, c = layer.weight, layer.input_shape[0]
    return f"({c}, 1, K, K)", w.ndim == 4 and w.shape[1] == 1 and layer.output_shape[0] == c


def _geometry_problems(layer: Layer, one_by_one: bool = False) -> list[str]:
    """A conv whose output size does not follow from its input would make executors read or write
    outside their buffers."""
    pads, w = layer.pads, layer.weight
    if len(pads) != 4 or any(type(p) is not int or p < 0 for p in pads):
        return [f"{layer.name}: pads {list(pads)} are not 4 non-negative integers (top, left, bottom, right)"]
    if w.ndim != 4 or w.shape[2] != w.shape[3] or len(layer.input_shape) != 3 or len(layer.output_shape) != 3:
        return [f"{layer.name}: a conv needs a square (O, I, K, K) weight and (C, H, W) shapes"]
    c, h, wd = layer.input_shape
    if c * (h + pads[0] + pads[2]) * (wd + pads[1] + pads[3]) > MAX_TENSOR_ELEMENTS:
        return [f"{layer.name}: pads {list(pads)} make a padded input of more than {MAX_TENSOR_ELEMENTS:,} values"]
    if type(layer.stride) is not int or layer.stride < 1:
        return [f"{layer.name}: stride {layer.stride} is not a positive integer"]
    if one_by_one and (w.shape[-1] != 1 or any(pads)):
        return [f"{layer.name}: a pointwise conv must be 1x1 without pads"]
    if tuple(layer.output_shape[1:]) != layer.conv_output_hw():
        return [f"{layer.name}: output {list(layer.output_shape[1:])} does not follow from input "
                f"{list(layer.input_shape[1:])}, pads {list(pads)}, kernel {w.shape[-1]} and stride {layer.stride} "
                f"(expected {list(layer.conv_output_hw())})"]
    return []


def _problems(fit, one_by_one: bool = False):
    def problems(plan, i: int) -> list[str]:
        layer = plan.layers[i]
        return (map_problems(layer) or weight_problems(layer, fit)
                or requantization_problems(layer) + _geometry_problems(layer, one_by_one))
    return problems


CONV = register(Op("conv", conv_reference, _problems(_full_weight), weighted=True, summary="k x k convolution"))
POINTWISE = register(Op("pointwise", conv_reference, _problems(_full_weight, one_by_one=True), weighted=True,
                        summary="1x1 convolution"))
DEPTHWISE = register(Op("depthwise", depthwise_reference, _problems(_depthwise_weight), weighted=True,
                        summary="depthwise k x k convolution"))
