"""``maxpool``: the largest int8 value in each window (KH x KW, ``MaxPoolParams.window``) patch, per channel, TFLite's int8 MAX_POOL_2D
(reference_integer_ops::MaxPool). ``Layer.stride`` and ``Layer.pads`` (top, left, bottom, right) place the
windows; the padded positions take no part in the max (a window is clipped to the input), so every window
must hold at least one real value. The max is then clamped to [act_min, act_max]. A max needs no rescaling:
input and output quantization are equal (TFLite requires it too)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgepack.ops import Op, register
from edgepack.ops.base import MAX_TENSOR_ELEMENTS, Layer, Params, pair, pair_or_int, pair_problems, window_output_hw
from edgepack.ops.checks import map_problems

PADDED = -129  # below every int8 value: a padded position never wins a max


@dataclass(frozen=True)
class MaxPoolParams(Params):
    window: int | tuple[int, int]  # square side, or (KH, KW) (Layer.stride and Layer.pads place it)

    def __post_init__(self):
        object.__setattr__(self, "window", pair_or_int(self.window))  # JSON gives [KH, KW] as a list

    @property
    def window_hw(self) -> tuple[int, int]:
        return pair(self.window)


def pooled_hw(layer: Layer) -> tuple[int, int]:
    """(H, W) the layer's window, stride and pads make of its input: floor((H + top + bottom - KH) / SH) + 1."""
    return window_output_hw(layer, layer.params.window_hw)


def maxpool_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Max over each window's in-bounds values (pads hold PADDED, which loses to any int8), clamped."""
    (kh, kw), (sh, sw), (top, left, bottom, right) = layer.params.window_hw, layer.strides, layer.pads
    _, oh, ow = layer.output_shape
    padded = np.pad(x.astype(np.int16), ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=PADDED)
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    return np.clip(windows.max(axis=(-2, -1)), layer.act_min, layer.act_max).astype(np.int8)


def _geometry_problems(layer: Layer) -> list[str]:
    """Window, stride and pads that place every window over at least one input value, and the output size
    they make (an executor sizes its loops and buffers from it)."""
    window, pads, stride = layer.params.window, layer.pads, layer.stride
    bad = pair_problems("window", window) or pair_problems("stride", stride)
    if bad:
        return [f"{layer.name}: {bad[0]}"]
    if len(pads) != 4 or any(type(p) is not int or p < 0 for p in pads):
        return [f"{layer.name}: pads {list(pads)} are not 4 non-negative integers (top, left, bottom, right)"]
    c, h, w = layer.input_shape
    top, left, bottom, right = pads
    if c * (h + top + bottom) * (w + left + right) > MAX_TENSOR_ELEMENTS:
        return [f"{layer.name}: pads {list(pads)} make a padded input of more than {MAX_TENSOR_ELEMENTS:,} values"]
    oh, ow = pooled_hw(layer)
    if oh < 1 or ow < 1 or tuple(layer.output_shape) != (c, oh, ow):
        return [f"{layer.name}: output {list(layer.output_shape)} does not follow from input {list(layer.input_shape)}, "
                f"window {window}, stride {stride} and pads {list(pads)} (expected {[c, oh, ow]})"]
    (kh, kw), (sh, sw) = layer.params.window_hw, layer.strides
    if kh <= top or kw <= left or (oh - 1) * sh - top >= h or (ow - 1) * sw - left >= w:
        return [f"{layer.name}: pads {list(pads)} leave a window of {window} with no input value: "
                "use pads smaller than the window"]
    return []


def maxpool_problems(plan, i: int) -> list[str]:
    layer = plan.layers[i]
    found = map_problems(layer)
    if found:
        return found
    if layer.params is None:
        return [f"{layer.name}: a maxpool needs its window (MaxPoolParams)"]
    if layer.arrays:
        return [f"{layer.name}: a maxpool has no arrays, got {', '.join(sorted(layer.arrays))}"]
    if layer.input_q != layer.output_q:
        return [f"{layer.name}: a maxpool must keep its input's scale and zero point (TFLite's MAX_POOL_2D does not "
                "rescale)"]
    return _geometry_problems(layer)


MAXPOOL = register(Op("maxpool", maxpool_reference, maxpool_problems, params=MaxPoolParams,
                      summary="kh x kw max pool"))
