"""numpy integer reference executor of the int8 plan: the golden model.

Arithmetic contract (TFLite / gemmlowp): acc = sum((x - in_zp) * w) + bias in int32;
out = clamp(SaturatingRoundingDoublingHighMul(acc << max(shift,0), M0) rounding->> max(-shift,0)
+ out_zp, act_min, act_max); an fc with rounding "single" (TFLite's FULLY_CONNECTED) rounds once:
(acc * M0 + 2^(30 - shift)) >> (31 - shift). A "mean" pool is requantize(sum(x - in_zp)) with its own
multiplier (TFLite's int8 MEAN). Every other integer executor must match this bit for bit.

Each op's kernel is its module's ``reference`` in edgepack.ops (one registration per kind); ``run`` walks
the plan's graph and dispatches through the registry. The shared integer arithmetic is edgepack.ops.arith,
re-exported here (tests and tools import it from here).
"""
from __future__ import annotations

import numpy as np

from edgepack import ops
from edgepack.ops.arith import requantize, rounding_divide_by_pot, rounding_doubling_high_mul  # noqa: F401
from edgepack.plan.plan import PLAN_INPUT, Layer, Plan


def kernel(layer: Layer, *inputs: np.ndarray) -> np.ndarray:
    """One layer's output from its input tensors, by its op's reference kernel. A first input held in another
    shape of the same size (an fc's (F,) read by a conv as (C, H, W)) is the same tensor: it is read as the
    layer's input_shape (Plan.problems checks the sizes)."""
    shape = tuple(layer.input_shape)
    if inputs and inputs[0].ndim != len(shape) + 1 and inputs[0][:1].size == np.prod(shape):
        inputs = (inputs[0].reshape((len(inputs[0]), *shape)), *inputs[1:])
    return ops.get(layer.kind).reference(layer, *inputs)


def run(plan: Plan, x: np.ndarray, collect: bool = False):
    """int8 input (N, C, H, W) -> int8 outputs (N, *output_shape); for a plan with several outputs each one
    flattened and concatenated in plan order (N, sum of sizes), the buffer every executor hands over.
    With ``collect`` also every layer's output."""
    if x.dtype != np.int8 or tuple(x.shape[1:]) != tuple(plan.input_shape):
        raise ValueError(f"reference input must be int8 (N, {', '.join(map(str, plan.input_shape))}), got {x.dtype} {x.shape}")
    outputs, alive, last_reader = [], {PLAN_INPUT: x}, plan.last_readers()
    wanted, kept = set(plan.output_layers), {}
    for i, layer in enumerate(plan.layers):
        sources = plan.inputs_of(i)
        x = kernel(layer, *(alive[j] for j in sources))
        for j in set(sources):  # a tensor is dropped after its last reader (a residual input lives until its add)
            if last_reader[j] == i:
                del alive[j]
        alive[i] = x
        if i in wanted:
            kept[i] = x
        if collect:
            outputs.append(x)
    if plan.multi_output():
        x = np.concatenate([kept[i].reshape(len(kept[i]), -1) for i in plan.output_layers], axis=1)
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
