"""``resize_nearest``: TFLite's int8 RESIZE_NEAREST_NEIGHBOR (reference_ops::ResizeNearestNeighbor), a copy of
input values to an output of any (H', W') (``Layer.output_shape``; x2 is PyTorch's ``nn.Upsample(scale_factor=2)``
and Keras' ``UpSampling2D``). Output row y reads input row GetNearestNeighbor(y, H, H', align_corners,
half_pixel_centers), and the same across; TFLite computes that index in float32 (source_indices transcribes
it, so the executors take the index maps from it rather than recomputing them their own way). A copy needs no
rescaling: input and output quantization are equal and there is no clamp (TFLite's op has no fused
activation; LiteRT's int8 kernel copies the bytes whatever the output's quantization says)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.base import MAX_TENSOR_ELEMENTS, Layer, Params
from edgepack.ops.checks import map_problems


@dataclass(frozen=True)
class ResizeParams(Params):
    align_corners: bool = False  # ResizeNearestNeighborOptions.align_corners
    half_pixel_centers: bool = False  # ResizeNearestNeighborOptions.half_pixel_centers (Keras' UpSampling2D sets it)


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """TfLiteRound (std::round) of non-negative float32 values."""
    return np.floor(v.astype(np.float64) + 0.5)


def source_indices(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """int32 (out_size,): the input index each output index copies, as TFLite's GetNearestNeighbor computes
    it in float32: scale = in / out ((in - 1) / (out - 1) with align_corners), (y + offset) * scale floored
    (rounded half away from zero with align_corners), at most in - 1, at least 0 with half_pixel_centers."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    v = (np.arange(out_size, dtype=f32) + offset) * scale  # float32 throughout, as the C++ does
    index = _round_half_away(v) if align_corners else np.floor(v)
    index = np.minimum(index.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        index = np.maximum(index, 0)
    return index.astype(np.int32)


def resize_maps(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """The layer's (rows, cols) index maps: output (y, x) copies input (rows[y], cols[x])."""
    (_, h, w), (_, oh, ow), p = layer.input_shape, layer.output_shape, layer.params
    return (source_indices(h, oh, p.align_corners, p.half_pixel_centers),
            source_indices(w, ow, p.align_corners, p.half_pixel_centers))


def integer_scale(layer: Layer) -> tuple[int, int] | None:
    """(sh, sw) when the output is an integer multiple of the input on each axis (x2: (2, 2)), else None."""
    (_, h, w), (_, oh, ow) = layer.input_shape, layer.output_shape
    return (oh // h, ow // w) if oh % h == 0 and ow % w == 0 else None


def resize_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Each output value a copy of its nearest input value, by the index maps."""
    rows, cols = resize_maps(layer)
    return np.ascontiguousarray(x[:, :, rows][:, :, :, cols]).astype(np.int8)


def resize_problems(plan, i: int) -> list[str]:
    layer = plan.layers[i]
    found = map_problems(layer)
    if found:
        return found
    p = layer.params
    if not isinstance(p, ResizeParams) or type(p.align_corners) is not bool or type(p.half_pixel_centers) is not bool:
        return [f"{layer.name}: a resize_nearest needs align_corners and half_pixel_centers as true/false"]
    if p.align_corners and p.half_pixel_centers:
        return [f"{layer.name}: align_corners and half_pixel_centers are both set, which TFLite refuses: set one"]
    if layer.arrays:
        return [f"{layer.name}: a resize_nearest has no arrays, got {', '.join(sorted(layer.arrays))}"]
    if layer.input_q != layer.output_q or (layer.act_min, layer.act_max) != (-128, 127):
        return [f"{layer.name}: a resize_nearest must keep its input's scale and zero point with no clamp "
                "(TFLite's int8 RESIZE_NEAREST_NEIGHBOR copies values)"]
    (c, _, _), (oc, oh, ow) = layer.input_shape, layer.output_shape
    if oc != c or min(oh, ow) < 1:
        return [f"{layer.name}: output {list(layer.output_shape)} must keep the {c} channels of input "
                f"{list(layer.input_shape)} with a height and width of at least 1"]
    if math.prod(layer.output_shape) > MAX_TENSOR_ELEMENTS:
        return [f"{layer.name}: output {list(layer.output_shape)} has more than {MAX_TENSOR_ELEMENTS:,} values"]
    return []


RESIZE = register(Op("resize_nearest", resize_reference, resize_problems, params=ResizeParams,
                     summary="nearest-neighbour resize (x2 upsample)"))
