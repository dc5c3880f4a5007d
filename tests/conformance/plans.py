"""The one generator of random int8 plans the conformance tests run on every executor.

Seeded numpy, small shapes, every built-in op kind: conv 3x3 (stride 2 with TensorFlow-SAME or symmetric
pads, stride 1 with pads 1), depthwise 3x3, pointwise, add (a residual input alive across a layer), a
global pool in each of its three modes and an fc in each rounding; max pools in plans of their own
(MAXPOOL_CASES, so that the first plans stay as they were). Quantization is drawn the way TFLite
prepares it (multipliers from the float32 scales, adds' and means' multipliers as their kernels compute
them, clamps that are TFLite fused activations), so the same plan is also a valid .tflite and LiteRT
must agree with the reference too. Output scales are drawn so that requantized values spread over int8
rather than saturate (a conformance test of all-saturated logits would prove little).
"""
from __future__ import annotations

import numpy as np

from edgepack.ops.add import AddParams
from edgepack.ops.avgpool import AvgPoolParams
from edgepack.ops.concat import ConcatParams
from edgepack.ops.fc import FcParams
from edgepack.ops.base import pair
from edgepack.ops.maxpool import MaxPoolParams
from edgepack.plan.plan import Layer, Plan, QParams, add_multipliers, mean_requantization, quantize_multiplier

NO_PADS = (0, 0, 0, 0)


def tflite_requantization(in_q: QParams, w_scale: np.ndarray, out_q: QParams) -> dict[str, np.ndarray]:
    """Multipliers and shifts as TFLite's PopulateConvolutionQuantizationParams: float32 scales widened to
    double, in_scale * w_scale[c] / out_scale, QuantizeMultiplier."""
    in_s, out_s = float(np.float32(in_q.scale)), float(np.float32(out_q.scale))
    pairs = [quantize_multiplier(in_s * float(s) / out_s) for s in w_scale]
    return {"multiplier": np.array([m for m, _ in pairs], np.int32), "shift": np.array([s for _, s in pairs], np.int32),
            "weight_scale": w_scale.astype(np.float32)}


def _clamp(rng, out_q: QParams) -> dict:
    """ReLU (TFLite's RELU: from the zero point) on about half the layers, else no clamp."""
    if rng.random() < 0.5:
        return {"act_min": max(-128, out_q.zero_point), "act_max": 127, "activation": "relu"}
    return {"act_min": -128, "act_max": 127, "activation": "none"}


def weighted_layer(rng, name: str, kind: str, in_q: QParams, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   weight_shape: tuple[int, ...], spread: float = 74.0, steps: float = 40.0, **geometry) -> Layer:
    """A conv / depthwise / pointwise / fc with random int8 weights and per-channel float32 weight scales;
    the output scale puts the accumulators' spread at about ``steps`` output steps when the inputs spread
    about ``spread`` around their zero point (74 for uniform int8)."""
    out_c, taps = weight_shape[0], int(np.prod(weight_shape[1:]))
    weight = rng.integers(-127, 128, weight_shape).astype(np.int8)
    acc_std = np.sqrt(taps * np.mean(weight.astype(np.float64) ** 2)) * spread
    w_scale = rng.uniform(0.002, 0.02, out_c).astype(np.float32)
    out_q = QParams(float(np.float32(in_q.scale * float(np.mean(w_scale)) * acc_std / steps)), int(rng.integers(-100, 60)))
    bias = rng.integers(-int(acc_std), int(acc_std) + 1, out_c).astype(np.int32)
    arrays = {"weight": weight, "bias": bias, **tflite_requantization(in_q, w_scale, out_q)}
    return Layer(name=name, kind=kind, input_shape=in_shape, output_shape=out_shape, input_q=in_q, output_q=out_q,
                 arrays=arrays, **_clamp(rng, out_q), **geometry)


