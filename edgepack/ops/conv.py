"""The convolutions: ``conv`` (full, groups=1), ``pointwise`` (1x1, no pads) and ``depthwise`` (one kh x kw
filter per channel). Weights (O, I, KH, KW) int8 (a 10x4 keyword-spotting kernel, a 1x3 conv over a 1-D
signal), strides (SH, SW) (``Layer.strides``), per-channel requantization (README "Arithmetic"); the
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
from edgepack.ops.base import MAX_TENSOR_ELEMENTS, Layer, pair_problems
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
    o, c, kh, kw = layer.weight.shape
    dtype = _gemm_dtype(c * kh * kw)
    w = layer.weight.astype(dtype)
    sh, sw = layer.strides
    xc = _pad(centered(x, layer, dtype), layer.pads)
    _, oh, ow = layer.output_shape
    if kh == kw == 1:
        cols = xc[:, :, ::sh, ::sw][:, :, :oh, :ow]
        acc = np.einsum("nchw,oc->nohw", cols, w[:, :, 0, 0], optimize=True)
    else:
        win = sliding_window_view(xc, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]  # n c oh ow kh kw
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(x.shape[0], oh, ow, c * kh * kw)
        acc = (cols @ w.reshape(o, -1).T).transpose(0, 3, 1, 2)
    return requantize(acc.astype(np.int64) + layer.arrays["bias"].reshape(1, -1, 1, 1), layer)  # exact integers


def depthwise_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    """kh*kw taps per output channel, in int32 (|sum| <= kh * kw * 255 * 127; Plan.problems bounds the
    accumulator). With depth multiplier m (C*m outputs, TFLite's DEPTHWISE_CONV_2D) output o reads input o // m."""
    w = layer.weight.astype(np.int32)[:, 0]  # (C*m, kh, kw)
    (kh, kw), (sh, sw) = w.shape[-2:], layer.strides
    xc = _pad(x.astype(np.int32) - layer.input_q.zero_point, layer.pads)
    multiplier = depth_multiplier(layer)
    if multiplier > 1:
        xc = np.repeat(xc, multiplier, axis=1)
    _, oh, ow = layer.output_shape
    acc = np.zeros((x.shape[0], w.shape[0], oh, ow), np.int32)
    product = np.empty_like(acc)
    for i in range(kh):
        for j in range(kw):
            np.multiply(xc[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw], w[None, :, i, j, None, None], out=product)
            acc += product
    acc += layer.arrays["bias"].astype(np.int32).reshape(1, -1, 1, 1)
    return requantize(acc, layer)


def _full_weight(layer: Layer) -> tuple[str, bool]:
    """(O, C, KH, KW) for a conv of C input channels."""
    w, c = layer.weight, layer.input_shape[0]
    return f"({layer.output_shape[0]}, {c}, KH, KW)", w.ndim == 4 and w.shape[1] == c


def depth_multiplier(layer: Layer) -> int:
    """Output channels per input channel of a depthwise layer (TFLite's depth_multiplier; 1 for MobileNets)."""
    return max(layer.output_shape[0] // layer.input_shape[0], 1)


def _depthwise_weight(layer: Layer) -> tuple[str, bool]:
    """(C*m, 1, KH, KW): m filters per input channel (depth multiplier m, C*m outputs; m = 1: C in = C out)."""
    w, c, o = layer.weight, layer.input_shape[0], layer.output_shape[0]
    return f"({o}, 1, KH, KW) with {o} a multiple of {c}", w.ndim == 4 and w.shape[1] == 1 and o % c == 0


def _size(hw) -> str:
    """A kernel's size as users write it: 3, or 10x4."""
    return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


def _geometry_problems(layer: Layer, one_by_one: bool = False) -> list[str]:
    """A conv whose output size does not follow from its input would make executors read or write
    outside their buffers."""
    pads, w = layer.pads, layer.weight
    if len(pads) != 4 or any(type(p) is not int or p < 0 for p in pads):
        return [f"{layer.name}: pads {list(pads)} are not 4 non-negative integers (top, left, bottom, right)"]
    if w.ndim != 4 or len(layer.input_shape) != 3 or len(layer.output_shape) != 3:
        return [f"{layer.name}: a conv needs an (O, I, KH, KW) weight and (C, H, W) shapes"]
    c, h, wd = layer.input_shape
    if c * (h + pads[0] + pads[2]) * (wd + pads[1] + pads[3]) > MAX_TENSOR_ELEMENTS:
        return [f"{layer.name}: pads {list(pads)} make a padded input of more than {MAX_TENSOR_ELEMENTS:,} values"]
    bad_stride = pair_problems("stride", layer.stride)
    if bad_stride:
        return [f"{layer.name}: {bad_stride[0]}"]
    if one_by_one and (w.shape[-2:] != (1, 1) or any(pads)):
        return [f"{layer.name}: a pointwise conv must be 1x1 without pads"]
    if tuple(layer.output_shape[1:]) != layer.conv_output_hw():
        return [f"{layer.name}: output {list(layer.output_shape[1:])} does not follow from input "
                f"{list(layer.input_shape[1:])}, pads {list(pads)}, kernel {_size(w.shape[-2:])} and stride {layer.stride} "
                f"(expected {list(layer.conv_output_hw())})"]
    return []


def _problems(fit, one_by_one: bool = False):
    def problems(plan, i: int) -> list[str]:
        layer = plan.layers[i]
        return (map_problems(layer) or weight_problems(layer, fit)
                or requantization_problems(layer) + _geometry_problems(layer, one_by_one))
    return problems


CONV = register(Op("conv", conv_reference, _problems(_full_weight), weighted=True, summary="kh x kw convolution"))
POINTWISE = register(Op("pointwise", conv_reference, _problems(_full_weight, one_by_one=True), weighted=True,
                        summary="1x1 convolution"))
DEPTHWISE = register(Op("depthwise", depthwise_reference, _problems(_depthwise_weight), weighted=True,
                        summary="depthwise kh x kw convolution"))
