"""Lower the int8 plan to a Relax module that computes in integers only.

Per conv layer: pad the int8 input with its zero point (a real 0), conv2d(int8, int8) with
int32 accumulation, subtract in_zp * sum(w) (folded into the bias, since every window is then
full), then the arithmetic contract in int64: (acc << left) * M0 + nudge, truncating >> 31,
rounding divide by 2^right, + out_zp, clamp, cast to int8; an fc with rounding "single" rounds once,
(acc * M0 + 2^(30 - shift)) >> (31 - shift); a "mean" pool requantizes its sum so; an add is TFLite's
int8 ADD (both inputs rescaled after a left shift of 20, then the sum), in int64; a max pool pads with
-128 and takes relax's max_pool2d on int8; a mul multiplies both inputs minus their zero points in int32 (relax
broadcasts a (C, 1, 1) gate) and requantizes the product as a conv's accumulator. Bit-exact with edgepack.plan.reference. Each op kind is one
entry of ``TVM_LOWERINGS`` (the generic TVM executor's table of the op registry, edgepack.ops); a plan
holding a kind without one is refused by op name.
"""
from __future__ import annotations

import numpy as np

from edgepack.ops import Lowerings
from edgepack.ops.avgpool import pool_zero_points
from edgepack.ops.fc import rounds_once
from edgepack.ops.resize import resize_maps
from edgepack.ops.softmax import EXP_BARREL, softmax_scaling
from edgepack.plan.plan import ADD_LEFT_SHIFT, PLAN_INPUT, Layer, Plan

TVM_LOWERINGS = Lowerings("TVM generic")


def _const(value, dtype: str):
    from tvm import relax

    return relax.const(np.asarray(value, dtype=dtype), dtype)


def _requantize(bb, acc, layer: Layer, channel_shape: tuple[int, ...]):
    """int32 accumulators -> int8, gemmlowp rounding, per-channel multiplier and shift."""
    from tvm import relax

    op = relax.op
    mult = layer.arrays["multiplier"].astype(np.int64).reshape(channel_shape)
    shift = layer.arrays["shift"].astype(np.int64).reshape(channel_shape)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    x = bb.emit(op.astype(acc, "int64"))
    if rounds_once(layer):
        total_shift = _const(31 - shift, "int64")
        rounded = op.add(op.multiply(x, _const(mult, "int64")), _const(np.int64(1) << (30 - shift), "int64"))
        return _clamp(bb, bb.emit(op.right_shift(rounded, total_shift)), layer)
    if left.any():
        x = bb.emit(op.clip(op.left_shift(x, _const(left, "int64")), -(2**31), 2**31 - 1))
    ab = bb.emit(op.multiply(x, _const(mult, "int64")))
    nonneg = bb.emit(op.greater_equal(ab, _const(0, "int64")))
    v = bb.emit(op.add(ab, op.where(nonneg, _const(1 << 30, "int64"), _const(1 - (1 << 30), "int64"))))
    v_nonneg = bb.emit(op.greater_equal(v, _const(0, "int64")))
    s31 = _const(31, "int64")
    high = bb.emit(op.where(v_nonneg, op.right_shift(v, s31), op.negative(op.right_shift(op.negative(v), s31))))
    if right.any():
        mask = (np.int64(1) << right) - 1
        remainder = bb.emit(op.bitwise_and(high, _const(mask, "int64")))
        threshold = bb.emit(op.add(_const(mask >> 1, "int64"),
                                   op.astype(op.less(high, _const(0, "int64")), "int64")))
        rounded = op.astype(op.greater(remainder, threshold), "int64")
        high = bb.emit(op.add(op.right_shift(high, _const(right, "int64")), rounded))
    return _clamp(bb, high, layer)


def _clamp(bb, high, layer: Layer):
    """Requantized int64 values + the output zero point, clamped to the activation range, as int8."""
    from tvm import relax

    op = relax.op
    out = bb.emit(op.add(high, _const(layer.output_q.zero_point, "int64")))
    out = bb.emit(op.clip(out, layer.act_min, layer.act_max))
    return bb.emit(op.astype(out, "int8"))