def conv_layer(rng, name: str, kind: str, in_q: QParams, in_shape: tuple[int, int, int], out_c: int, k,
               stride=1, pads: tuple[int, int, int, int] = NO_PADS, multiplier: int = 1) -> Layer:
    """conv (O, I, kh, kw), depthwise (C * ``multiplier``, 1, kh, kw) or pointwise (O, I, 1, 1) over a (C, H, W)
    input; ``k`` and ``stride`` one int (square, equal) or (along H, along W)."""
    c, h, w = in_shape
    top, left, bottom, right = pads
    (kh, kw), (sh, sw) = pair(k), pair(stride)
    out_c = c * multiplier if kind == "depthwise" else out_c
    out_shape = (out_c, (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1)
    weight_shape = (out_c, 1 if kind == "depthwise" else c, kh, kw)
    return weighted_layer(rng, name, kind, in_q, in_shape, out_shape, weight_shape, stride=stride, pads=pads)


def fc_layer(rng, name: str, in_q: QParams, features: int, classes: int, rounding: str) -> Layer:
    """An fc after a global pool, whose averages spread much less than single pixels."""
    layer = weighted_layer(rng, name, "fc", in_q, (features,), (classes,), (classes, features), spread=8.0)
    layer.params = FcParams(rounding)
    return layer


def add_layer(rng, name: str, a: int, b: int, qa: QParams, qb: QParams, shape: tuple[int, ...]) -> Layer:
    """TFLite's int8 ADD of layers ``a`` and ``b``: the output scale 0.8-2.5x the larger input scale."""
    out_q = QParams(float(np.float32(max(qa.scale, qb.scale) * rng.uniform(0.8, 2.5))), int(rng.integers(-100, 60)))
    multiplier, shift = add_multipliers(qa, qb, out_q)
    return Layer(name=name, kind="add", input_shape=shape, output_shape=shape, input_q=qa, output_q=out_q,
                 arrays={"multiplier": multiplier, "shift": shift}, inputs=(a, b), params=AddParams(qb), **_clamp(rng, out_q))


def pool_layer(rng, name: str, in_q: QParams, in_shape: tuple[int, int, int], pool: str, flat: bool) -> Layer:
    """A global pool, (C, H, W) -> (C,) when ``flat`` else (C, 1, 1). "average" and "raw_average" keep the
    input's quantization (their kernels do not rescale); "mean" requantizes to a new scale (TFLite's MEAN)."""
    c, h, w = in_shape
    out_shape = (c,) if flat else (c, 1, 1)
    if pool != "mean":
        return Layer(name=name, kind="avgpool", input_shape=in_shape, output_shape=out_shape, input_q=in_q,
                     output_q=in_q, params=AvgPoolParams(pool))
    out_q = QParams(float(np.float32(in_q.scale * rng.uniform(0.3, 0.9))), int(rng.integers(-100, 60)))
    multiplier, shift = mean_requantization(in_q.scale, out_q.scale, h * w)
    arrays = {"multiplier": np.full(c, multiplier, np.int32), "shift": np.full(c, shift, np.int32)}
    return Layer(name=name, kind="avgpool", input_shape=in_shape, output_shape=out_shape, input_q=in_q, output_q=out_q,
                 arrays=arrays, params=AvgPoolParams(pool), **_clamp(rng, out_q))


def random_plan(seed: int, pool: str = "average", rounding: str = "double", res: int = 12, width: int = 12,
                classes: int = 6, same_pads: bool = True) -> Plan:
    """conv 3x3/2 (l0) -> depthwise 3x3/1 (l1) -> pointwise (l2) -> add(l1, l2) (l3) -> conv 3x3/1 (l4) ->
    global pool (l5, ``pool``) -> fc (l6, ``rounding``). The first conv pads as TensorFlow's SAME,
    (top, left, bottom, right) = (0, 0, 1, 1), with ``same_pads``, else 1 all round (PyTorch)."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    layers = [conv_layer(rng, "conv0", "conv", q, (3, res, res), width, 3, 2, (0, 0, 1, 1) if same_pads else (1,) * 4)]
    shape = layers[0].output_shape
    layers.append(conv_layer(rng, "depthwise1", "depthwise", layers[0].output_q, shape, width, 3, 1, (1,) * 4))
    layers.append(conv_layer(rng, "pointwise2", "pointwise", layers[1].output_q, shape, width, 1))
    layers.append(add_layer(rng, "add3", 1, 2, layers[1].output_q, layers[2].output_q, shape))
    layers.append(conv_layer(rng, "conv4", "conv", layers[3].output_q, shape, width + 4, 3, 1, (1,) * 4))
    shape = layers[4].output_shape
    layers.append(pool_layer(rng, "pool5", layers[4].output_q, shape, pool, flat=seed % 2 == 1))
    layers.append(fc_layer(rng, "fc6", layers[5].output_q, shape[0], classes, rounding))
    plan = Plan(q, (3, res, res), layers)
    assert plan.problems() == [], plan.problems()
    return plan


# Each case holds every op kind; together they hold each pool mode and each fc rounding once. The final
# maps are 6x6, 5x5 and 4x4 (even counts: the pool's ties); widths 12 and 20 are not multiples of 16 (padded
# lanes) and 20 + 4 input planes leave the fast C 3x3 conv for its portable fallback. Rounding once or twice
# differs only on near-ties (about 2^-(right shift + 1) of the logits), hence 64 images: each case then has
# logits that the other rounding (and, for the raw pool, the plan's average) would change.
CASES = {
    "average pool, double-rounding fc, SAME pads": dict(seed=0, pool="average", rounding="double", res=12, width=12),
    "mean pool, single-rounding fc, pads 1": dict(seed=1, pool="mean", rounding="single", res=10, width=20, same_pads=False),
    "raw average pool, single-rounding fc": dict(seed=13, pool="raw_average", rounding="single", res=8, width=12),
}
IMAGES = 64


def case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of CASES[name] and IMAGES random int8 inputs for it."""
    spec = CASES[name]
    plan = random_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


def maxpool_layer(name: str, q: QParams, in_shape: tuple[int, int, int], window, stride,
                  pads: tuple[int, int, int, int], relu: bool) -> Layer:
    """TFLite's int8 MAX_POOL_2D: the input's quantization kept, a fused ReLU (from the zero point) if ``relu``;
    ``window`` and ``stride`` one int or (along H, along W)."""
    c, h, w = in_shape
    top, left, bottom, right = pads
    (kh, kw), (sh, sw) = pair(window), pair(stride)
    out_shape = (c, (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1)
    return Layer(name=name, kind="maxpool", input_shape=in_shape, output_shape=out_shape, input_q=q, output_q=q,
                 stride=stride, pads=pads, params=MaxPoolParams(window), act_min=q.zero_point if relu else -128,
                 activation="relu" if relu else "none")


def maxpool_plan(seed: int, res: int, first: tuple, second: tuple, width: int = 12, classes: int = 5) -> Plan:
    """conv 3x3/1 pads 1 (l0) -> max pool ``first`` (l1) -> conv 3x3/1 pads 1 (l2) -> max pool ``second`` (l3)
    -> global average pool (l4) -> fc (l5); ``first`` and ``second`` are (window, stride, pads, relu)."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    layers = [conv_layer(rng, "conv0", "conv", q, (3, res, res), width, 3, 1, (1,) * 4)]
    layers.append(maxpool_layer("maxpool1", layers[0].output_q, layers[0].output_shape, *first))
    layers.append(conv_layer(rng, "conv2", "conv", layers[1].output_q, layers[1].output_shape, width + 4, 3, 1, (1,) * 4))
    layers.append(maxpool_layer("maxpool3", layers[2].output_q, layers[2].output_shape, *second))
    layers.append(pool_layer(rng, "pool4", layers[3].output_q, layers[3].output_shape, "average", flat=False))
    layers.append(fc_layer(rng, "fc5", layers[4].output_q, width + 4, classes, "single"))
    plan = Plan(q, (3, res, res), layers)
    assert plan.problems() == [], plan.problems()
    return plan


# Max pools in the geometries TFLite writes (VALID: no pads; SAME: TensorFlow's pads, the extra one
# bottom/right) and PyTorch's MaxPool2d(3, 2, 1) (pads 1 all round: SAME on an odd map, not on an even one,
# where the .tflite export pads with -128 first); a separate table so that the CASES
# plans above stay byte-identical. Odd sizes (11) leave partial windows at the border. The seeds are
# chosen so that the padding and the fused ReLU each change outputs (the conformance test checks it).
MAXPOOL_CASES = {
    "max pool 2x2/2 VALID + ReLU, then 3x3/2 SAME": dict(seed=24, res=12, first=(2, 2, NO_PADS, True),
                                                         second=(3, 2, (0, 0, 1, 1), False)),
    "max pool 3x3/2 pads 1, then 3x3/1 SAME + ReLU on odd sizes": dict(seed=30, res=11, first=(3, 2, (1,) * 4, False),
                                                                        second=(3, 1, (1,) * 4, True)),
    "max pool 3x3/2 pads 1 on an even map (not SAME), then 2x2/1 VALID + ReLU": dict(
        seed=48, res=12, first=(3, 2, (1,) * 4, False), second=(2, 1, NO_PADS, True)),
}


def maxpool_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of MAXPOOL_CASES[name] and IMAGES random int8 inputs for it."""
    spec = MAXPOOL_CASES[name]
    plan = maxpool_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


def plan_with_unknown_op(kind: str = "neg") -> Plan:
    """A plan whose middle layer is an op kind no executor implements (built directly, as a plan file
    written by a newer edgepack could hold it): conv -> ``kind`` -> pool -> fc."""
    plan = random_plan(0)
    conv = plan.layers[0]
    q, shape = conv.output_q, conv.output_shape
    odd = Layer(name=f"{kind}1", kind=kind, input_shape=shape, output_shape=shape, input_q=q, output_q=q)
    pool = pool_layer(np.random.default_rng(0), "pool2", q, shape, "average", flat=False)
    fc = fc_layer(np.random.default_rng(0), "fc3", q, shape[0], 4, "double")
    return Plan(plan.input_q, plan.input_shape, [conv, odd, pool, fc])


def requantized_to(layer: Layer, out_q: QParams) -> Layer:
    """``layer`` (a conv) with output quantization ``out_q`` (a concat's shared one): its weight scales follow
    the output scale, so each multiplier, and so the spread of its int8 outputs, stays as drawn."""
    factor = out_q.scale / layer.output_q.scale
    w_scale = (layer.arrays["weight_scale"].astype(np.float64) * factor).astype(np.float32)
    arrays = {**layer.arrays, **tflite_requantization(layer.input_q, w_scale, out_q)}
    relu = layer.activation == "relu"
    return Layer(name=layer.name, kind=layer.kind, input_shape=layer.input_shape, output_shape=layer.output_shape,
                 input_q=layer.input_q, output_q=out_q, stride=layer.stride, pads=layer.pads, arrays=arrays,
                 inputs=layer.inputs, act_min=max(-128, out_q.zero_point) if relu else -128, activation=layer.activation)


def concat_layer(name: str, plan_layers: list[Layer], sources: tuple[int, ...], plan_input: tuple) -> Layer:
    """TFLite's int8 CONCATENATION on channels of ``sources`` (-1 = the plan input, given as (shape, q)); every
    input has the output's quantization (the copy TFLite's int8 kernel requires)."""
    shapes = [plan_input[0] if j == -1 else plan_layers[j].output_shape for j in sources]
    qs = [plan_input[1] if j == -1 else plan_layers[j].output_q for j in sources]
    _, h, w = shapes[0]
    return Layer(name=name, kind="concat", input_shape=shapes[0], output_shape=(sum(s[0] for s in shapes), h, w),
                 input_q=qs[0], output_q=qs[0], inputs=tuple(sources), params=ConcatParams(tuple(qs[1:])))


def concat_plan(seed: int, res: int, three: bool, width: int = 8, classes: int = 5) -> Plan:
    """Two inputs: concat(plan input, conv 3x3 of it) (l1) -> conv (l2) -> pool -> fc. Three (an Inception-style
    block): conv (l0) -> [pointwise (l1), conv 3x3 (l2), max pool 3x3/1 (l3)] each of l0 -> concat (l4) ->
    conv (l5) -> pool -> fc. The branches are requantized to the concat's one quantization."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    shape = (3, res, res)
    if not three:
        layers = [requantized_to(conv_layer(rng, "conv0", "conv", q, shape, width, 3, 1, (1,) * 4), q)]
        layers.append(concat_layer("concat1", layers, (-1, 0), (shape, q)))
    else:
        layers = [conv_layer(rng, "conv0", "conv", q, shape, width, 3, 2, (0, 0, 1, 1))]
        q0, s0 = layers[0].output_q, layers[0].output_shape
        layers.append(requantized_to(conv_layer(rng, "pointwise1", "pointwise", q0, s0, width // 2, 1), q0))
        layers.append(requantized_to(conv_layer(rng, "conv2", "conv", q0, s0, width + 2, 3, 1, (1,) * 4), q0))
        layers[-1].inputs = (0,)
        layers.append(maxpool_layer("maxpool3", q0, s0, 3, 1, (1,) * 4, False))
        layers[-1].inputs = (0,)
        layers.append(concat_layer("concat4", layers, (1, 2, 3), None))
    cat = layers[-1]
    layers.append(conv_layer(rng, f"conv{len(layers)}", "conv", cat.output_q, cat.output_shape, width + 4, 3, 1, (1,) * 4))
    last = layers[-1]
    layers.append(pool_layer(rng, f"pool{len(layers)}", last.output_q, last.output_shape, "average", flat=False))
    layers.append(fc_layer(rng, f"fc{len(layers)}", layers[-1].output_q, width + 4, classes, "single"))
    plan = Plan(q, shape, layers)
    assert plan.problems() == [], plan.problems()
    return plan


# Concatenations on channels (a separate table: the plans above stay byte-identical): two inputs, the first
# being the plan input, and three branches of one map (1x1, 3x3, max pool) as an Inception block joins them.
# TFLite's int8 CONCATENATION does not rescale: every input shares the output's quantization (an unequal one is
# refused by the op, tests/unit/test_concat_op.py).
CONCAT_CASES = {
    "concat of the plan input and a conv of it": dict(seed=5, res=9, three=False),
    "concat of three branches: 1x1, 3x3, max pool": dict(seed=7, res=12, three=True),
}


def concat_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of CONCAT_CASES[name] and IMAGES random int8 inputs for it."""
    spec = CONCAT_CASES[name]
    plan = concat_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


LUT_FLOAT = {"relu": lambda x, a: np.maximum(x, 0), "relu6": lambda x, a: np.clip(x, 0, 6),
             "relu_n1_to_1": lambda x, a: np.clip(x, -1, 1), "hard_swish": lambda x, a: x * np.clip(x + 3, 0, 6) / 6,
             "leaky_relu": lambda x, a: np.where(x >= 0, x, a * x)}


def lut_output_q(params, in_q: QParams) -> QParams:
    """The quantization an observer gives the function's float outputs over every int8 input (TFLite's fixed
    one for a logistic)."""
    from edgepack.ops.lut import LOGISTIC_OUTPUT

    if params.function == "logistic":
        return LOGISTIC_OUTPUT
    y = LUT_FLOAT[params.function](in_q.dequantize(np.arange(-128, 128)).astype(np.float64), params.alpha)
    low, high = min(0.0, float(y.min())), max(float(y.max()), 1e-3)
    scale = float(np.float32((high - low) / 255))
    return QParams(scale, int(np.clip(round(-128 - low / scale), -128, 127)))


def lut_plan(seed: int, res: int, functions: tuple, input_zp: int, width: int = 10, classes: int = 5) -> Plan:
    """lut ``functions[0]`` at the plan input (l0) -> conv 3x3/1 pads 1 (l1) -> lut ``functions[1]`` (l2) -> conv
    3x3/2 pads 1 (l3) -> lut ``functions[2]`` (l4) -> global average pool (l5) -> fc (l6); each function is
    (name, alpha) and each lut's output quantization spans its outputs (lut_output_q)."""
    from edgepack.ops.lut import LutParams, lut_layer

    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), input_zp)
    layers: list[Layer] = []

    def lut(k: int, in_q: QParams, shape) -> Layer:
        params = LutParams(*functions[k])
        return lut_layer(f"{params.function}{len(layers)}", params, shape, in_q, lut_output_q(params, in_q))

    layers.append(lut(0, q, (3, res, res)))
    layers.append(conv_layer(rng, "conv1", "conv", layers[0].output_q, (3, res, res), width, 3, 1, (1,) * 4))
    layers.append(lut(1, layers[1].output_q, layers[1].output_shape))
    layers.append(conv_layer(rng, "conv3", "conv", layers[2].output_q, layers[2].output_shape, width + 2, 3, 2, (1,) * 4))
    layers.append(lut(2, layers[3].output_q, layers[3].output_shape))
    layers.append(pool_layer(rng, "pool5", layers[4].output_q, layers[4].output_shape, "average", flat=False))
    layers.append(fc_layer(rng, "fc6", layers[5].output_q, width + 2, classes, "single"))
    plan = Plan(q, (3, res, res), layers)
    assert plan.problems() == [], plan.problems()
    return plan


