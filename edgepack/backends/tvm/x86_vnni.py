"""int8 plan -> hand-scheduled TIR kernels for x86 CPUs with AVX512-VNNI (vpdpbusd).

The generic lowering (relax_int8.py) leaves TVM naive loops, tens of times slower than ONNX
Runtime. Here each layer is one TE compute with its own schedule, in the layout the hardware wants:

- Activations are NHWC, channels padded to a multiple of 16, held as uint8 (int8 value + 128),
  because vpdpbusd multiplies unsigned by signed bytes. The +128 moves every zero point by 128;
  the zero-point term zp * sum(w) is folded into the bias as before. The logits are uint8 too
  (the final copy subtracts the 128): see _requantize for why no kernel writes int8.
- Full and pointwise convolutions are GEMMs, A[pixels, K] (im2col for k > 1) x W packed as
  [N/16, K/4, 16, 4]: each step is one vpdpbusd (16 output channels x 4 inputs), register-tiled
  over up to 16 zmm accumulators (output pixels x 16-channel blocks); the gemmlowp
  requantization runs right after, vectorised over the 16 channels, while the tile is hot.
- Depthwise convolutions are vectorised over channels, parallel over rows; the global pool and
  the FC are tiny and left simple. A residual add (TFLite's int8 ADD) is one kernel vectorised
  over 16 channels; tensors are kept by layer index, so a block's input lives until its add.

Arithmetic is the contract of edgepack.plan.reference: the output is bit-exact with it.
"""
from __future__ import annotations

import numpy as np

from edgepack.backends.tvm import scheduled
from edgepack.backends.tvm.scheduled import LANES, chain_shaped, folded_bias, global_average_pool, pad16, shape, zero_padded
from edgepack.plan.plan import ADD_LEFT_SHIFT, Layer, Plan

# LANES (16) = int32 lanes of a zmm register = output channels per vpdpbusd
ACCUMULATORS = 16  # zmm accumulators per register tile (rows x 16-channel blocks)
SCHEDULES = "edgepack x86 AVX512-VNNI kernels: GEMM conv via vpdpbusd (16x4 tensor intrinsic), vectorised depthwise"


def supported(plan: Plan, tvm_tgt) -> bool:
    """VNNI kernels need avx512vnni and a plan with a conv, pointwise or depthwise layer they take (the other
    layers run their generic lowering in the same module: scheduled.layer_routes)."""
    from tvm.target import codegen

    if tvm_tgt.kind.name != "llvm" or not codegen.target_has_features("avx512vnni", tvm_tgt):
        return False
    return scheduled.worth_scheduling(plan)


def _requant_tables(layer: Layer, n_pad: int) -> dict[str, np.ndarray]:
    """Per-channel int32 constants of the gemmlowp requantization; padded channels are harmless."""
    c = len(layer.arrays["multiplier"])
    shift = np.zeros(n_pad, np.int64)
    shift[:c] = layer.arrays["shift"]
    mult = np.full(n_pad, 1 << 30, np.int64)
    mult[:c] = layer.arrays["multiplier"]
    right = np.maximum(-shift, 0)
    mask = (np.int64(1) << right) - 1
    tables = {"mult": mult, "left": np.maximum(shift, 0), "right": right, "mask": mask, "half": mask >> 1}
    return {k: v.astype(np.int32) for k, v in tables.items()}


