"""``pad``: a (C, H, W) int8 map framed by rows and columns of one int8 constant, TFLite's int8 PAD / PADV2
(reference_ops::Pad). ``Layer.pads`` (top, left, bottom, right) says how many; ``PadParams.value`` is the
constant as int8 in the output's quantization. TFLite's PAD fills with the output zero point (a real 0.0),
PADV2 with its constant operand, whose scale and zero point must be the output's; both require the input's
quantization to equal the output's, so the op is a copy and every executor is bit-exact by construction.
Only the spatial axes are padded (TFLite could pad batch and channels too; the plan refuses them by name).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.base import MAX_TENSOR_ELEMENTS, Layer, Params
from edgepack.ops.checks import map_problems


@dataclass(frozen=True)
class PadParams(Params):
    value: int  # the int8 written into every padded position (TFLite's PAD: the output zero point)


def padded_shape(shape: tuple[int, int, int], pads: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """(C, H + top + bottom, W + left + right)."""
    (c, h, w), (top, left, bottom, right) = shape, pads
    return c, h + top + bottom, w + left + right


def pad_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    """The input copied into the middle of a map filled with the constant."""
    top, left, bottom, right = layer.pads
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=layer.params.value).astype(np.int8)


def _geometry_problems(layer: Layer) -> list[str]:
    pads = tuple(layer.pads)
    if len(pads) != 4 or any(type(p) is not int or p < 0 for p in pads):
        return [f"{layer.name}: pads {list(pads)} are not 4 non-negative integers (top, left, bottom, right)"]
    if layer.stride not in (1, (1, 1)):
        return [f"{layer.name}: a pad has stride 1, got {layer.stride!r}"]
    expected = padded_shape(tuple(layer.input_shape), pads)
    if int(np.prod(expected)) > MAX_TENSOR_ELEMENTS:
        return [f"{layer.name}: pads {list(pads)} make a map of more than {MAX_TENSOR_ELEMENTS:,} values"]
    if tuple(layer.output_shape) != expected:
        return [f"{layer.name}: output {list(layer.output_shape)} does not follow from input {list(layer.input_shape)} "
                f"and pads {list(pads)} (expected {list(expected)})"]
    return []


def pad_problems(plan, i: int) -> list[str]:
    """A (C, H, W) map padded on H and W by a constant inside int8, one quantization, no clamp, no arrays."""
    layer = plan.layers[i]
    found = map_problems(layer)
    if found:
        return found
    if not isinstance(layer.params, PadParams):
        return [f"{layer.name}: a pad needs its constant (PadParams)"]
    value = layer.params.value
    if type(value) is not int or not -128 <= value <= 127:
        return [f"{layer.name}: pad value {value!r} is not an int8 integer"]
    if layer.arrays:
        return [f"{layer.name}: a pad has no arrays, got {', '.join(sorted(layer.arrays))}"]
    if layer.input_q != layer.output_q:
        return [f"{layer.name}: a pad must keep its input's scale and zero point (TFLite's int8 PAD / PADV2 require "
                "it): quantize its input and output together"]
    if (layer.act_min, layer.act_max) != (-128, 127) or layer.activation != "none":
        return [f"{layer.name}: a pad takes no activation (TFLite's PAD fuses none)"]
    return _geometry_problems(layer)


PAD = register(Op("pad", pad_reference, pad_problems, params=PadParams, summary="constant spatial padding"))