# Every function TFLite computes elementwise, as lut layers (a separate table: the plans above stay as they
# were); the input zero points keep most inputs above zero, so a ReLU at the plan input is not degenerate.
LUT_CASES = {
    "ReLU at the input, hard-swish, leaky ReLU 0.2": dict(seed=41, res=10, input_zp=-90, functions=(
        ("relu", None), ("hard_swish", None), ("leaky_relu", 0.2))),
    "ReLU6, logistic, ReLU_N1_TO_1 on odd sizes": dict(seed=44, res=9, input_zp=-100, functions=(
        ("relu6", None), ("logistic", None), ("relu_n1_to_1", None))),
}


def lut_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of LUT_CASES[name] and IMAGES random int8 inputs for it."""
    spec = LUT_CASES[name]
    plan = lut_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


def mul_layer(rng, name: str, a: int, b: int, layers: list[Layer], relu: bool) -> Layer:
    """TFLite's int8 MUL of layers ``a`` and ``b`` (one shape, or one a (C, 1, 1) gate): the output scale puts
    the products' spread (about 40 steps of each input) at about 40 output steps."""
    from edgepack.ops.mul import MulParams, mul_output_shape, mul_requantization

    qa, qb = layers[a].output_q, layers[b].output_q
    out_q = QParams(float(np.float32(qa.scale * qb.scale * rng.uniform(30.0, 50.0))), int(rng.integers(-60, 20)))
    multiplier, shift = mul_requantization(qa, qb, out_q)
    shape_a, shape_b = layers[a].output_shape, layers[b].output_shape
    return Layer(name=name, kind="mul", input_shape=shape_a, output_shape=mul_output_shape(shape_a, shape_b),
                 input_q=qa, output_q=out_q, arrays={"multiplier": multiplier, "shift": shift}, inputs=(a, b),
                 params=MulParams(qb, shape_b), act_min=max(-128, out_q.zero_point) if relu else -128,
                 activation="relu" if relu else "none")