def _requantize(acc, n, t, layer: Layer):
    """int32 accumulator (TE expr) of channel ``n`` -> uint8 (value + 128), exactly as the reference.

    Only the doubling high multiply needs 64 bits (a 32x32 -> 64 multiply, vpmuldq); everything
    else stays in 32-bit lanes. gemmlowp's nudge (2^30, or 1 - 2^30 below zero) followed by a
    division truncating toward zero is exactly floor((ab + 2^30) / 2^31), one add and one
    arithmetic shift (the INT32_MIN * INT32_MIN saturation cannot occur: multipliers are >= 2^30).

    The steps are let-bound: without, the simplifier widens acc = gemm + bias into int64 adds. The
    result is uint8 for every layer, the logits too: TVM's NarrowDataType analyses a signed-integer
    store value as one tree (the lets bound), then re-analyses the rounding comparisons' operands
    with the lets unbound; after a saturating left shift ``high`` has a bound narrower than int32
    and the two disagree ("conflicts with memorization"). A uint8 value is not analysed whole.
    """
    from tvm import tirx as tir

    i32, i64 = "int32", "int64"
    steps = []  # (var, value): let-bound so that no subexpression is duplicated

    def let(name, value, dtype):
        var = tir.Var(name, dtype)
        steps.append((var, value))
        return var

    x = let("acc", acc, i32)
    if layer.arrays["shift"].max() > 0:  # saturating left shift, only for multipliers > 1
        wide = x.astype(i64) << t["left"][n].astype(i64)
        x = let("shifted", tir.max(tir.min(wide, tir.const(2**31 - 1, i64)), tir.const(-(2**31), i64)).astype(i32), i32)
    ab = x.astype(i64) * t["mult"][n].astype(i64)
    high = let("high", ((ab + tir.const(1 << 30, i64)) >> 31).astype(i32), i32)
    rounded = (high & t["mask"][n]) > (t["half"][n] + (high < 0).astype(i32))
    out = (high >> t["right"][n]) + rounded.astype(i32) + layer.output_q.zero_point
    out = tir.max(tir.min(out, tir.const(layer.act_max, i32)), tir.const(layer.act_min, i32))
    body = (out + 128).astype("uint8")
    for var, value in reversed(steps):
        body = tir.Let(var, value, body)
    return body


def _add_te(a, b, layer: Layer):
    """TFLite's int8 ADD (edgepack.ops.add) of two (pixels, C) uint8 activations (value + 128): each input
    minus its zero point, << 20 (|x - zp| <= 255: int32 holds it), rescaled by its own multiplier, the sum
    rescaled to the output, + zero point, clamped, + 128. Rescaling is SaturatingRoundingDoublingHighMul as
    floor((x * M + 2^30) / 2^31) in int64 (M < 2^31; the result stays below 2^28) and RoundingDivideByPOT
    in int32 as floor((x + 2^(e-1) - [x < 0]) / 2^e) (the identity of reference.requantize; comparisons
    here make TVM's vectoriser fold a boolx16 constant it cannot build). The steps are let-bound (as in
    _requantize), or each rescale would repeat its operand."""
    from tvm import te, tirx as tir

    i32, i64 = "int32", "int64"
    (ma, mb, mo), (sa, sb, so) = layer.arrays["multiplier"].tolist(), layer.arrays["shift"].tolist()

    def value(p, n):
        steps = []

        def let(bound):
            var = tir.Var(f"v{len(steps)}", i32)
            steps.append((var, bound))
            return var

        def rescale(x, multiplier: int, shift: int):
            high = let(((x.astype(i64) * tir.const(multiplier, i64) + tir.const(1 << 30, i64)) >> 31).astype(i32))
            if shift == 0:
                return high
            return (high + ((1 << -shift) >> 1) + (high >> 31)) >> -shift  # high >> 31: -1 below zero

        wide_a = let((a[p, n].astype(i32) - (layer.input_q.zero_point + 128)) << ADD_LEFT_SHIFT)
        wide_b = let((b[p, n].astype(i32) - (layer.params.input2_q.zero_point + 128)) << ADD_LEFT_SHIFT)
        total = let(rescale(wide_a, ma, sa) + rescale(wide_b, mb, sb))
        out = rescale(total, mo, so) + layer.output_q.zero_point
        body = (tir.max(tir.min(out, tir.const(layer.act_max, i32)), tir.const(layer.act_min, i32)) + 128).astype("uint8")
        for var, bound in reversed(steps):
            body = tir.Let(var, bound, body)
        return body

    return te.compute(tuple(a.shape), value, name="out")


