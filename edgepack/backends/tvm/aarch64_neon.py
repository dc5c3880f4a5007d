"""int8 plan -> hand-written TIR kernels for AArch64 NEON (Cortex-A53 / A72; SDOT on Cortex-A76 and later).

The generic lowering (relax_int8.py) leaves LLVM scalar loops: ~13x the instructions of LiteRT /
XNNPACK on a Cortex-A72. These kernels do what XNNPACK's A72 kernels do, in TIR:

- Activations are NHWC int8 with channels padded to a multiple of 16 (the zero-point term
  zp * sum(w) is folded into the bias; padding pixels hold the zero point).
- Full and pointwise convolutions are GEMMs A[pixels, K] x W, weights packed at compile time as
  [N/NT, K/16, NT, 16]. The micro-kernel holds an R x NT register tile of int32x4 accumulators;
  per 16 K-values it does SMULL (low 8 bytes) + SMLAL2 (high 8 bytes) into int16 and SADALP into
  the accumulator: 16 MACs in three instructions. Two int8 products summed in int16 cannot
  overflow because weights are in [-127, 127] (2 * 128 * 127 = 32512). Each accumulator holds
  four partial sums of its dot product; ADDP folds them after the K loop. On CPUs with dotprod
  (Raspberry Pi 5) the GEMM is XNNPACK's c4 form instead: SDOT by element, one broadcast group of
  4 K-values against 4 channels x 4 values of W, accumulators holding finished channels.
- The gemmlowp requantization runs on the hot tile, four channels per instruction: SQSHL (left
  shift, saturating), SQRDMULH (exactly SaturatingRoundingDoublingHighMul for multipliers in
  [2^30, 2^31)), the sign fix-up (SQADD of (x & -right) >> 31) and SRSHL, which together are
  RoundingDivideByPOT's round-half-away-from-zero, then the zero point and the clamp.
- Depthwise convolutions run 16 channels at a time: the filter taps stay in registers along an
  output row, two taps are multiplied into int16 (SMULL + SMLAL, same bound) and widened into the
  int32 accumulators with SADDW.
- A residual add (TFLite's int8 ADD) runs 16 channels per step: SXTL, the zero point, << 20, SQRDMULH
  and the rounding shift per input, their sum rescaled the same way, SQXTN and the clamp.
- Work is split across the target's cores over GEMM tiles, depthwise rows and add pixels (T.parallel).

Arithmetic is the contract of edgepack.plan.reference: outputs are bit-exact with it.
"""
from __future__ import annotations

import numpy as np

from edgepack.backends.tvm import scheduled
from edgepack.backends.tvm.scheduled import LANES, chain_shaped, folded_bias, global_average_pool, pad16, shape, zero_padded
from edgepack.plan.plan import ADD_LEFT_SHIFT, Layer, Plan

K_STEP = 16  # int8 values of K per micro-kernel step (one q register)
MAX_ACCUMULATORS = 16  # int32x4 accumulators per register tile (of 32 NEON registers)
SCHEDULES = ("edgepack AArch64 NEON kernels: GEMM conv with SMULL/SMLAL2/SADALP register tiles (SDOT where the CPU "
             "has dotprod), SQRDMULH requantization, 16-channel depthwise with SMLAL/SADDW")


def supported(plan: Plan, tvm_tgt) -> bool:
    """AArch64 LLVM targets with NEON, and a plan with a conv, pointwise or depthwise layer the kernels take
    (the other layers run their generic lowering in the same module: scheduled.layer_routes)."""
    from tvm.target import codegen

    if tvm_tgt.kind.name != "llvm" or "aarch64" not in str(tvm_tgt.attrs.get("mtriple", "")):
        return False
    return codegen.target_has_features("neon", tvm_tgt) and scheduled.worth_scheduling(plan)