def mul_plan(seed: int, res: int, gate_first: bool, relu: tuple[bool, bool], width: int = 8, classes: int = 5) -> Plan:
    """A squeeze-and-excite block, then an elementwise product: conv 3x3/1 (l0) -> global pool (l1, (C, 1, 1))
    -> pointwise (l2) -> pointwise (l3, the gate) -> mul of l0 and the gate (l4; gate * map with
    ``gate_first``) -> conv 3x3/1 (l5) -> mul of l5 and l4 (l6, one shape) -> global pool (l7) -> fc (l8).
    ``relu``: the fused ReLU of the two muls."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    layers = [conv_layer(rng, "conv0", "conv", q, (3, res, res), width, 3, 1, (1,) * 4)]
    layers.append(pool_layer(rng, "pool1", layers[0].output_q, layers[0].output_shape, "average", flat=False))
    layers.append(conv_layer(rng, "pointwise2", "pointwise", layers[1].output_q, (width, 1, 1), width // 2, 1))
    layers.append(conv_layer(rng, "pointwise3", "pointwise", layers[2].output_q, (width // 2, 1, 1), width, 1))
    layers.append(mul_layer(rng, "mul4", *((3, 0) if gate_first else (0, 3)), layers, relu[0]))
    layers.append(conv_layer(rng, "conv5", "conv", layers[4].output_q, layers[4].output_shape, width, 3, 1, (1,) * 4))
    layers.append(mul_layer(rng, "mul6", 5, 4, layers, relu[1]))
    layers.append(pool_layer(rng, "pool7", layers[6].output_q, layers[6].output_shape, "average", flat=False))
    layers.append(fc_layer(rng, "fc8", layers[7].output_q, width, classes, "single"))
    plan = Plan(q, (3, res, res), layers)
    assert plan.problems() == [], plan.problems()
    return plan


# Products (a separate table: the plans above stay as they were): a squeeze-and-excite gate (C, 1, 1) broadcast
# over its (C, H, W) map in both operand orders (TFLite's BroadcastMul4DSlow), and an elementwise product of
# two maps of one shape (MulElementwise), with and without a fused ReLU.
MUL_CASES = {
    "map * gate, then an elementwise product + ReLU": dict(seed=61, res=8, gate_first=False, relu=(False, True)),
    "gate * map + ReLU on odd sizes, then an elementwise product": dict(seed=62, res=7, gate_first=True,
                                                                        relu=(True, False)),
}


def mul_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of MUL_CASES[name] and IMAGES random int8 inputs for it."""
    spec = MUL_CASES[name]
    plan = mul_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