def _gemm_te(a, w_packed, bias, tables, layer: Layer):
    """C[m, n] = sum_k a[m, k] * w[n, k] on u8 x s8, then requantization: one prim func."""
    from tvm import te

    m, k_total = a.shape
    n_blocks, _, lanes, _ = w_packed.shape
    k = te.reduce_axis((0, k_total), "k")
    acc = te.compute((m, n_blocks * lanes), lambda i, j: te.sum(
        a[i, k].astype("int32") * w_packed[j // LANES, k // 4, j % LANES, k % 4].astype("int32"), axis=k), name="gemm")
    return te.compute((m, n_blocks * lanes), lambda i, j: _requantize(acc[i, j] + bias[j], j, tables, layer),
                      name="requant")


def _vnni_intrinsic() -> str:
    """TVM's registered dot_16x4_vnni passes i32 vectors; LLVM >= 20 declares vpdpbusd on <64 x i8>."""
    from tvm import s_tir
    from tvm.script import tirx as T
    from tvm.target import codegen

    name = "edgepack_vnni_16x4"
    if s_tir.TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    operand = "int8x64" if codegen.llvm_version_major() >= 20 else "int32x16"

    # the description of tvm.s_tir.tensor_intrin.x86 (importing that package parses every
    # backend's intrinsics: ~20 s)
    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            a_bytes = T.reinterpret(T.broadcast(T.reinterpret(a.vload([0], "uint8x4"), dtype="int32"), 16), dtype=operand)
            b_bytes = T.reinterpret(b.vload([0, 0], dtype="int8x64"), dtype=operand)
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), c.vload([0], dtype="int32x16"),
                a_bytes, b_bytes, dtype="int32x16")

    s_tir.TensorIntrin.register(name, desc, impl)
    return name


def _register_tile(m: int, n_blocks: int) -> tuple[int, int]:
    """(rows, 16-channel blocks) held in zmm accumulators: at most ACCUMULATORS (16 = 1 KiB, TVM's
    stack-allocation limit, so LLVM keeps them in registers), dividing the GEMM, maximising
    vpdpbusd per load (then the tile size; the first such tile on ties)."""
    tiles = [(rows, blocks) for rows in range(1, ACCUMULATORS + 1) for blocks in range(1, ACCUMULATORS // rows + 1)
             if m % rows == 0 and n_blocks % blocks == 0]
    return max(tiles, key=lambda t: (t[0] * t[1] / (t[0] + t[1]), t[0] * t[1]))


def _schedule_gemm(func):
    """Tiles of (rows x blocks*16) outputs in parallel; per tile the accumulators stay in registers
    through K/4 vpdpbusd steps, then are requantised (vectorised over 16 channels) while hot."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    gemm, out = sch.get_sblock("gemm"), sch.get_sblock("requant")
    m_loop, n_loop = sch.get_loops(out)
    m, n = int(sch.get(m_loop).extent), int(sch.get(n_loop).extent)
    rows, blocks = _register_tile(m, n // LANES)
    mo, mi = sch.split(m_loop, [None, rows])
    no, ni = sch.split(n_loop, [None, blocks * LANES])
    sch.reorder(mo, no, mi, ni)
    tile = sch.fuse(mo, no)
    sch.parallel(tile)
    sch.vectorize(sch.split(ni, [None, LANES])[1])
    sch.compute_at(gemm, tile)
    inner = sch.get_loops(gemm)[1:]  # (rows, blocks*16, K); unit loops are dropped
    gk = inner[-1]
    spatial = list(inner[:-1])
    if blocks > 1:
        spatial[-1:] = sch.split(spatial[-1], [None, LANES])
    ko, ki = sch.split(gk, [None, 4])
    sch.reorder(ko, *spatial, ki)
    init = sch.decompose_reduction(gemm, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(spatial[-1], _vnni_intrinsic())
    for loop in spatial[:-1]:
        sch.unroll(loop)
    return sch.mod["main"]


def _schedule_channels(func, block: str = "out"):
    """Outermost loop parallel, channel loop vectorised (by 16, or whole when shorter)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    loops = sch.get_loops(sch.get_sblock(block))
    extent = int(sch.get(loops[-1]).extent)
    if extent % LANES == 0:
        sch.vectorize(sch.split(loops[-1], [None, LANES])[1])
    elif extent < LANES:
        sch.vectorize(loops[-1])
    if len(loops) > 1:
        sch.parallel(loops[0])
    return sch.mod["main"]


def _schedule_depthwise(func):
    """Rows in parallel; per 16 channels the int32 sums (vectorised), then their requantization."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    acc, out = sch.get_sblock("acc"), sch.get_sblock("out")
    y, x, n = sch.get_loops(out)
    no, ni = sch.split(n, [None, LANES])
    sch.reorder(y, no, x, ni)  # the filter taps of a channel block stay in registers along the row
    sch.parallel(y)
    sch.vectorize(ni)
    sch.compute_at(acc, no)
    sch.vectorize(sch.get_loops(acc)[-1])
    return sch.mod["main"]


def _pack_weight(w2d: np.ndarray, n_pad: int, k_pad: int) -> np.ndarray:
    """(N, K) int8 -> [N/16, K/4, 16, 4], zero padded."""
    full = zero_padded(w2d, n_pad, k_pad)
    return np.ascontiguousarray(full.reshape(n_pad // LANES, LANES, k_pad // 4, 4).transpose(0, 2, 1, 3))


class _Lowering:
    def __init__(self, plan: Plan):
        from tvm import relax

        self.plan, self.bb, self.relax = plan, relax.BlockBuilder(), relax
        self.offset = 128  # activations are held as uint8 value + 128 (scheduled.to_scheduled / to_generic)
        self.kinds: dict[str, str] = {}  # prim func name -> scheduler

    def const(self, value: np.ndarray):
        return self.relax.const(np.ascontiguousarray(value), str(value.dtype))

    def emit(self, kind: str, fn, *args, name: str):
        self.kinds[name] = kind
        return self.bb.emit_te(fn, *args, primfunc_name_hint=name)

    def per_channel(self, layer: Layer, zp_u8: int, n_pad: int) -> tuple[list[str], list]:
        """The layer's folded bias and requantization tables, padded to n_pad channels, as
        constants (after the bias, in the order of the returned table names)."""
        bias = folded_bias(layer, zp_u8, n_pad)
        tables = _requant_tables(layer, n_pad)
        return list(tables), [self.const(bias)] + [self.const(v) for v in tables.values()]

    def gemm(self, a, w2d: np.ndarray, layer: Layer, zp_u8: int, name: str):
        n_pad, k_pad = pad16(w2d.shape[0]), shape(a)[1]
        keys, consts = self.per_channel(layer, zp_u8, n_pad)

        def fn(a, w, b, *tabs):
            return _gemm_te(a, w, b, dict(zip(keys, tabs)), layer)

        return self.emit("gemm", fn, a, self.const(_pack_weight(w2d, n_pad, k_pad)), *consts, name=name)

    def reshape(self, x, shape):
        return self.bb.emit(self.relax.op.reshape(x, shape))  # a view after RewriteDataflowReshape

    def conv(self, x, layer: Layer, i: int, nchw_int8: bool):  # nchw_int8: reads the model input
        """Full conv (any (kh, kw), (sh, sw)): im2col into A[pixels, (kh, kw, C)], then the GEMM."""
        from tvm import te, tirx as tir

        w = layer.weight
        o, c, kh, kw = w.shape
        _, oh, ow = layer.output_shape
        _, h, wd = layer.input_shape
        (sh, sw), (top, left, _, _) = layer.strides, layer.pads  # bottom/right: the bounds tests below
        zp_u8 = layer.input_q.zero_point + 128
        if nchw_int8:  # the model input: int8 NCHW -> uint8 NHWC, channels padded to a multiple of 4
            cp = -(-c // 4) * 4

            def nhwc(x):
                return te.compute((h, wd, cp), lambda y, xx, ci: tir.if_then_else(
                    ci < c, (x[0, ci, y, xx].astype("int32") + 128).astype("uint8"), tir.const(zp_u8, "uint8")), name="out")

            x = self.emit("channels", nhwc, x, name=f"nhwc_{i}")
        else:
            cp = shape(x)[1]
            x = self.reshape(x, (h, wd, cp))

        def im2col(x):
            def value(y, xx, r, ci):
                yy, xs = y * sh + r // kw - top, xx * sw + r % kw - left
                inside = tir.likely(tir.all(yy >= 0, yy < h, xs >= 0, xs < wd))
                return tir.if_then_else(inside, x[yy, xs, ci], tir.const(zp_u8, "uint8"))
            return te.compute((oh, ow, kh * kw, cp), value, name="out")

        a = self.reshape(self.emit("channels", im2col, x, name=f"im2col_{i}"), (oh * ow, kh * kw * cp))
        w_hwc = np.zeros((o, kh, kw, cp), np.int8)
        w_hwc[..., :c] = w.transpose(0, 2, 3, 1)
        return self.gemm(a, w_hwc.reshape(o, -1), layer, zp_u8, f"conv_{i}")

    def pointwise(self, x, layer: Layer, i: int):
        if layer.strides != (1, 1):
            return self.conv(x, layer, i, nchw_int8=False)
        return self.gemm(x, layer.weight[:, :, 0, 0], layer, layer.input_q.zero_point + 128, f"pointwise_{i}")

    def depthwise(self, x, layer: Layer, i: int):
        from tvm import te, tirx as tir

        c_pad = shape(x)[1]
        c, _, k, _ = layer.weight.shape
        _, h, wd = layer.input_shape
        _, oh, ow = layer.output_shape
        s, (top, left, _, _) = layer.strides[0], layer.pads  # sh == sw (scheduled.layer_route); bottom/right: bounds tests
        zp_u8 = layer.input_q.zero_point + 128
        w = np.zeros((k, k, c_pad), np.int8)
        w[:, :, :c] = layer.weight[:, 0].transpose(1, 2, 0)
        keys, consts = self.per_channel(layer, zp_u8, c_pad)

        def fn(x, w, b, *tabs):
            t = dict(zip(keys, tabs))

            def total(y, xx, n):
                acc = b[n]
                for r in range(k):
                    for q in range(k):
                        yy, xs = y * s + r - top, xx * s + q - left
                        inside = tir.likely(tir.all(yy >= 0, yy < h, xs >= 0, xs < wd))
                        v = tir.if_then_else(inside, x[yy, xs, n], tir.const(zp_u8, "uint8"))
                        acc = acc + v.astype("int32") * w[r, q, n].astype("int32")
                return acc
            acc = te.compute((oh, ow, c_pad), total, name="acc")
            return te.compute((oh, ow, c_pad), lambda y, xx, n: _requantize(acc[y, xx, n], n, t, layer), name="out")

        out = self.emit("depthwise", fn, self.reshape(x, (h, wd, c_pad)), self.const(w), *consts, name=f"depthwise_{i}")
        return self.reshape(out, (oh * ow, c_pad))

    def avgpool(self, x, layer: Layer, i: int):
        hw, c_pad = shape(x)
        return self.emit("pool", global_average_pool(layer, hw, c_pad, offset=128), x, name=f"avgpool_{i}")

    def add(self, a, b, layer: Layer, i: int):
        """A residual add of two uint8 NHWC tensors, vectorised over 16 channels (_add_te)."""
        return self.emit("channels", lambda a, b: _add_te(a, b, layer), a, b, name=f"add_{i}")

    def fc(self, x, layer: Layer, i: int):
        if layer.params.rounding == "single":  # TFLite's FULLY_CONNECTED: a plain int64 TE kernel (the fc is tiny)
            features, n_pad = shape(x)[1], pad16(layer.output_shape[0])
            consts = scheduled.single_rounding_tables(layer, 128, features, n_pad)
            return self.emit("plain", scheduled.single_rounding_fc(layer, features, n_pad, offset=128), x,
                             *map(self.const, consts), name=f"fc_{i}")
        return self.gemm(x, layer.weight, layer, layer.input_q.zero_point + 128, f"fc_{i}")  # last too: uint8


def plan_to_relax_vnni(plan: Plan):
    """An IRModule with ``main(x: int8[1, C, H, W]) -> int8[1, classes]``, every kernel already scheduled."""
    low = _Lowering(plan)
    mod = scheduled.plan_function(plan, low)
    schedulers = {"gemm": _schedule_gemm, "channels": _schedule_channels, "depthwise": _schedule_depthwise,
                  "pool": lambda f: f, "plain": lambda f: f}
    for gv in list(mod.get_global_vars()):
        kind = low.kinds.get(gv.name_hint)
        if kind is not None:
            mod[gv] = schedulers[kind](mod[gv])
    return mod


def build(plan: Plan, tvm_tgt):
    return scheduled.build(plan_to_relax_vnni(plan), tvm_tgt, fuse=not chain_shaped(plan))