def _best_tile(m: int, n: int, max_rows: int, channels_per_accumulator: int) -> tuple[int, int]:
    """(rows R, channels NT): R divides the pixels, NT (4, 8 or 16) the padded channels, the R x NT /
    channels_per_accumulator int32x4 accumulators fit in MAX_ACCUMULATORS; maximise MACs per load
    (R * NT / (R + NT): per 16 K-values R + NT loads), then the tile size."""
    tiles = [(r, nt) for r in range(1, max_rows + 1) for nt in (4, 8, 16)
             if m % r == 0 and n % nt == 0 and r * nt // channels_per_accumulator <= MAX_ACCUMULATORS]
    return max(tiles, key=lambda t: (t[0] * t[1] / (t[0] + t[1]), t[0] * t[1]))


def register_tile(m: int, n: int) -> tuple[int, int]:
    """The SMULL/SADALP tile: one accumulator (partial sums) per row and channel."""
    return _best_tile(m, n, max_rows=4, channels_per_accumulator=1)


def requant_tables(layer: Layer, n_pad: int) -> dict[str, np.ndarray]:
    """Per-channel int32 vectors of the requantization; padded channels get a harmless identity-ish set."""
    c = len(layer.arrays["multiplier"])
    mult = np.full(n_pad, 1 << 30, np.int64)
    mult[:c] = layer.arrays["multiplier"]
    shift = np.zeros(n_pad, np.int64)
    shift[:c] = layer.arrays["shift"]
    return {"mult": mult.astype(np.int32), "left": np.maximum(shift, 0).astype(np.int32),
            "negright": (-np.maximum(-shift, 0)).astype(np.int32)}


def pack_weight(w2d: np.ndarray, n_pad: int, k_pad: int, nt: int) -> np.ndarray:
    """(N, K) int8 -> [N/NT, K/16, NT, 16], zero padded: one tile's 16-byte rows are contiguous per K step."""
    full = zero_padded(w2d, n_pad, k_pad)
    return np.ascontiguousarray(full.reshape(n_pad // nt, nt, k_pad // K_STEP, K_STEP).transpose(0, 2, 1, 3))


def _neon(name: str, dtype: str, *args):
    from tvm.script import tirx as T

    return T.call_llvm_pure_intrin(dtype, f"llvm.aarch64.neon.{name}", *args)


def _smull_lo(x, y):
    from tvm.script import tirx as T

    return _neon("smull", "int16x8", T.vectorlow("int8x8", x), T.vectorlow("int8x8", y))


def _smull_hi(x, y):
    from tvm.script import tirx as T

    return _neon("smull", "int16x8", T.vectorhigh("int8x8", x), T.vectorhigh("int8x8", y))


def _widen_add(acc, lo, hi):
    """acc[0:16] += the 16 int16 products, widened (SADDW / SADDW2)."""
    from tvm.script import tirx as T

    for q, (half, part) in enumerate(((lo, T.vectorlow), (lo, T.vectorhigh), (hi, T.vectorlow), (hi, T.vectorhigh))):
        T.buffer_store(acc, acc[T.Ramp(q * 4, 1, 4)] + T.Cast("int32x4", part("int16x4", half)), [T.Ramp(q * 4, 1, 4)])


def requantize4(x, tables, ch, layer: Layer):
    """int32x4 accumulators (bias added) of channels ch..ch+3 -> int32x4 with the output zero point added
    (the clamp comes after narrowing, on int8 lanes: the same result, since SQXTN saturates)."""
    from tvm.script import tirx as T

    mult, left, negright = (tables[k][T.Ramp(ch, 1, 4)] for k in ("mult", "left", "negright"))
    if layer.arrays["shift"].max() > 0:
        x = _neon("sqshl", "int32x4", x, left)
    x = _neon("sqrdmulh", "int32x4", x, mult)
    x = _neon("sqadd", "int32x4", x, T.shift_right(T.bitwise_and(x, negright), T.Broadcast(T.int32(31), 4)))
    return _neon("srshl", "int32x4", x, negright) + T.Broadcast(T.int32(layer.output_q.zero_point), 4)


def narrow(vectors: list, layer: Layer):
    """1, 2 or 4 int32x4 -> int8x4 / x8 / x16 with SQXTN(2) twice, clamped to [act_min, act_max] once."""
    from tvm.script import tirx as T

    halves = [_neon("sqxtn", "int16x4", v) for v in vectors]
    if len(halves) == 1:
        halves = halves * 2
    words = [T.vectorcombine("int16x8", halves[i], halves[i + 1]) for i in range(0, len(halves), 2)]
    bytes8 = [_neon("sqxtn", "int8x8", w) for w in words]
    lanes = 16 if len(bytes8) == 2 else 8
    b = T.vectorcombine("int8x16", *bytes8) if lanes == 16 else bytes8[0]
    b = T.max(T.min(b, T.Broadcast(T.int8(layer.act_max), lanes)), T.Broadcast(T.int8(layer.act_min), lanes))
    return T.vectorlow("int8x4", b) if len(vectors) == 1 else b


def rescale4(x, multiplier: int, shift: int):
    """int32x4 -> TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp by one constant multiplier and
    shift <= 0: SQRDMULH, then the sign fix-up and SRSHL of requantize4 (RoundingDivideByPOT)."""
    from tvm.script import tirx as T

    x = _neon("sqrdmulh", "int32x4", x, T.Broadcast(T.int32(multiplier), 4))
    if shift == 0:
        return x
    negright = T.Broadcast(T.int32(shift), 4)
    x = _neon("sqadd", "int32x4", x, T.shift_right(T.bitwise_and(x, negright), T.Broadcast(T.int32(31), 4)))
    return _neon("srshl", "int32x4", x, negright)


def add_func(m: int, c: int, layer: Layer):
    """out[p, ch] = TFLite's int8 ADD of a[p, ch] and b[p, ch] (edgepack.ops.add), 16 channels per step: each
    input widened to int32x4 (SXTL), minus its zero point, << 20, rescaled (SQRDMULH + rounding shift),
    the sum rescaled to the output scale, + zero point, narrowed and clamped. |x - zp| << 20 < 2^28 and
    each rescaled input is below 2^27, so int32 lanes hold every step (the sum cannot saturate)."""
    from tvm.script import tirx as T

    (ma, mb, mo), (sa, sb, so) = layer.arrays["multiplier"].tolist(), layer.arrays["shift"].tolist()
    zp_a, zp_b = layer.input_q.zero_point, layer.params.input2_q.zero_point

    def widened(x, zero_point: int) -> list:
        """int8x16 -> four int32x4 of (x - zp) << 20."""
        halves = [T.Cast("int16x8", part("int8x8", x)) for part in (T.vectorlow, T.vectorhigh)]
        return [T.shift_left(T.Cast("int32x4", part("int16x4", h)) - T.Broadcast(T.int32(zero_point), 4),
                             T.Broadcast(T.int32(ADD_LEFT_SHIFT), 4))
                for h in halves for part in (T.vectorlow, T.vectorhigh)]

    def block(x, y) -> list:
        return [rescale4(rescale4(u, ma, sa) + rescale4(v, mb, sb), mo, so) + T.Broadcast(T.int32(layer.output_q.zero_point), 4)
                for u, v in zip(widened(x, zp_a), widened(y, zp_b))]

    @T.prim_func
    def add(a: T.Buffer((m, c), "int8"), b: T.Buffer((m, c), "int8"), out: T.Buffer((m, c), "int8")):
        T.func_attr({"tir.noalias": True})
        for p in T.parallel(m):
            for cb in T.serial(c // LANES):
                out[p, T.Ramp(cb * LANES, 1, LANES)] = narrow(block(a[p, T.Ramp(cb * LANES, 1, LANES)],
                                                                    b[p, T.Ramp(cb * LANES, 1, LANES)]), layer)

    return add


def gemm_row(acc, r: int, nt: int, ch, bias, tables: dict, layer: Layer):
    """The NT outputs of tile row ``r``: fold each accumulator's four lanes (ADDP twice), add the bias,
    requantize four channels at a time, narrow to int8."""
    from tvm.script import tirx as T

    out = []
    for g in range(nt // 4):
        base = (r * nt + g * 4) * 4
        lanes = [acc[T.Ramp(base + 4 * j, 1, 4)] for j in range(4)]
        total = _neon("addp", "int32x4", _neon("addp", "int32x4", lanes[0], lanes[1]),
                      _neon("addp", "int32x4", lanes[2], lanes[3])) + bias[T.Ramp(ch + g * 4, 1, 4)]
        out.append(requantize4(total, tables, ch + g * 4, layer))
    return narrow(out, layer) if nt <= 16 else None


def gemm_func(m: int, k: int, n: int, layer: Layer):
    """C[m, n] = requant(sum_k A[m, k] W[n, k] + bias[n]): A int8 (M, K), W packed by pack_weight, C int8
    (M, N). Each accumulator's lanes hold partial sums of its dot product, folded by ADDP (gemm_row)."""
    from tvm.script import tirx as T

    rows, nt = register_tile(m, n)
    steps, n_tiles = k // K_STEP, n // nt

    @T.prim_func
    def gemm(a: T.Buffer((m, k), "int8"), w: T.Buffer((n // nt, steps, nt, K_STEP), "int8"),
             bias: T.Buffer((n,), "int32"), mult: T.Buffer((n,), "int32"), left: T.Buffer((n,), "int32"),
             negright: T.Buffer((n,), "int32"), c: T.Buffer((m, n), "int8")):
        T.func_attr({"tir.noalias": True})
        for tile in T.parallel(m // rows * n_tiles):
            acc = T.alloc_buffer((rows * nt * 4,), "int32")  # small and constant-indexed: registers
            for i in T.unroll(rows * nt):
                acc[T.Ramp(i * 4, 1, 4)] = T.Broadcast(T.int32(0), 4)
            for ko in T.serial(steps):
                for r in T.unroll(rows):
                    for j in T.unroll(nt):  # SMULL + SMLAL2 into int16 pairs, SADALP into int32
                        x: T.let = a[tile // n_tiles * rows + r, T.Ramp(ko * K_STEP, 1, K_STEP)]
                        y: T.let = w[tile % n_tiles, ko, j, T.Ramp(0, 1, K_STEP)]
                        acc[T.Ramp((r * nt + j) * 4, 1, 4)] = (acc[T.Ramp((r * nt + j) * 4, 1, 4)] + _neon(
                            "saddlp", "int32x4", _smull_lo(x, y) + _smull_hi(x, y)))
            for r in range(rows):  # unrolled here: each row's channels are narrowed together
                c[tile // n_tiles * rows + r, T.Ramp(tile % n_tiles * nt, 1, nt)] = gemm_row(
                    acc, r, nt, tile % n_tiles * nt, bias, {"mult": mult, "left": left, "negright": negright}, layer)

    return gemm


def register_tile_sdot(m: int, n: int) -> tuple[int, int]:
    """The SDOT tile: accumulators hold four finished channels each, so up to 8 rows fit."""
    return _best_tile(m, n, max_rows=8, channels_per_accumulator=4)


def pack_weight_sdot(w2d: np.ndarray, n_pad: int, k_pad: int, nt: int) -> np.ndarray:
    """(N, K) int8 -> [N/NT, K/16, 4, NT * 4]: per 4 K-values, 16-byte groups of 4 channels x 4 values,
    the operand of SDOT by element."""
    packed = zero_padded(w2d, n_pad, k_pad).reshape(n_pad // nt, nt, k_pad // K_STEP, 4, 4).transpose(0, 2, 3, 1, 4)
    return np.ascontiguousarray(packed).reshape(n_pad // nt, k_pad // K_STEP, 4, nt * 4)


def gemm_sdot_func(m: int, k: int, n: int, layer: Layer):
    """The GEMM of gemm_func for CPUs with dotprod (Armv8.2, e.g. Cortex-A76), as XNNPACK's c4 kernels: one
    16-byte load per row holds four groups of 4 K-values; SDOT by element multiplies a group (broadcast) with
    4 channels x 4 values of W, so each accumulator ends with four finished channels (no ADDP)."""
    from tvm.script import tirx as T

    rows, nt = register_tile_sdot(m, n)
    steps, n_tiles, groups = k // K_STEP, n // nt, nt // 4

    @T.prim_func
    def gemm(a: T.Buffer((m, k), "int8"), w: T.Buffer((n // nt, steps, 4, nt * 4), "int8"),
             bias: T.Buffer((n,), "int32"), mult: T.Buffer((n,), "int32"), left: T.Buffer((n,), "int32"),
             negright: T.Buffer((n,), "int32"), c: T.Buffer((m, n), "int8")):
        T.func_attr({"tir.noalias": True})
        for tile in T.parallel(m // rows * n_tiles):
            acc = T.alloc_buffer((rows * groups * 4,), "int32")  # small and constant-indexed: registers
            for i in T.unroll(rows * groups):
                acc[T.Ramp(i * 4, 1, 4)] = T.Broadcast(T.int32(0), 4)
            for ko in T.serial(steps):
                for q in T.unroll(4):
                    for r in T.unroll(rows):
                        for g in T.unroll(groups):
                            x: T.let = T.reinterpret("int32x4", a[tile // n_tiles * rows + r, T.Ramp(ko * K_STEP, 1, K_STEP)])
                            acc[T.Ramp((r * groups + g) * 4, 1, 4)] = _neon(
                                "sdot", "int32x4", acc[T.Ramp((r * groups + g) * 4, 1, 4)],
                                w[tile % n_tiles, ko, q, T.Ramp(g * 16, 1, 16)],
                                T.reinterpret("int8x16", T.Shuffle([x], [q, q, q, q])))
            for r in range(rows):
                c[tile // n_tiles * rows + r, T.Ramp(tile % n_tiles * nt, 1, nt)] = narrow([requantize4(
                    acc[T.Ramp((r * groups + g) * 4, 1, 4)] + bias[T.Ramp(tile % n_tiles * nt + g * 4, 1, 4)],
                    {"mult": mult, "left": left, "negright": negright}, tile % n_tiles * nt + g * 4, layer)
                    for g in range(groups)], layer)

    return gemm


def depthwise_func(hp: int, wp: int, c: int, oh: int, ow: int, k: int, stride: int, layer: Layer):
    """out[y*OW + x, ch] = requant(sum_taps P[y*s+r, x*s+q, ch] W[r*k+q, ch] + bias[ch]) over a zero-point
    padded input P (Hp, Wp, C), 16 channels per step; taps are summed two at a time in int16."""
    from tvm.script import tirx as T

    taps = k * k
    pairs, odd = taps // 2, bool(taps % 2)

    @T.prim_func
    def depthwise(p: T.Buffer((hp, wp, c), "int8"), w: T.Buffer((taps, c), "int8"), bias: T.Buffer((c,), "int32"),
                  mult: T.Buffer((c,), "int32"), left: T.Buffer((c,), "int32"), negright: T.Buffer((c,), "int32"),
                  out: T.Buffer((oh * ow, c), "int8")):
        T.func_attr({"tir.noalias": True})
        for y in T.parallel(oh):
            for cb in T.serial(c // LANES):
                for xo in T.serial(ow):
                    acc = T.alloc_buffer((LANES,), "int32")
                    for q in T.unroll(4):
                        acc[T.Ramp(q * 4, 1, 4)] = bias[T.Ramp(cb * LANES + q * 4, 1, 4)]
                    for t in T.unroll(pairs):  # two taps summed in int16, then widened
                        lo: T.let = (_smull_lo(p[y * stride + 2 * t // k, xo * stride + 2 * t % k, T.Ramp(cb * LANES, 1, LANES)],
                                               w[2 * t, T.Ramp(cb * LANES, 1, LANES)])
                                     + _smull_lo(p[y * stride + (2 * t + 1) // k, xo * stride + (2 * t + 1) % k,
                                                   T.Ramp(cb * LANES, 1, LANES)], w[2 * t + 1, T.Ramp(cb * LANES, 1, LANES)]))
                        hi: T.let = (_smull_hi(p[y * stride + 2 * t // k, xo * stride + 2 * t % k, T.Ramp(cb * LANES, 1, LANES)],
                                               w[2 * t, T.Ramp(cb * LANES, 1, LANES)])
                                     + _smull_hi(p[y * stride + (2 * t + 1) // k, xo * stride + (2 * t + 1) % k,
                                                   T.Ramp(cb * LANES, 1, LANES)], w[2 * t + 1, T.Ramp(cb * LANES, 1, LANES)]))
                        _widen_add(acc, lo, hi)
                    if odd:  # the last tap alone
                        lo1: T.let = _smull_lo(p[y * stride + (taps - 1) // k, xo * stride + (taps - 1) % k, T.Ramp(cb * LANES, 1, LANES)],
                                               w[taps - 1, T.Ramp(cb * LANES, 1, LANES)])
                        hi1: T.let = _smull_hi(p[y * stride + (taps - 1) // k, xo * stride + (taps - 1) % k, T.Ramp(cb * LANES, 1, LANES)],
                                               w[taps - 1, T.Ramp(cb * LANES, 1, LANES)])
                        _widen_add(acc, lo1, hi1)
                    out[y * ow + xo, T.Ramp(cb * LANES, 1, LANES)] = narrow([requantize4(
                        acc[T.Ramp(q * 4, 1, 4)], {"mult": mult, "left": left, "negright": negright},
                        cb * LANES + q * 4, layer) for q in range(4)], layer)

    return depthwise


class _Lowering:
    def __init__(self, plan: Plan, dotprod: bool):
        from tvm import relax

        self.plan, self.bb, self.relax, self.dotprod = plan, relax.BlockBuilder(), relax, dotprod
        self.offset = 0  # activations are held as int8 values (scheduled.to_scheduled / to_generic)
        self.te_kinds: dict[str, str] = {}  # TE prim func name -> its scheduler

    def const(self, value: np.ndarray):
        return self.relax.const(np.ascontiguousarray(value), str(value.dtype))

    def call(self, func, name: str, args: list, out_shape: tuple[int, ...]):
        gv = self.bb.add_func(func, name)
        return self.bb.emit(self.relax.call_tir(gv, args, self.relax.TensorType(out_shape, "int8")))

    def emit_te(self, kind: str, fn, *args, name: str):
        self.te_kinds[name] = kind
        return self.bb.emit_te(fn, *args, primfunc_name_hint=name)

    def tables(self, layer: Layer, zero_point: int, n_pad: int) -> list:
        t = requant_tables(layer, n_pad)
        return [self.const(folded_bias(layer, zero_point, n_pad))] + [self.const(t[k]) for k in ("mult", "left", "negright")]

    def gemm(self, a, w2d: np.ndarray, layer: Layer, name: str):
        m, k = shape(a)
        n = pad16(w2d.shape[0])
        if self.dotprod:
            _, nt = register_tile_sdot(m, n)
            func, packed = gemm_sdot_func(m, k, n, layer), pack_weight_sdot(w2d, n, k, nt)
        else:
            _, nt = register_tile(m, n)
            func, packed = gemm_func(m, k, n, layer), pack_weight(w2d, n, k, nt)
        args = [a, self.const(packed), *self.tables(layer, layer.input_q.zero_point, n)]
        return self.call(func, name, args, (m, n))

    def reshape(self, x, new_shape):
        return self.bb.emit(self.relax.op.reshape(x, new_shape))

    def padded_nhwc(self, x, layer: Layer, i: int, nchw: bool, kernel: tuple[int, int]):
        """The layer input as NHWC int8 with a border of zero points wide enough for every window: the
        kernels that read it need no bounds tests. The model input (NCHW) is transposed on the way."""
        from tvm import te, tirx as tir

        _, h, wd = layer.input_shape
        _, oh, ow = layer.output_shape
        (sh, sw), zp = layer.strides, layer.input_q.zero_point
        top, left, bottom, right = layer.pads
        c = layer.input_shape[0] if nchw else shape(x)[1]
        hp, wp = max(top + h + bottom, (oh - 1) * sh + kernel[0]), max(left + wd + right, (ow - 1) * sw + kernel[1])
        if not nchw:
            x = self.reshape(x, (h, wd, c))

        def pad(x):
            def value(y, xx, ch):
                inside = tir.all(y >= top, y < h + top, xx >= left, xx < wd + left)
                pixel = x[0, ch, y - top, xx - left] if nchw else x[y - top, xx - left, ch]
                return tir.if_then_else(inside, pixel, tir.const(zp, "int8"))
            return te.compute((hp, wp, c), value, name="out")

        kind = "copy-unroll" if c % LANES else "copy-vector"
        return self.emit_te(kind, pad, x, name=f"pad_{i}"), hp, wp, c

    def conv(self, x, layer: Layer, i: int, nchw: bool):
        """Full conv (or strided pointwise): im2col into A[pixels, (kh, kw, C)] padded to K % 16 == 0, then the GEMM."""
        from tvm import te, tirx as tir

        w = layer.weight
        o, c, kh, kw = w.shape
        _, oh, ow = layer.output_shape
        (sh, sw), zp = layer.strides, layer.input_q.zero_point
        padded, _, _, cp = self.padded_nhwc(x, layer, i, nchw, (kh, kw))
        k_real = kh * kw * cp
        k_pad = -(-k_real // K_STEP) * K_STEP

        def im2col(x):
            def value(y, xx, kk):  # kk = (r * kw + q) * cp + ci: constants once the kk loop is unrolled
                pixel = x[y * sh + kk // (kw * cp), xx * sw + kk // cp % kw, kk % cp]
                return tir.if_then_else(kk < k_real, pixel, tir.const(zp, "int8"))
            return te.compute((oh, ow, k_pad), value, name="out")

        kind = "copy-unroll" if cp % LANES else "copy-vector"
        a = self.reshape(self.emit_te(kind, im2col, padded, name=f"im2col_{i}"), (oh * ow, k_pad))
        w_hwc = np.zeros((o, kh, kw, cp), np.int8)
        w_hwc[..., :c] = w.transpose(0, 2, 3, 1)
        return self.gemm(a, w_hwc.reshape(o, -1), layer, f"conv_{i}")

    def pointwise(self, x, layer: Layer, i: int):
        if layer.strides != (1, 1):
            return self.conv(x, layer, i, nchw=False)
        return self.gemm(x, layer.weight[:, :, 0, 0], layer, f"pointwise_{i}")

    def depthwise(self, x, layer: Layer, i: int):
        c_pad = shape(x)[1]
        c, _, k, _ = layer.weight.shape
        _, h, wd = layer.input_shape
        _, oh, ow = layer.output_shape
        zp = layer.input_q.zero_point
        padded, hp, wp, _ = self.padded_nhwc(x, layer, i, False, (k, k))
        w = np.zeros((k * k, c_pad), np.int8)
        w[:, :c] = layer.weight[:, 0].reshape(c, k * k).T
        args = [padded, self.const(w), *self.tables(layer, zp, c_pad)]
        return self.call(depthwise_func(hp, wp, c_pad, oh, ow, k, layer.strides[0], layer), f"depthwise_{i}", args, (oh * ow, c_pad))

    def avgpool(self, x, layer: Layer, i: int):
        hw, c_pad = shape(x)
        return self.emit_te("none", global_average_pool(layer, hw, c_pad), x, name=f"avgpool_{i}")

    def add(self, a, b, layer: Layer, i: int):
        m, c_pad = shape(a)
        return self.call(add_func(m, c_pad, layer), f"add_{i}", [a, b], (m, c_pad))

    def fc(self, x, layer: Layer, i: int):
        if layer.params.rounding == "single":  # TFLite's FULLY_CONNECTED: a plain int64 TE kernel (the fc is tiny)
            features, n_pad = shape(x)[1], pad16(layer.output_shape[0])
            consts = scheduled.single_rounding_tables(layer, 0, features, n_pad)
            return self.emit_te("none", scheduled.single_rounding_fc(layer, features, n_pad), x,
                                *map(self.const, consts), name=f"fc_{i}")
        return self.gemm(x, layer.weight, layer, f"fc_{i}")


def _schedule_copy(func, vector: bool):
    """A TE copy kernel (padding, im2col): rows in parallel; the innermost loop vectorised by 16 when it
    runs over whole 16-channel blocks, else unrolled (the 3-channel model input: its index arithmetic
    then folds to constants)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    loops = sch.get_loops(sch.get_sblock("out"))
    if vector:
        sch.vectorize(sch.split(loops[-1], [None, LANES])[1])
    else:
        sch.unroll(loops[-1])
    sch.parallel(loops[0])
    return sch.mod["main"]


def plan_to_relax_neon(plan: Plan, dotprod: bool = False):
    """An IRModule with ``main(x: int8[1, C, H, W]) -> int8[1, classes]``, every kernel scheduled."""
    low = _Lowering(plan, dotprod)
    mod = scheduled.plan_function(plan, low)
    for gv in list(mod.get_global_vars()):
        schedule = low.te_kinds.get(gv.name_hint, "")
        if schedule.startswith("copy"):
            mod[gv] = _schedule_copy(mod[gv], vector=schedule == "copy-vector")
    return mod


def uses_dotprod(tvm_tgt) -> bool:
    from tvm.target import codegen

    return codegen.target_has_features("dotprod", tvm_tgt)


def build(plan: Plan, tvm_tgt):
    """SDOT GEMMs where the target CPU has dotprod (Raspberry Pi 5); SMULL/SMLAL2/SADALP otherwise (Pi 4, A53)."""
    return scheduled.build(plan_to_relax_neon(plan, uses_dotprod(tvm_tgt)), tvm_tgt, fuse=not chain_shaped(plan))