def shapes_plan(seed: int, res: tuple[int, int], maxpool: bool, width: int = 12, classes: int = 5) -> Plan:
    """A non-square (2, H, W) input, conv 5x3 at strides (2, 1) with TensorFlow's SAME pads (l0), then with
    ``maxpool``: depthwise 3x1 at (1, 2) with depth multiplier 2 (l1) -> pointwise (l2) -> max pool 3x2 at (2, 1) (l3); without:
    depthwise 3x3/1 pads 1 (l1) -> pointwise at strides (1, 2) (l2) (the hand-scheduled sets' shapes); then a
    global "mean" pool over the rectangle left -> fc."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    layers = [conv_layer(rng, "conv0", "conv", q, (2, *res), width, (5, 3), (2, 1), (2, 1, 2, 1))]
    if maxpool:
        layers.append(conv_layer(rng, "depthwise1", "depthwise", layers[0].output_q, layers[0].output_shape, width,
                                 (3, 1), (1, 2), (1, 0, 1, 0), multiplier=2))
        layers.append(conv_layer(rng, "pointwise2", "pointwise", layers[1].output_q, layers[1].output_shape, width, 1))
        layers.append(maxpool_layer("maxpool3", layers[2].output_q, layers[2].output_shape, (3, 2), (2, 1), (1, 0, 1, 0),
                                    False))
    else:
        layers.append(conv_layer(rng, "depthwise1", "depthwise", layers[0].output_q, layers[0].output_shape, width, 3, 1,
                                 (1,) * 4))
        layers.append(conv_layer(rng, "pointwise2", "pointwise", layers[1].output_q, layers[1].output_shape, width + 4, 1,
                                 (1, 2)))
    shape = layers[-1].output_shape
    layers.append(pool_layer(rng, f"pool{len(layers)}", layers[-1].output_q, shape, "mean", flat=True))
    layers.append(fc_layer(rng, f"fc{len(layers)}", layers[-1].output_q, shape[0], classes, "single"))
    plan = Plan(q, (2, *res), layers)
    assert plan.problems() == [], plan.problems()
    return plan


# Rectangular kernels, unequal strides and non-square maps (a keyword-spotting spectrogram, a 1-D signal):
# the C fast set runs the 3x3 depthwise and the stride-1 pointwise fast and the rest portable, the
# hand-scheduled TVM sets take the second plan (their im2col convs take any (kh, kw), (sh, sw)) and leave the
# first, whose depthwise is 3x1 with depth multiplier 2 (two outputs per input channel), to the generic route.
SHAPE_CASES = {
    "conv 5x3/(2,1), depthwise 3x1/(1,2) x2, max pool 3x2/(2,1) on 13x7": dict(seed=61, res=(13, 7), maxpool=True),
    "conv 5x3/(2,1), depthwise 3x3, pointwise /(1,2) on 15x6": dict(seed=62, res=(15, 6), maxpool=False),
}


def shapes_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of SHAPE_CASES[name] and IMAGES random int8 inputs for it."""
    spec = SHAPE_CASES[name]
    plan = shapes_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


