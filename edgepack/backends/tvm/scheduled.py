"""What the hand-scheduled int8 kernel sets (x86_vnni.py, aarch64_neon.py) share: which layers they
take, the per-channel constants, and the Relax pipeline that only lowers (the kernels are scheduled).

Both sets lower the same op kinds with methods of the same names (conv, pointwise, depthwise, avgpool,
add, fc), so one table, ``SCHEDULED_LOWERINGS`` (of the op registry, edgepack.ops), says per kind which
method emits it and which layers of that kind the kernels take. The choice is per layer (``layer_routes``):
a layer the kernels do not take (a max pool, a lut, a mul, a concat, a rectangular depthwise...) runs its
generic Relax lowering (relax_int8.TVM_LOWERINGS) inside the same module, its input and output converted
between the two layouts where the routes meet."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgepack.backends.tvm.relax_int8 import TVM_LOWERINGS, emit_generic, joined_outputs
from edgepack.errors import UnsupportedModelError
from edgepack.ops import Lowerings
from edgepack.ops.avgpool import pool_zero_points
from edgepack.plan.plan import PLAN_INPUT, Layer, Plan

LANES = 16  # channels are padded to a multiple of 16 in both kernel sets


def _anywhere(layer: Layer, spatial: int) -> bool:
    return True


@dataclass(frozen=True)
class Scheduled:
    """One op kind in the kernel sets. ``emit(low, sources, layer, i, nchw)`` calls the kernel set's lowering
    ``low`` on the layer's input tensors (``nchw``: one generic-layout int8 (1, C, H, W) input, which only a
    ``first`` kind reads as it is); ``fits(layer, spatial)`` says whether the kernels take the layer reading a
    tensor of ``spatial`` pixels."""
    emit: Callable
    first: bool = False  # reads an NCHW int8 tensor (the model input, a generic layer's output) directly
    fits: Callable[[Layer, int], bool] = _anywhere


def _conv(low, sources, layer: Layer, i: int, nchw: bool):
    return low.conv(*sources, layer, i, nchw)


def _pointwise(low, sources, layer: Layer, i: int, nchw: bool):
    """A pointwise conv reading an NCHW tensor is a conv (its NCHW -> NHWC copy is the conv's)."""
    return _conv(low, sources, layer, i, nchw) if nchw else low.pointwise(*sources, layer, i)


def _method(name: str) -> Callable:
    return lambda low, sources, layer, i, nchw: getattr(low, name)(*sources, layer, i)


def _global_pool(layer: Layer, spatial: int) -> bool:
    return tuple(layer.output_shape[1:]) in ((), (1, 1))


def _reads_a_pooled_feature(layer: Layer, spatial: int) -> bool:
    return spatial == 1


def _square_window(layer: Layer, spatial: int) -> bool:
    """The depthwise kernels index one k x k window at one stride, one output per input channel: a rectangular,
    unequally strided or depth-multiplied one takes the generic route (the convs' im2col takes any (kh, kw)
    and (sh, sw))."""
    kh, kw = layer.weight.shape[-2:]
    sh, sw = layer.strides
    return kh == kw and sh == sw and layer.output_shape[0] == layer.input_shape[0]  # and depth multiplier 1


SCHEDULED_LOWERINGS = Lowerings("TVM hand-scheduled (VNNI / NEON)")
SCHEDULED_LOWERINGS.register("conv")(Scheduled(_conv, first=True))
SCHEDULED_LOWERINGS.register("pointwise")(Scheduled(_pointwise, first=True))
SCHEDULED_LOWERINGS.register("depthwise")(Scheduled(_method("depthwise"), fits=_square_window))
SCHEDULED_LOWERINGS.register("avgpool")(Scheduled(_method("avgpool"), fits=_global_pool))
SCHEDULED_LOWERINGS.register("add")(Scheduled(_method("add")))
SCHEDULED_LOWERINGS.register("fc")(Scheduled(_method("fc"), fits=_reads_a_pooled_feature))

SCHEDULED, GENERIC = "scheduled", "generic"  # a layer's route, and the layout its output is held in
WORTH_SCHEDULING = ("conv", "pointwise", "depthwise")  # a kernel set is chosen for a plan with one of these


def _source_shape(plan: Plan, j: int) -> tuple[int, ...]:
    return tuple(plan.input_shape if j == PLAN_INPUT else plan.layers[j].output_shape)


def layer_route(plan: Plan, i: int) -> str:
    """SCHEDULED when the kernel sets take layer ``i``: a kind of the table reading its inputs in the shape
    they were written (an fc: any pooled feature), a shape its ``fits`` accepts (spatial = pixels of the
    first input), no multiplier INT32_MIN (the saturating case both leave out);
    GENERIC otherwise (relax_int8's lowering of the kind, in the same module)."""
    layer = plan.layers[i]
    if layer.kind not in SCHEDULED_LOWERINGS:
        return GENERIC
    if layer.kind != "fc" and any(_source_shape(plan, j) != tuple(layer.input_shape) for j in plan.inputs_of(i)):
        return GENERIC  # reads a tensor as another shape (an fc's (F,) as a map): the kernels index the layout
    if "multiplier" in layer.arrays and (layer.arrays["multiplier"] == -(2**31)).any():
        return GENERIC
    spatial = int(np.prod(_source_shape(plan, plan.inputs_of(i)[0])[1:]))
    return SCHEDULED if SCHEDULED_LOWERINGS[layer.kind].fits(layer, spatial) else GENERIC


def layer_routes(plan: Plan) -> list[str]:
    return [layer_route(plan, i) for i in range(len(plan.layers))]


def worth_scheduling(plan: Plan) -> bool:
    """A kernel set pays where it takes a conv, pointwise or depthwise layer (FC-only plans stay generic)."""
    return any(route == SCHEDULED and layer.kind in WORTH_SCHEDULING
               for layer, route in zip(plan.layers, layer_routes(plan)))


def routes_summary(routes: list[str]) -> str:
    """The bench / info line: how many plan layers ran hand-scheduled kernels."""
    return f"{routes.count(SCHEDULED)} of {len(routes)} layers hand-scheduled"


def chain_shaped(plan: Plan) -> bool:
    """Every layer hand-scheduled (no generic layer in the module)."""
    return GENERIC not in layer_routes(plan)


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


def build(mod, tvm_tgt, fuse: bool = False):
    """Compile a module of scheduled kernels. Loop partitioning splits the border pixels (padding tests
    marked likely) from the interior, whose taps then run branch-free. ``fuse``: the module holds generic
    layers too, whose Relax ops are legalised and fused as TVM's default pipeline does."""
    import tvm

    with tvm.transform.PassContext(opt_level=3, config={"s_tir.LoopPartition": {"partition_const_loop": True}}):
        return tvm.compile(mod, target=tvm_tgt, relax_pipeline=relax_pipeline(tvm_tgt, fuse))


OPAQUE = 8  # relax's OpPatternKind kOpaque: FuseOps fuses nothing into or with such a kernel
CONVERSIONS = ("to_scheduled", "to_generic")  # prim func names of the layout conversions (fusable)


def relax_pipeline(tvm_tgt, fuse: bool = False):
    """The kernels are scheduled already: no legalisation or fusion, only lowering to the VM. With generic
    layers (``fuse``), the scheduled kernels are marked opaque first, then the default CPU pipeline's
    legalisation and fusion run (they fuse the generic layers' ops and the layout conversions only)."""
    import tvm
    from tvm import relax, tirx as tir
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    @tvm.transform.module_pass(opt_level=0)
    def _pipeline(mod, _ctx):
        with tvm_tgt:
            if not fuse:
                passes = [relax.transform.LegalizeOps()]
            else:
                for gv, func in list(mod.functions.items()):
                    if isinstance(func, tir.PrimFunc) and not gv.name_hint.startswith(CONVERSIONS):
                        mod[gv] = func.with_attr("op_pattern", OPAQUE)
                passes = cpu.legalize_passes(tvm_tgt)
            passes += cpu.dataflow_lower_passes(tvm_tgt) + cpu.finalize_passes(tvm_tgt)
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def _unravel(p, dims: tuple[int, ...]) -> list:
    """Flat pixel index -> one index per spatial dim (row-major)."""
    index = []
    for d in reversed(dims):
        index.insert(0, p % d)
        p = p // d
    return index


def to_scheduled(shape: tuple[int, ...], offset: int):
    """TE function: a generic-layout int8 (1, C, *spatial) tensor -> the kernel sets' (pixels, C padded to 16),
    held as value + ``offset`` (128: VNNI's uint8; 0: NEON's int8). Padded channels hold 0 (every kernel
    reading them multiplies them by zero weights, or writes channels nobody reads)."""
    from tvm import te, tirx as tir

    c, dims = shape[0], tuple(shape[1:])
    dtype = "uint8" if offset else "int8"

    def fn(x):
        def value(p, n):
            v = x[(0, tir.min(n, c - 1), *_unravel(p, dims))].astype("int32") + offset
            return tir.Select(n < c, v, tir.const(offset, "int32")).astype(dtype)
        return te.compute((int(np.prod(dims)), pad16(c)), value, name="out")

    return fn


def to_generic(shape: tuple[int, ...], offset: int):
    """TE function: the kernel sets' (pixels, padded C) tensor held as value + ``offset`` -> generic-layout
    int8 (1, C, *spatial), as relax_int8's lowerings read and write (the logits (1, classes) too)."""
    from tvm import te

    dims = tuple(shape[1:])

    def fn(x):
        def value(_, n, *where):
            flat = 0
            for w, d in zip(where, dims):
                flat = flat * d + w
            return (x[flat, n].astype("int32") - offset).astype("int8")
        return te.compute((1, *shape), value, name="out")

    return fn


class _Tensors:
    """Each tensor of the plan (layer index, PLAN_INPUT) in the layouts asked of it: SCHEDULED (the kernel
    sets' (pixels, padded channels)) or GENERIC ((1, C, H, W) int8, the model input's); the first held is
    the one its producer wrote, the other converted once, on first demand (a residual input stays bound
    until its add)."""

    def __init__(self, plan: Plan, low, x):
        self.plan, self.low, self.held = plan, low, {PLAN_INPUT: {GENERIC: x}}

    def put(self, j: int, route: str, var) -> None:
        self.held[j] = {route: var}

    def native(self, j: int) -> str:
        return next(iter(self.held[j]))

    def get(self, j: int, route: str):
        held = self.held[j]
        if route not in held:
            convert = to_generic if route == GENERIC else to_scheduled
            fn = convert(_source_shape(self.plan, j), getattr(self.low, "offset", 0))
            held[route] = self.low.bb.emit_te(fn, held[self.native(j)], primfunc_name_hint=f"to_{route}")
        return held[route]


def _emit_layer(plan: Plan, low, tensors: _Tensors, i: int, route: str) -> None:
    layer, inputs = plan.layers[i], plan.inputs_of(i)
    if route == GENERIC:
        tensors.put(i, GENERIC, emit_generic(low.bb, layer, [tensors.get(j, GENERIC) for j in inputs]))
        return
    entry = SCHEDULED_LOWERINGS[layer.kind]
    nchw = entry.first and tensors.native(inputs[0]) == GENERIC and len(_source_shape(plan, inputs[0])) == 3
    sources = [tensors.get(j, GENERIC if nchw else SCHEDULED) for j in inputs]
    tensors.put(i, SCHEDULED, entry.emit(low, sources, layer, i, nchw))


def _check(plan: Plan) -> None:
    """Refuse by op name, before any work, a layer whose kind neither route lowers."""
    either = Lowerings("TVM hand-scheduled (VNNI / NEON, with the generic lowering per layer)")
    for kind in (*SCHEDULED_LOWERINGS.kinds(), *TVM_LOWERINGS.kinds()):
        either.register(kind)(None)
    either.check(plan)


def plan_function(plan: Plan, low):
    """The Relax ``main(x: int8[1, C, H, W]) -> int8[1, classes]`` of a kernel set: one call per plan layer,
    through ``low`` (a kernel set's lowering: the methods SCHEDULED_LOWERINGS calls and its BlockBuilder
    ``bb``) where layer_routes says SCHEDULED, else through relax_int8's generic lowering of the kind,
    each reading its input tensors by layer index in the layout its route needs, then the output in the
    generic layout. Returns the IRModule, kernels not yet scheduled by the caller."""
    from tvm import relax

    _check(plan)
    routes = layer_routes(plan)
    if SCHEDULED not in routes:
        raise UnsupportedModelError("the hand-scheduled TVM kernels take none of this plan's layers "
                                    "(scheduled.layer_routes): use int8_kernels = \"generic\"")
    bb = low.bb
    x = relax.Var("x", relax.TensorType((1,) + tuple(plan.input_shape), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            tensors = _Tensors(plan, low, x)
            for i, route in enumerate(routes):
                _emit_layer(plan, low, tensors, i, route)
            out = bb.emit_output(joined_outputs(bb, plan, lambda j: tensors.get(j, GENERIC)))
        bb.emit_func_output(out)
    return bb.get()


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