def _convolution(bb, x, layer: Layer, groups: int):
    from tvm import relax

    op = relax.op
    w = layer.weight
    zp = layer.input_q.zero_point
    top, left, bottom, right = layer.pads
    if any(layer.pads):  # pad_width is (before, after) per axis, NCHW
        x = bb.emit(op.nn.pad(x, [0, 0, 0, 0, top, bottom, left, right], pad_value=float(zp)))
    acc = bb.emit(op.nn.conv2d(x, _const(w, "int8"), strides=layer.strides, padding=0, groups=groups, out_dtype="int32"))
    acc = bb.emit(op.add(acc, _const(layer.folded_bias(zp).astype(np.int32).reshape(1, -1, 1, 1), "int32")))
    return _requantize(bb, acc, layer, (1, -1, 1, 1))


@TVM_LOWERINGS.register("conv", "pointwise")
def _conv(bb, x, layer: Layer):
    return _convolution(bb, x, layer, groups=1)


@TVM_LOWERINGS.register("depthwise")
def _depthwise(bb, x, layer: Layer):
    """One group per input channel (the weights are (C*m, 1, kh, kw): m outputs per group, depth multiplier m)."""
    return _convolution(bb, x, layer, groups=layer.input_shape[0])


@TVM_LOWERINGS.register("avgpool")
def _avgpool(bb, x, layer: Layer):
    from tvm import relax

    op = relax.op
    c, h, w = layer.input_shape
    count = h * w
    zp_in, zp_out = pool_zero_points(layer)
    total = bb.emit(op.sum(op.subtract(op.astype(x, "int32"), _const(zp_in, "int32")), axis=[2, 3], keepdims=True))
    if layer.params.pool == "mean":  # TFLite's int8 MEAN: the sum requantized (1/count is in the multiplier)
        out = _requantize(bb, total, layer, (1, -1, 1, 1))
        return bb.emit(op.reshape(out, (-1,) + tuple(layer.output_shape)))
    half, n = _const(count // 2, "int32"), _const(count, "int32")
    nonneg = bb.emit(op.greater_equal(total, _const(0, "int32")))
    mean = bb.emit(op.where(nonneg, op.floor_divide(op.add(total, half), n),
                            op.negative(op.floor_divide(op.add(op.negative(total), half), n))))
    out = bb.emit(op.clip(op.add(mean, _const(zp_out, "int32")), -128, 127))
    out = bb.emit(op.astype(out, "int8"))
    if tuple(layer.output_shape) != (c, 1, 1):
        out = bb.emit(op.reshape(out, (-1,) + tuple(layer.output_shape)))
    return out


@TVM_LOWERINGS.register("fc")
def _fc(bb, x, layer: Layer):
    from tvm import relax

    op = relax.op
    w = layer.weight
    x = bb.emit(op.reshape(x, (-1, w.shape[1])))
    acc = bb.emit(op.matmul(x, _const(np.ascontiguousarray(w.T), "int8"), out_dtype="int32"))
    acc = bb.emit(op.add(acc, _const(layer.folded_bias(layer.input_q.zero_point).astype(np.int32).reshape(1, -1), "int32")))
    return _requantize(bb, acc, layer, (1, -1))


@TVM_LOWERINGS.register("maxpool")
def _maxpool(bb, x, layer: Layer):
    """TFLite's int8 MAX_POOL_2D: pad with -128 (the least int8 value, so a padded position can only tie a
    real value, never beat it: every window holds one), relax max_pool2d, clamp to [act_min, act_max]."""
    from tvm import relax

    op = relax.op
    top, left, bottom, right = layer.pads
    if any(layer.pads):
        x = bb.emit(op.nn.pad(x, [0, 0, 0, 0, top, bottom, left, right], pad_value=-128.0))
    out = bb.emit(op.nn.max_pool2d(x, pool_size=layer.params.window_hw, strides=layer.strides, padding=(0, 0, 0, 0)))
    if (layer.act_min, layer.act_max) != (-128, 127):
        out = bb.emit(op.clip(out, layer.act_min, layer.act_max))
    return out


@TVM_LOWERINGS.register("resize_nearest")
def _resize_nearest(bb, x, layer: Layer):
    """TFLite's int8 RESIZE_NEAREST_NEIGHBOR: two gathers (rows, then columns) by the index maps TFLite's
    float32 arithmetic gives (edgepack.ops.resize.resize_maps), a copy."""
    from tvm import relax

    rows, cols = resize_maps(layer)
    x = bb.emit(relax.op.take(x, _const(rows, "int32"), axis=2, mode="clip"))  # in bounds: "fast" would warn
    return bb.emit(relax.op.take(x, _const(cols, "int32"), axis=3, mode="clip"))


@TVM_LOWERINGS.register("concat")
def _concat(bb, *inputs_and_layer):
    """TFLite's int8 CONCATENATION on channels: relax concat on axis 1 (NCHW), a copy (the plan's concat
    shares one quantization and has no clamp)."""
    from tvm import relax

    *inputs, _ = inputs_and_layer  # each a (batch, C_k, H, W) map (ops.concat's problems)
    return bb.emit(relax.op.concat(inputs, axis=1))


@TVM_LOWERINGS.register("lut")
def _lut(bb, x, layer: Layer):
    """An elementwise int8 function: a gather from the layer's 256-entry table at x + 128."""
    from tvm import relax

    index = bb.emit(relax.op.add(relax.op.astype(x, "int32"), _const(128, "int32")))
    return bb.emit(relax.op.take(_const(layer.arrays["table"], "int8"), index, axis=0))


@TVM_LOWERINGS.register("pad")
def _pad(bb, x, layer: Layer):
    """TFLite's int8 PAD / PADV2 on H and W: relax pad with the layer's int8 constant (a copy, no rescaling)."""
    from tvm import relax

    top, left, bottom, right = layer.pads
    return bb.emit(relax.op.nn.pad(x, [0, 0, 0, 0, top, bottom, left, right], pad_value=float(layer.params.value)))


def _rescale(bb, x, multiplier: int, shift: int):
    """TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0) on int64-held int32 values:
    SaturatingRoundingDoublingHighMul as floor((x * M + 2^30) / 2^31) (M is never INT32_MIN), then
    RoundingDivideByPOT (round half away from zero)."""
    from tvm import relax

    op = relax.op
    high = bb.emit(op.right_shift(op.add(op.multiply(x, _const(multiplier, "int64")), _const(1 << 30, "int64")),
                                  _const(31, "int64")))
    right = -shift
    if not right:
        return high
    mask = (1 << right) - 1
    threshold = op.add(_const(mask >> 1, "int64"), op.astype(op.less(high, _const(0, "int64")), "int64"))
    up = op.astype(op.greater(op.bitwise_and(high, _const(mask, "int64")), threshold), "int64")
    return bb.emit(op.add(op.right_shift(high, _const(right, "int64")), up))


@TVM_LOWERINGS.register("add")
def _add(bb, a, b, layer: Layer):
    """TFLite's int8 ADD as edgepack.ops.add: each input minus its zero point, << 20, rescaled by its own
    multiplier; the sum rescaled to the output, + zero point, clamped (in int64, exact)."""
    from tvm import relax

    op = relax.op
    (ma, mb, mo), (sa, sb, so) = layer.arrays["multiplier"].tolist(), layer.arrays["shift"].tolist()

    def widened(x, zero_point: int):
        centred = op.subtract(op.astype(x, "int64"), _const(zero_point, "int64"))
        return bb.emit(op.left_shift(centred, _const(ADD_LEFT_SHIFT, "int64")))

    total = bb.emit(op.add(_rescale(bb, widened(a, layer.input_q.zero_point), ma, sa),
                           _rescale(bb, widened(b, layer.params.input2_q.zero_point), mb, sb)))
    return _clamp(bb, _rescale(bb, total, mo, so), layer)


@TVM_LOWERINGS.register("mul")
def _mul(bb, a, b, layer: Layer):
    """TFLite's int8 MUL as edgepack.ops.mul: (a - zp_a) * (b - zp_b) in int32 (relax broadcasts a (C, 1, 1)
    gate), requantized by the one multiplier and shift."""
    from tvm import relax

    op = relax.op

    def centred(x, zero_point: int):
        return bb.emit(op.subtract(op.astype(x, "int32"), _const(zero_point, "int32")))

    product = bb.emit(op.multiply(centred(a, layer.input_q.zero_point), centred(b, layer.params.input2_q.zero_point)))
    return _requantize(bb, product, layer, (1,) * (1 + len(layer.output_shape)))


class _Fixed:
    """gemmlowp's int32 fixed point on int64-held relax tensors, op for op as edgepack.ops.softmax's numpy
    (no SaturatingRoundingDoublingHighMul operand of the softmax is ever INT32_MIN: no saturation case)."""

    def __init__(self, bb):
        from tvm import relax

        self.bb, self.op = bb, relax.op

    def c(self, value: int):
        return _const(value, "int64")

    def e(self, expr):
        return self.bb.emit(expr)

    def wrap(self, x):
        """int32 two's complement wrap (gemmlowp's raw + and - on int32)."""
        op = self.op
        return self.e(op.subtract(op.bitwise_and(op.add(x, self.c(1 << 31)), self.c(0xFFFFFFFF)), self.c(1 << 31)))

    def srdhm(self, a, b):
        op = self.op
        ab = self.e(op.multiply(a, b))
        v = self.e(op.add(ab, op.where(op.greater_equal(ab, self.c(0)), self.c(1 << 30), self.c(1 - (1 << 30)))))
        s31 = self.c(31)
        return self.e(op.where(op.greater_equal(v, self.c(0)), op.right_shift(v, s31),
                               op.negative(op.right_shift(op.negative(v), s31))))

    def rdbp(self, x, exponent):
        """RoundingDivideByPOT by an int or an int64 tensor of exponents."""
        op = self.op
        e = self.c(exponent) if isinstance(exponent, int) else exponent
        mask = self.e(op.subtract(op.left_shift(self.c(1), e), self.c(1)))
        threshold = op.add(op.right_shift(mask, self.c(1)), op.astype(op.less(x, self.c(0)), "int64"))
        return self.e(op.add(op.right_shift(x, e), op.astype(op.greater(op.bitwise_and(x, mask), threshold), "int64")))

    def shl_sat(self, x, n: int):
        return self.e(self.op.clip(self.op.multiply(x, self.c(1 << n)), -(2**31), 2**31 - 1))


def _exp_on_negative(f: _Fixed, a):
    """gemmlowp exp_on_negative_values, Q5.26 in, Q0.31 out (edgepack.ops.softmax.exp_on_negative_values)."""
    op, quarter = f.op, 1 << 24
    a_mod = f.wrap(op.subtract(op.bitwise_and(a, f.c(quarter - 1)), f.c(quarter)))
    x = f.wrap(op.add(f.shl_sat(a_mod, 5), f.c(1 << 28)))  # exp on [-1/4, 0): Taylor around -1/8
    x2 = f.srdhm(x, x)
    x3 = f.srdhm(x2, x)
    x4_over_4 = f.rdbp(f.srdhm(x2, x2), 2)
    poly = f.rdbp(f.wrap(op.add(f.srdhm(f.wrap(op.add(x4_over_4, x3)), f.c(715827883)), x2)), 1)
    result = f.wrap(op.add(f.c(1895147668), f.srdhm(f.c(1895147668), f.wrap(op.add(x, poly)))))
    remainder = f.wrap(op.subtract(a_mod, a))
    for exponent, multiplier in EXP_BARREL:
        bit = op.not_equal(op.bitwise_and(remainder, f.c(1 << (26 + exponent))), f.c(0))
        result = f.e(op.where(bit, f.srdhm(result, f.c(multiplier)), result))
    return f.e(op.where(op.equal(a, f.c(0)), f.c(2**31 - 1), result))


def _one_over_one_plus_x(f: _Fixed, a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (a >= 0 here: its half sum is positive)."""
    op = f.op
    half = f.e(op.right_shift(op.add(op.add(a, f.c(2**31 - 1)), f.c(1)), f.c(1)))
    x = f.wrap(op.add(f.c(1515870810), f.srdhm(half, f.c(-1010580540))))
    for _ in range(3):
        one_minus = f.wrap(op.subtract(f.c(1 << 29), f.srdhm(half, x)))
        x = f.wrap(op.add(x, f.shl_sat(f.srdhm(x, one_minus), 2)))
    return f.shl_sat(x, 1)


@TVM_LOWERINGS.register("softmax")
def _softmax(bb, x, layer: Layer):
    """TFLite's int8 SOFTMAX as edgepack.ops.softmax: per row, the differences to the max rescaled into Q5.26,
    gemmlowp's exp, the Q12.19 sum, its reciprocal (the leading zeros counted by 32 comparisons), in int64."""
    f = _Fixed(bb)
    op = f.op
    multiplier, left_shift, diff_min = softmax_scaling(layer.input_q.scale, layer.params.beta)
    v = f.e(op.astype(x, "int64"))
    diff = f.e(op.subtract(v, op.max(v, axis=[-1], keepdims=True)))
    used = f.e(op.greater_equal(diff, f.c(diff_min)))
    rescaled = f.srdhm(f.wrap(op.multiply(diff, f.c(1 << left_shift))), f.c(multiplier))
    exps = _exp_on_negative(f, f.e(op.where(used, rescaled, f.c(0))))
    total = f.e(op.sum(op.where(used, f.rdbp(exps, 12), f.c(0)), axis=[-1], keepdims=True))
    bits = f.c(0)
    for k in range(32):
        bits = f.e(op.add(bits, op.astype(op.greater_equal(total, f.c(1 << k)), "int64")))
    headroom = f.e(op.subtract(f.c(32), bits))
    shifted = f.e(op.subtract(op.bitwise_and(op.left_shift(total, headroom), f.c(0xFFFFFFFF)), f.c(1 << 31)))
    scale = _one_over_one_plus_x(f, shifted)
    out = f.rdbp(f.srdhm(scale, exps), f.e(op.subtract(f.c(12 + 31 - 8), headroom)))
    out = f.e(op.where(used, op.clip(op.subtract(out, f.c(128)), -128, 127), f.c(-128)))
    return bb.emit(op.astype(out, "int8"))


def read_as_input(bb, x, layer: Layer):
    """A layer's first input as its input_shape: a tensor held in another shape of the same size (an fc's
    (batch, F) vector read by a conv or depthwise as its (C, H, W) map) is reshaped, as the numpy reference
    reads it (edgepack.plan.reference.kernel); the plan stores that vector in CHW order, so no transpose."""
    from tvm import relax

    shape = [int(d) for d in x.ty.shape]
    want = tuple(layer.input_shape)
    if len(shape) == len(want) + 1 or int(np.prod(shape[1:])) != int(np.prod(want)):
        return x  # already the map (or a shape the layer's own lowering handles, an fc's flatten)
    return bb.emit(relax.op.reshape(x, (shape[0], *want)))


def emit_generic(bb, layer: Layer, inputs: list):
    """One layer through its generic lowering, its first input read as the layer's input_shape."""
    if inputs:
        inputs = [read_as_input(bb, inputs[0], layer), *inputs[1:]]
    return TVM_LOWERINGS[layer.kind](bb, *inputs, layer)


def plan_to_relax(plan: Plan, batch: int = 1):
    """An IRModule with ``main(x: int8[batch, C, H, W]) -> int8[batch, classes]`` (for several outputs int8[batch,
    their sizes' sum], see joined_outputs): the plan's graph, each
    layer reading its input tensors by layer index (a residual input stays bound until its add)."""
    from tvm import relax

    TVM_LOWERINGS.check(plan)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((batch,) + tuple(plan.input_shape), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            tensors = {PLAN_INPUT: x}
            for i, layer in enumerate(plan.layers):
                tensors[i] = emit_generic(bb, layer, [tensors[j] for j in plan.inputs_of(i)])
            out = bb.emit_output(joined_outputs(bb, plan, tensors.get, batch))
        bb.emit_func_output(out)
    return bb.get()


def joined_outputs(bb, plan: Plan, tensor, batch: int = 1):
    """The plan's output: its one output layer's tensor, or for several outputs each flattened (the plan's C, H, W
    order) and concatenated in plan order, the buffer every executor hands over (Plan.output_row_shape)."""
    from tvm import relax

    if not plan.multi_output():
        return tensor(plan.output_layers[0])
    flat = [bb.emit(relax.op.reshape(tensor(i), (batch, int(np.prod(plan.layers[i].output_shape)))))
            for i in plan.output_layers]
    return bb.emit(relax.op.concat(flat, axis=1))