def resize_layer(name: str, q: QParams, in_shape: tuple[int, int, int], out_hw: tuple[int, int],
                 align_corners: bool = False, half_pixel_centers: bool = False) -> Layer:
    """TFLite's int8 RESIZE_NEAREST_NEIGHBOR of a (C, H, W) map to (C, *out_hw), the input's quantization kept."""
    from edgepack.ops.resize import ResizeParams

    return Layer(name=name, kind="resize_nearest", input_shape=in_shape, output_shape=(in_shape[0], *out_hw),
                 input_q=q, output_q=q, params=ResizeParams(align_corners, half_pixel_centers))


def resize_plan(seed: int, res: tuple[int, int], first: tuple, second: tuple, width: int = 8, classes: int = 5) -> Plan:
    """conv 3x3/1 pads 1 (l0) -> resize ``first`` (l1) -> conv 3x3/2 SAME (l2) -> resize ``second`` (l3) -> global
    average pool (l4) -> fc (l5); ``first`` and ``second`` are (factor (fh, fw) of the map or, when given as
    floats, its new (H, W) itself, align_corners, half_pixel_centers)."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    layers = [conv_layer(rng, "conv0", "conv", q, (3, *res), width, 3, 1, (1,) * 4)]

    def resized(name: str, spec: tuple) -> Layer:
        (fh, fw), align, half = spec
        _, h, w = layers[-1].output_shape
        out_hw = (int(fh), int(fw)) if isinstance(fh, float) else (h * fh, w * fw)
        return resize_layer(name, layers[-1].output_q, layers[-1].output_shape, out_hw, align, half)

    layers.append(resized("resize1", first))
    layers.append(conv_layer(rng, "conv2", "conv", layers[1].output_q, layers[1].output_shape, width + 4, 3, 2,
                             (0, 0, 1, 1)))
    layers.append(resized("resize3", second))
    layers.append(pool_layer(rng, "pool4", layers[3].output_q, layers[3].output_shape, "average", flat=False))
    layers.append(fc_layer(rng, "fc5", layers[4].output_q, width + 4, classes, "single"))
    plan = Plan(q, (3, *res), layers)
    assert plan.problems() == [], plan.problems()
    return plan


# Nearest-neighbour resizes: x2 (PyTorch's Upsample(scale_factor=2), Keras' UpSampling2D) and an unequal
# integer scale, then sizes that are no multiple of the map, where TFLite's index formula decides: with
# half_pixel_centers (Keras' UpSampling2D / tf.image.resize) and with align_corners (each checked to change
# outputs against the plain formula).
RESIZE_CASES = {
    "resize x2, then 5x9 half-pixel centers on 5x4": dict(seed=71, res=(5, 4), first=((2, 2), False, False),
                                                           second=((5.0, 9.0), False, True)),
    "resize (3, 2), then 7x5 align corners on 3x5": dict(seed=72, res=(3, 5), first=((3, 2), False, False),
                                                          second=((7.0, 5.0), True, False)),
}


def resize_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of RESIZE_CASES[name] and IMAGES random int8 inputs for it."""
    spec = RESIZE_CASES[name]
    plan = resize_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


