"""``avgpool``: the global average pool, (C, H, W) -> C values in one scale. Its ``AvgPoolParams.pool`` says how it
rounds (README "Arithmetic"): "average" rounds the mean of x - zp half away from zero (the plan's own),
"raw_average" the mean of the raw values, zero point included (TFLite's int8 AVERAGE_POOL_2D), and "mean"
requantizes the sum by a multiplier with 1/count folded in (TFLite's int8 MEAN, see mean_requantization)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.arith import requantize
from edgepack.ops.base import Layer, Params
from edgepack.ops.checks import map_problems

POOLS = ("average", "mean", "raw_average")  # the plan's rounded average, TFLite's int8 MEAN or AVERAGE_POOL_2D


@dataclass(frozen=True)
class AvgPoolParams(Params):
    pool: str = "average"


def pool_zero_points(layer: Layer) -> tuple[int, int]:
    """What an average pool subtracts from its inputs and adds to its rounded mean: the zero points, or
    none for "raw_average" (TFLite's AVERAGE_POOL_2D averages the raw int8 values, in and out scale equal)."""
    return (0, 0) if layer.params.pool == "raw_average" else (layer.input_q.zero_point, layer.output_q.zero_point)


def avgpool_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    """Global average in the shared input/output scale: round half away from zero (a "raw_average" pool
    rounds the raw values' mean, zero point included, as TFLite's AVERAGE_POOL_2D). A "mean" pool
    requantizes the sum instead, by its multiplier with 1/count folded in (TFLite's int8 MEAN)."""
    n, c = x.shape[:2]
    count = int(np.prod(x.shape[2:]))
    zp_in, zp_out = pool_zero_points(layer)
    total = (x.astype(np.int64) - zp_in).reshape(n, c, -1).sum(-1)
    if layer.params.pool == "mean":
        return requantize(total, layer).reshape((n,) + tuple(layer.output_shape))
    mean = np.where(total >= 0, (total + count // 2) // count, -((-total + count // 2) // count))
    out = np.clip(mean + zp_out, -128, 127).astype(np.int8)
    return out.reshape((n,) + tuple(layer.output_shape))


def _mean_pool_problems(layer: Layer) -> list[str]:
    """A mean pool requantizes sum(x - zp) by one multiplier and shift (mean_requantization) repeated per
    channel; 1/count is folded into that multiplier, so it may be below 2^30."""
    a, channels = layer.arrays, layer.input_shape[0]
    if any(k not in a or a[k].dtype != np.int32 or a[k].shape != (channels,) for k in ("multiplier", "shift")):
        return [f"{layer.name}: a mean pool needs int32 multiplier and shift arrays of {channels} values"]
    m, sh = a["multiplier"].astype(np.int64), a["shift"].astype(np.int64)
    if np.ptp(m) or np.ptp(sh):
        return [f"{layer.name}: a mean pool's multiplier and shift must be the same for every channel"]
    if m[0] < 0 or m[0] >= 1 << 31 or not -31 <= sh[0] <= 30:
        return [f"{layer.name}: mean pool multiplier or shift outside [0, 2^31) and [-31, 30]"]
    return []


def avgpool_problems(plan, i: int) -> list[str]:
    layer = plan.layers[i]
    found = map_problems(layer, writes=False)
    if found:
        return found
    if math.prod(layer.output_shape) != layer.input_shape[0]:
        return [f"{layer.name}: a global pool of {layer.input_shape[0]} channels outputs "
                f"{layer.input_shape[0]} values, not {list(layer.output_shape)}"]
    if layer.params.pool not in POOLS:
        return [f"{layer.name}: pool {layer.params.pool!r} is not one of {', '.join(POOLS)}"]
    if layer.params.pool == "raw_average" and layer.input_q != layer.output_q:
        return [f"{layer.name}: a raw_average pool must keep its input's scale and zero point"]
    return _mean_pool_problems(layer) if layer.params.pool == "mean" else []


AVGPOOL = register(Op("avgpool", avgpool_reference, avgpool_problems, params=AvgPoolParams,
                      summary="global average pool"))
