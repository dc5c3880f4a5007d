"""What the hand-scheduled int8 kernel sets (x86_vnni.py, aarch64_neon.py) share: which plans they
take, the per-channel constants, and the Relax pipeline that only lowers (the kernels are scheduled).

Both sets lower the same op kinds with methods of the same names (conv, pointwise, depthwise, avgpool,
add, fc), so one table, ``SCHEDULED_LOWERINGS`` (of the op registry, edgepack.ops), says per kind which
method emits it and where in a plan the kernels take it; a kind without an entry sends the plan to the
generic Relax route (``supported`` is False) and is refused by op name if built here directly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgepack.errors import UnsupportedModelError
from edgepack.ops import Lowerings
from edgepack.ops.avgpool import pool_zero_points
from edgepack.plan.plan import PLAN_INPUT, Layer, Plan

LANES = 16  # channels are padded to a multiple of 16 in both kernel sets


def _anywhere(layer: Layer, spatial: int) -> bool:
    return True


@dataclass(frozen=True)
class Scheduled:
    """One op kind in the kernel sets. ``emit(low, sources, layer, i)`` calls the kernel set's lowering ``low``
    on the layer's input tensors; ``fits(layer, spatial)`` says whether the kernels take the layer after a
    tensor of ``spatial`` pixels (0 before the first layer)."""
    emit: Callable
    first: bool = False  # may be the first layer: reads the NCHW model input
    last: bool = False  # may be the last layer: writes the logits
    fits: Callable[[Layer, int], bool] = _anywhere


def _conv(low, sources, layer: Layer, i: int):
    return low.conv(*sources, layer, i, i == 0)  # only the first layer reads the NCHW model input


def _pointwise(low, sources, layer: Layer, i: int):
    """A pointwise conv reading the model input is a conv (its NCHW -> NHWC copy is the conv's)."""
    return _conv(low, sources, layer, i) if i == 0 else low.pointwise(*sources, layer, i)


def _method(name: str) -> Callable:
    return lambda low, sources, layer, i: getattr(low, name)(*sources, layer, i)


def _global_pool(layer: Layer, spatial: int) -> bool:
    return tuple(layer.output_shape[1:]) in ((), (1, 1))


def _reads_a_pooled_feature(layer: Layer, spatial: int) -> bool:
    return spatial == 1


def _square_window(layer: Layer, spatial: int) -> bool:
    """The depthwise kernels index one k x k window at one stride, one output per input channel: a rectangular,
    unequally strided or depth-multiplied one sends the plan to the generic route (the convs' im2col takes
    any (kh, kw) and (sh, sw))."""
    kh, kw = layer.weight.shape[-2:]
    sh, sw = layer.strides
    return kh == kw and sh == sw and layer.output_shape[0] == layer.input_shape[0]  # and depth multiplier 1


SCHEDULED_LOWERINGS = Lowerings("TVM hand-scheduled (VNNI / NEON)")
SCHEDULED_LOWERINGS.register("conv")(Scheduled(_conv, first=True))
SCHEDULED_LOWERINGS.register("pointwise")(Scheduled(_pointwise, first=True))
SCHEDULED_LOWERINGS.register("depthwise")(Scheduled(_method("depthwise"), fits=_square_window))
SCHEDULED_LOWERINGS.register("avgpool")(Scheduled(_method("avgpool"), fits=_global_pool))
SCHEDULED_LOWERINGS.register("add")(Scheduled(_method("add")))
SCHEDULED_LOWERINGS.register("fc")(Scheduled(_method("fc"), last=True, fits=_reads_a_pooled_feature))


def chain_shaped(plan: Plan) -> bool:
    """conv ... global pool ... FC: every kind in the table, the first layer reads the NCHW input (a conv)
    and no other layer does (adds read NHWC tensors of earlier layers), pools are global, the FC reads a
    pooled 1x1 feature, and no multiplier is INT32_MIN (the saturating case both leave out)."""
    layers = plan.layers
    if any(layer.kind not in SCHEDULED_LOWERINGS for layer in layers):
        return False
    if not SCHEDULED_LOWERINGS[layers[0].kind].first or not SCHEDULED_LOWERINGS[layers[-1].kind].last:
        return False
    if any(PLAN_INPUT in plan.inputs_of(i) for i in range(1, len(layers))):
        return False
    if any((layer.arrays["multiplier"] == -(2**31)).any() for layer in layers if "multiplier" in layer.arrays):
        return False
    spatial = 0
    for layer in layers:
        if not SCHEDULED_LOWERINGS[layer.kind].fits(layer, spatial):
            return False
        spatial = int(np.prod(layer.output_shape[1:]))
    return True


def shape(var) -> list[int]:
    return [int(d) for d in var.ty.shape]


def pad16(n: int) -> int:
    return -(-n // LANES) * LANES


def zero_padded(w2d: np.ndarray, n_pad: int, k_pad: int) -> np.ndarray:
    """(N, K) int8 weights in an (n_pad, k_pad) array of zeros: padded channels and K positions add nothing."""
    full = np.zeros((n_pad, k_pad), np.int8)
    full[: w2d.shape[0], : w2d.shape[1]] = w2d
    return full


def folded_bias(layer: Layer, zero_point: int, n_pad: int) -> np.ndarray:
    """bias - zp * sum(w) per channel (inputs padded with zp), zero for the padded channels."""
    bias = np.zeros(n_pad, np.int32)
    folded = layer.folded_bias(zero_point)
    bias[: len(folded)] = folded
    return bias


def build(mod, tvm_tgt):
    """Compile a module of scheduled kernels. Loop partitioning splits the border pixels (padding tests
    marked likely) from the interior, whose taps then run branch-free."""
    import tvm

    with tvm.transform.PassContext(opt_level=3, config={"s_tir.LoopPartition": {"partition_const_loop": True}}):
        return tvm.compile(mod, target=tvm_tgt, relax_pipeline=relax_pipeline(tvm_tgt))


def relax_pipeline(tvm_tgt):
    """The kernels are scheduled already: no legalisation or fusion, only lowering to the VM."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod, _ctx):
        with tvm_tgt:
            passes = [relax.transform.LegalizeOps()] + cpu.dataflow_lower_passes(tvm_tgt) + cpu.finalize_passes(tvm_tgt)
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def plan_function(plan: Plan, low):
    """The Relax ``main(x: int8[1, C, H, W]) -> int8[1, classes]`` of a kernel set: one call per plan layer
    through ``low`` (a kernel set's lowering: the methods SCHEDULED_LOWERINGS calls and its BlockBuilder
    ``bb``), each reading its input tensors by layer index (a residual input stays bound until
    its add; Relax frees it after its last use), then the logits. Returns the IRModule, kernels not yet
    scheduled by the caller."""
    from tvm import relax, te

    SCHEDULED_LOWERINGS.check(plan)
    if not chain_shaped(plan):  # e.g. a rectangular depthwise: lower.py sends such a plan to the generic route
        raise UnsupportedModelError("the hand-scheduled TVM kernels take conv ... global pool ... fc plans of square "
                                    "depthwise windows (scheduled.chain_shaped): use int8_kernels = \"generic\"")
    bb = low.bb
    x = relax.Var("x", relax.TensorType((1,) + tuple(plan.input_shape), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            tensors = {PLAN_INPUT: x}
            for i, layer in enumerate(plan.layers):
                sources = [tensors[j] for j in plan.inputs_of(i)]
                tensors[i] = SCHEDULED_LOWERINGS[layer.kind].emit(low, sources, layer, i)
            classes = plan.layers[-1].output_shape[0]
            y = bb.emit_te(lambda t: te.compute((1, classes), lambda a, b: _int8(t[a, b]), name="out"),
                           tensors[len(plan.layers) - 1],
                           primfunc_name_hint="logits")
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _int8(value):
    """A logit as int8: the VNNI kernels write even the logits as uint8 value + 128 (x86_vnni._requantize)."""
    return value if value.dtype == "int8" else (value.astype("int32") - 128).astype("int8")


def global_average_pool(layer: Layer, hw: int, channels: int, offset: int = 0):
    """TE function of the global pool over (H*W, C) activations held as value + ``offset`` (128 for the
    uint8 VNNI layout): the mean in the shared scale, rounded half away from zero, as ops.avgpool's reference
    (zero points per ops.avgpool.pool_zero_points); a "mean" pool's sum requantized by its one multiplier and
    shift (TFLite's int8 MEAN)."""
    from tvm import te, tirx as tir

    dtype = "uint8" if offset else "int8"
    zp_in, zp_out = pool_zero_points(layer)
    zp_in += offset
    lo, hi = (layer.act_min, layer.act_max) if layer.params.pool == "mean" else (-128, 127)

    def fn(x):
        r = te.reduce_axis((0, hw), "r")
        total = te.compute((1, channels), lambda _, n: te.sum(x[r, n].astype("int32") - zp_in, axis=r), name="total")

        def mean(_, n):
            t = total[0, n]
            if layer.params.pool == "mean":
                m = _round_twice(t, int(layer.arrays["multiplier"][0]), int(layer.arrays["shift"][0]))
            else:
                m = tir.Select(t >= 0, tir.floordiv(t + hw // 2, hw), -tir.floordiv(-t + hw // 2, hw))
            return (tir.max(tir.min(m + zp_out, hi), lo) + offset).astype(dtype)
        return te.compute((1, channels), mean, name="out")

    return fn


def _round_twice(acc, multiplier: int, shift: int):
    """gemmlowp's requantization of an int32 TE value by one constant multiplier and shift, in int64:
    saturating left shift, floor((v * M + 2^30) / 2^31) (M > INT32_MIN), rounding divide by 2^right."""
    from tvm import tirx as tir

    i64 = "int64"
    v = acc.astype(i64)
    if shift > 0:
        v = tir.max(tir.min(v << tir.const(shift, i64), tir.const(2**31 - 1, i64)), tir.const(-(2**31), i64))
    high = (v * tir.const(multiplier, i64) + tir.const(1 << 30, i64)) >> tir.const(31, i64)
    right = max(-shift, 0)
    if right:
        mask = (1 << right) - 1
        up = (high & tir.const(mask, i64)) > tir.const(mask >> 1, i64) + (high < tir.const(0, i64)).astype(i64)
        high = (high >> tir.const(right, i64)) + up.astype(i64)
    return high.astype("int32")


def single_rounding_fc(layer: Layer, features: int, n_pad: int, offset: int = 0):
    """TE function of an fc that rounds once (rounding "single", TFLite's FULLY_CONNECTED): x (1, features)
    held as value + ``offset`` (128 for VNNI's uint8), w (n_pad, features) zero-padded int8, b the bias
    folded with zp + offset, m the multipliers, s the total shifts 31 - shift (single_rounding_tables).
    Plain int64 arithmetic: the fc is tiny next to the convolutions."""
    from tvm import te, tirx as tir

    dtype, i64 = ("uint8" if offset else "int8"), "int64"

    def fn(x, w, b, m, s):
        k = te.reduce_axis((0, features), "k")
        acc = te.compute((1, n_pad), lambda _, n: te.sum(x[0, k].astype("int32") * w[n, k].astype("int32"), axis=k),
                         name="acc")

        def out(_, n):
            total_shift = s[n].astype(i64)
            v = ((acc[0, n] + b[n]).astype(i64) * m[n].astype(i64) + (tir.const(1, i64) << (total_shift - 1))) >> total_shift
            v = v.astype("int32") + layer.output_q.zero_point
            return (tir.max(tir.min(v, layer.act_max), layer.act_min) + offset).astype(dtype)
        return te.compute((1, n_pad), out, name="out")

    return fn


def single_rounding_tables(layer: Layer, offset: int, features: int, n_pad: int) -> list[np.ndarray]:
    """The constants single_rounding_fc takes after x: weight, folded bias, multipliers, total shifts."""
    m, s = np.zeros(n_pad, np.int32), np.full(n_pad, 31, np.int32)
    o = len(layer.arrays["multiplier"])
    m[:o], s[:o] = layer.arrays["multiplier"], 31 - layer.arrays["shift"]
    return [zero_padded(layer.weight, n_pad, features), folded_bias(layer, layer.input_q.zero_point + offset, n_pad), m, s]