def pad_layer(name: str, q: QParams, in_shape: tuple[int, int, int], pads: tuple[int, int, int, int],
              value: int | None = None) -> Layer:
    """TFLite's int8 PAD (``value`` None: the zero point) or PADV2 (that int8 constant) of a (C, H, W) map."""
    from edgepack.ops.pad import PadParams, padded_shape

    return Layer(name=name, kind="pad", input_shape=in_shape, output_shape=padded_shape(in_shape, pads), input_q=q,
                 output_q=q, pads=pads, params=PadParams(q.zero_point if value is None else value))


def pad_plan(seed: int, res: tuple[int, int], first: tuple, second: tuple, width: int = 8, classes: int = 5) -> Plan:
    """pad ``first`` of the input (l0) -> conv 3x3/2 VALID (l1) -> pad ``second`` (l2) -> conv 3x3/1 VALID (l3) ->
    global average pool (l4) -> fc (l5); ``first`` and ``second`` are (pads (top, left, bottom, right), value)."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    layers = [pad_layer("pad0", q, (3, *res), *first)]
    layers.append(conv_layer(rng, "conv1", "conv", q, layers[0].output_shape, width, 3, 2))
    layers.append(pad_layer("pad2", layers[1].output_q, layers[1].output_shape, *second))
    layers.append(conv_layer(rng, "conv3", "conv", layers[2].output_q, layers[2].output_shape, width + 4, 3, 1))
    layers.append(pool_layer(rng, "pool4", layers[3].output_q, layers[3].output_shape, "average", flat=False))
    layers.append(fc_layer(rng, "fc5", layers[4].output_q, width + 4, classes, "single"))
    plan = Plan(q, (3, *res), layers)
    assert plan.problems() == [], plan.problems()
    return plan


# Pads as TFLite's PAD writes them (the zero point: Keras' ZeroPadding2D, PyTorch's ZeroPad2d) and as PADV2 does
# (another constant: PyTorch's ConstantPad2d), on the input and between convs, unequal on every side, on maps that
# are not square.
PAD_CASES = {
    "PAD 1/2/0/1 of the input, then PADV2 of 37 by 2/0/1/3": dict(seed=81, res=(11, 9), first=((1, 2, 0, 1), None),
                                                                 second=((2, 0, 1, 3), 37)),
    "PADV2 of -100 of the input, then PAD 0/3/2/0": dict(seed=82, res=(8, 10), first=((1, 1, 1, 1), -100),
                                                         second=((0, 3, 2, 0), None)),
}


def pad_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of PAD_CASES[name] and IMAGES random int8 inputs for it."""
    spec = PAD_CASES[name]
    plan = pad_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


def fast_path_plan(seed: int, res: int, width: int = 18, classes: int = 5) -> Plan:
    """The shapes the C fast set runs as an im2col GEMM (ep_conv_gemm_fast), ResNet-style: conv 3x3/1 pads 1
    (l0) -> conv 3x3/2 SAME (l1, ``width`` input planes: wider than the direct 3x3 kernel's 16) -> conv 3x3/1
    pads 1 (l2) | pointwise 1x1/2 of l0 (l3, the shortcut) -> add(l2, l3) (l4) -> conv 1x3 pads (0, 1, 0, 1)
    (l5) -> global pool (l6) -> fc (l7, 10 features: a partial quad). Input channel counts and output planes
    that are no multiples of 4 leave partial quads and partial pixel blocks."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    same = (1, 1, 1, 1) if res % 2 else (0, 0, 1, 1)  # TensorFlow's SAME for a 3x3/2 on an odd / even map
    layers = [conv_layer(rng, "conv0", "conv", q, (3, res, res), width, 3, 1, (1,) * 4)]
    layers.append(conv_layer(rng, "conv1", "conv", layers[0].output_q, layers[0].output_shape, width + 6, 3, 2, same))
    layers.append(conv_layer(rng, "conv2", "conv", layers[1].output_q, layers[1].output_shape, width + 6, 3, 1, (1,) * 4))
    layers.append(conv_layer(rng, "pointwise3", "pointwise", layers[0].output_q, layers[0].output_shape, width + 6, 1, 2))
    layers[-1].inputs = (0,)
    layers.append(add_layer(rng, "add4", 2, 3, layers[2].output_q, layers[3].output_q, layers[2].output_shape))
    layers.append(conv_layer(rng, "conv5", "conv", layers[4].output_q, layers[4].output_shape, 10, (1, 3), 1, (0, 1, 0, 1)))
    layers.append(pool_layer(rng, "pool6", layers[5].output_q, layers[5].output_shape, "average", flat=True))
    layers.append(fc_layer(rng, "fc7", layers[6].output_q, 10, classes, "single" if seed % 2 else "double"))
    plan = Plan(q, (3, res, res), layers)
    assert plan.problems() == [], plan.problems()
    return plan


# The C fast set's im2col GEMM shapes (a separate table: the plans above stay as they were): 3x3 convs over
# more than 16 input planes at strides 1 and 2, a strided pointwise shortcut into an add, a 1x3 conv, an fc
# whose features are no multiple of 4; on an odd map (SAME pads 1 all round) and an even one (bottom/right).
FAST_PATH_CASES = {
    "ResNet-style block, 18 -> 24 planes, strided pointwise shortcut, 11x11": dict(seed=71, res=11),
    "ResNet-style block, 20 -> 26 planes, strided pointwise shortcut, 12x12": dict(seed=72, res=12, width=20),
}


def fast_path_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of FAST_PATH_CASES[name] and IMAGES random int8 inputs for it."""
    spec = FAST_PATH_CASES[name]
    plan = fast_path_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x


def multi_output_plan(seed: int, res: int, width: int = 10, code: int = 8, classes: int = 5,
                      order: tuple[int, ...] = (4, 2, 5)) -> Plan:
    """A plan with three outputs, listed out of layer order (``order``): conv 3x3/2 SAME (l0) -> depthwise 3x3/1
    (l1) -> pointwise to 4 planes (l2, a detector-style map head: an output nobody reads) | global pool of l1
    (l3) -> fc to ``code`` (l4, an autoencoder-style code: an output the next layer reads) -> fc (l5, the last
    layer). Executors hand over every output flattened, concatenated in ``order``."""
    rng = np.random.default_rng(seed)
    q = QParams(float(np.float32(rng.uniform(0.01, 0.05))), int(rng.integers(-20, 20)))
    same = (1, 1, 1, 1) if res % 2 else (0, 0, 1, 1)  # TensorFlow's SAME for a 3x3/2 on an odd / even map
    layers = [conv_layer(rng, "conv0", "conv", q, (3, res, res), width, 3, 2, same)]
    shape = layers[0].output_shape
    layers.append(conv_layer(rng, "depthwise1", "depthwise", layers[0].output_q, shape, width, 3, 1, (1,) * 4))
    layers.append(conv_layer(rng, "pointwise2", "pointwise", layers[1].output_q, shape, 4, 1))
    layers.append(pool_layer(rng, "pool3", layers[1].output_q, shape, "average", flat=True))
    layers[-1].inputs = (1,)
    layers.append(fc_layer(rng, "fc4", layers[3].output_q, width, code, "double"))
    layers.append(weighted_layer(rng, "fc5", "fc", layers[4].output_q, (code,), (classes,), (classes, code), spread=20.0))
    layers[-1].params = FcParams("single" if seed % 2 else "double")
    plan = Plan(q, (3, res, res), layers, outputs=order)
    assert plan.problems() == [], plan.problems()
    return plan


# Plans with several outputs (a separate table: the plans above stay as they were), on an even and an odd map
MULTI_OUTPUT_CASES = {
    "three outputs out of layer order (code, map head, logits), 12x12": dict(seed=81, res=12),
    "three outputs (map head, code, logits), 9x9": dict(seed=82, res=9, width=12, order=(2, 4, 5)),
}


def multi_output_case(name: str) -> tuple[Plan, np.ndarray]:
    """The plan of MULTI_OUTPUT_CASES[name] and IMAGES random int8 inputs for it."""
    spec = MULTI_OUTPUT_CASES[name]
    plan = multi_output_plan(**spec)
    x = np.random.default_rng(100 + spec["seed"]).integers(-128, 128, (IMAGES, *plan.input_shape)).astype(np.int8)
    return plan, x
