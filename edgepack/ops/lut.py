"""``lut``: an int8 -> int8 function of one input, elementwise, as a 256-entry table (``arrays["table"]``,
indexed by x + 128). Any such function is exactly a table once the input and output quantization are fixed,
so one op kind (one C kernel, one TVM gather) runs TFLite's HARD_SWISH, LOGISTIC, LEAKY_RELU, RELU, RELU6
and RELU_N1_TO_1, a MUL by a one-element constant ("mul_constant": a converter's "/ 6" of a hard sigmoid)
and PyTorch's Hardsigmoid. The table is computed when the plan is built, by the arithmetic
of TFLite's int8 kernel for that builtin (its Prepare and its reference Eval, transcribed below), from the
layer's QParams: ``problems()`` recomputes it, so a damaged plan is refused and the .tflite twin of the layer
(the builtin itself) gives the same outputs under LiteRT.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.arith import rounding_divide_by_pot, rounding_doubling_high_mul
from edgepack.ops.base import Layer, Params, QParams
from edgepack.ops.mul import MUL_MAX_LEFT_SHIFT, mul_requantization

INT8 = np.arange(-128, 128, dtype=np.int64)  # every input value, in table order
LOGISTIC_OUTPUT = QParams(1.0 / 256, -128)  # TFLite's int8 LOGISTIC requires this output quantization
RELU_BOUNDS = {"relu": (0.0, None), "relu6": (0.0, 6.0), "relu_n1_to_1": (-1.0, 1.0)}
MUL_ACTIVATIONS = {"none": (None, None), "relu": (0.0, None), "relu6": (0.0, 6.0)}  # a MUL's fused activations
CONSTANT_FIELDS = ("constant", "constant_q", "activation")  # a mul_constant's own fields


@dataclass(frozen=True)
class LutParams(Params):
    function: str  # one of FUNCTIONS: what the table computes
    alpha: float | None = None  # a leaky_relu's negative slope (LeakyReluOptions.alpha), None for the others
    constant: int | None = None  # a mul_constant's int8 factor (the MUL's one-element constant), None otherwise
    constant_q: QParams | None = None  # that constant's quantization
    activation: str | None = None  # a mul_constant's fused activation (one of MUL_ACTIVATIONS)

    def to_json(self) -> dict:
        """The mul_constant fields only when set: other functions' plan.json keep their v4 form."""
        d = super().to_json()
        return {k: v for k, v in d.items() if k not in CONSTANT_FIELDS or v is not None}


def tflite_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier, negative values included (a leaky ReLU's alpha may be < 0)."""
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = int(math.copysign(math.floor(abs(mantissa) * (1 << 31) + 0.5), mantissa))  # std::round
    if abs(q) == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def _multiply(x: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier (gemmlowp's two roundings) on int64-held int32 values."""
    wide = x * (1 << max(shift, 0))
    return rounding_divide_by_pot(rounding_doubling_high_mul(wide, np.int64(multiplier)), np.int64(max(-shift, 0)))


def _f32(x: float) -> float:
    return float(np.float32(x))


def _relu_table(function: str, in_q: QParams, out_q: QParams) -> np.ndarray:
    """activations.cc QuantizedReluX: rescale by in_scale / out_scale, clamp to round(bound / out_scale) + zp."""
    m, s = tflite_multiplier(_f32(in_q.scale) / _f32(out_q.scale))
    return np.clip(out_q.zero_point + _multiply(INT8 - in_q.zero_point, m, s), *_bounds(RELU_BOUNDS[function], out_q))


def _bounds(real_bounds: tuple[float | None, float | None], out_q: QParams) -> tuple[int, int]:
    """int8 (min, max) of real bounds (None: unbounded), each round(bound / out_scale) + zp in float32."""
    low, high = real_bounds
    scale = np.float32(out_q.scale)
    q_max = 127 if high is None else min(127, out_q.zero_point + int(_round_half_away(np.float32(high) / scale)))
    q_min = -128 if low is None else max(-128, out_q.zero_point + int(_round_half_away(np.float32(low) / scale)))
    return q_min, q_max


def _mul_constant_table(params: LutParams, in_q: QParams, out_q: QParams) -> np.ndarray:
    """TFLite's int8 MUL (edgepack.ops.mul) of x by the constant: (x - zp_x) * (c - zp_c), requantized by
    s_x * s_c / s_out (float32), plus zp_out, clamped to the fused activation's range."""
    multiplier, shift = mul_requantization(in_q, params.constant_q, out_q)
    product = (INT8 - in_q.zero_point) * (params.constant - params.constant_q.zero_point)
    out = _multiply(product, int(multiplier[0]), int(shift[0])) + out_q.zero_point
    return np.clip(out, *_bounds(MUL_ACTIVATIONS[params.activation], out_q))


def _round_half_away(x) -> float:
    """std::round / roundf / TfLiteRound: half away from zero."""
    return math.copysign(math.floor(abs(float(x)) + 0.5), float(x))


def _leaky_relu_table(alpha: float, in_q: QParams, out_q: QParams) -> np.ndarray:
    """LeakyReluPrepare's two multipliers (identity and alpha) and reference_ops::QuantizeLeakyRelu."""
    s_in, s_out = _f32(in_q.scale), _f32(out_q.scale)
    m_id, s_id = tflite_multiplier(s_in / s_out)
    m_a, s_a = tflite_multiplier(s_in * _f32(alpha) / s_out)
    x = INT8 - in_q.zero_point
    out = np.where(x >= 0, _multiply(x, m_id, s_id), _multiply(x, m_a, s_a)) + out_q.zero_point
    return np.clip(out, -128, 127)


def _float_table(fn, in_q: QParams, out_q: QParams) -> np.ndarray:
    """TFLite's LUTPopulate (int8 LOGISTIC's table): float32 dequantize, fn, round(y / out_scale) + zp."""
    x = np.float32(in_q.scale) * (INT8 - in_q.zero_point).astype(np.float32)
    y = fn(x).astype(np.float32) * (np.float32(1) / np.float32(out_q.scale))
    rounded = np.sign(y) * np.floor(np.abs(y) + np.float32(0.5))
    return np.clip(rounded.astype(np.int64) + out_q.zero_point, -128, 127)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1.0f / (1.0f + expf(-x)) in float32 (expf as the float32 rounding of the exact exponential)."""
    e = np.exp(-x.astype(np.float64)).astype(np.float32)
    return np.float32(1) / (np.float32(1) + e)


def _hardsigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x + np.float32(3), np.float32(0), np.float32(6)) / np.float32(6)


def _int16(x: np.ndarray) -> np.ndarray:
    """C++'s conversion of an int to int16_t (two's complement wrap)."""
    return ((x + 32768) & 0xFFFF) - 32768


def _srdhm16(a: np.ndarray, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int16."""
    ab = a * np.int64(b)
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    v = ab + nudge
    high = np.where(v >= 0, v >> 15, -((-v) >> 15))
    return np.where((a == -32768) & (b == -32768), 32767, high)


def _int16_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier then DownScaleInt32ToInt16Multiplier (HardSwishPrepare)."""
    m, shift = tflite_multiplier(real)
    return (32767 if m >= 2**31 - 1 - (1 << 15) else (m + (1 << 15)) >> 16), shift


def hard_swish_multipliers(in_q: QParams, out_q: QParams) -> tuple[tuple[int, int], tuple[int, int]]:
    """HardSwishPrepare's (output, reluish) int16 multipliers and exponents, from float32 scales."""
    hires = np.float32(1.0 / 128.0) * np.float32(in_q.scale)
    output = _int16_multiplier(float(hires / np.float32(out_q.scale)))
    reluish = _int16_multiplier(float(hires / np.float32(3.0 / 32768.0)))
    return output, reluish


def _saturating_left_shift(x: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(x * (1 << amount), -32768, 32767)


def _hard_swish_table(in_q: QParams, out_q: QParams) -> np.ndarray:
    """reference_ops::HardSwish on int8, its int16 fixed-point steps as in hard_swish.h."""
    (out_m, out_e), (relu_m, relu_e) = hard_swish_multipliers(in_q, out_q)
    hires = (INT8 - in_q.zero_point) * 128
    preshift = _srdhm16(hires, out_m)
    reluish = _saturating_left_shift(hires, relu_e - 1) if relu_e > 0 else hires
    reluish = _srdhm16(reluish, relu_m)
    if relu_e > 0:
        reluish = _saturating_left_shift(reluish, 1)
    if relu_e < 0:
        reluish = rounding_divide_by_pot(reluish, np.int64(-relu_e))
    reluish = (reluish + (1 << 15)) >> 1
    product = reluish * preshift  # SaturatingDoublingHighMul: truncating, no rounding
    high = np.where(product >= 0, product >> 15, -((-product) >> 15))
    high = np.where((reluish == -32768) & (preshift == -32768), 32767, high)
    out = _int16(rounding_divide_by_pot(high, np.int64(-out_e)) + out_q.zero_point)
    return np.clip(out, -128, 127)


FUNCTIONS = ("hard_swish", "hardsigmoid", "leaky_relu", "logistic", "mul_constant", "relu", "relu6", "relu_n1_to_1")


def lut_table(params: LutParams, in_q: QParams, out_q: QParams) -> np.ndarray:
    """The int8 (256,) table of ``params.function`` for these quantizations, entry x + 128 for input x."""
    f = params.function
    if f == "hard_swish":
        t = _hard_swish_table(in_q, out_q)
    elif f == "leaky_relu":
        t = _leaky_relu_table(params.alpha, in_q, out_q)
    elif f == "logistic":
        t = _float_table(_sigmoid, in_q, out_q)
    elif f == "hardsigmoid":
        t = _float_table(_hardsigmoid, in_q, out_q)
    elif f in RELU_BOUNDS:
        t = _relu_table(f, in_q, out_q)
    elif f == "mul_constant":
        t = _mul_constant_table(params, in_q, out_q)
    else:
        raise ValueError(f"unknown lut function {f!r}: use one of {', '.join(FUNCTIONS)}")
    return t.astype(np.int8)


def lut_reference(layer: Layer, x: np.ndarray) -> np.ndarray:
    """The table lookup (the table is the layer's: computed once, checked by problems())."""
    return layer.arrays["table"][x.astype(np.int16) + 128]


def _params_problems(layer: Layer) -> list[str]:
    """A known function, alpha only (and finite) for leaky_relu, quantizations TFLite's kernel accepts."""
    p = layer.params
    if p.function not in FUNCTIONS:
        return [f"{layer.name}: lut function {p.function!r} is unknown (known: {', '.join(FUNCTIONS)})"]
    if (p.function == "leaky_relu") != (p.alpha is not None):
        return [f"{layer.name}: alpha {p.alpha!r} is for a leaky_relu only, and a leaky_relu needs one"]
    if p.alpha is not None and (not isinstance(p.alpha, (int, float)) or not math.isfinite(p.alpha)):
        return [f"{layer.name}: leaky_relu alpha {p.alpha!r} is not a finite number"]
    found = _constant_problems(layer)
    if found:
        return found
    if p.function == "logistic" and (np.float32(layer.output_q.scale) != np.float32(LOGISTIC_OUTPUT.scale)
                                     or layer.output_q.zero_point != LOGISTIC_OUTPUT.zero_point):
        return [f"{layer.name}: a logistic outputs in scale 1/256, zero point -128 (TFLite's int8 LOGISTIC)"]
    if p.function == "hard_swish" and hard_swish_multipliers(layer.input_q, layer.output_q)[0][1] > 0:
        return [f"{layer.name}: a hard_swish output scale below input scale / 128 (TFLite's HARD_SWISH refuses it)"]
    return []


def _constant_problems(layer: Layer) -> list[str]:
    """constant, constant_q and activation for a mul_constant only, an int8 constant, a MUL TFLite prepares."""
    p = layer.params
    given = [getattr(p, k) is not None for k in CONSTANT_FIELDS]
    if p.function != "mul_constant":
        return [f"{layer.name}: constant, constant_q and activation are for a mul_constant only"] if any(given) else []
    if not all(given):
        return [f"{layer.name}: a mul_constant needs its constant, constant_q and activation"]
    if (not isinstance(p.constant, int) or not -128 <= p.constant <= 127 or not isinstance(p.constant_q, QParams)
            or p.activation not in MUL_ACTIVATIONS):
        return [f"{layer.name}: a mul_constant's constant must be an int8 value with QParams and its activation one "
                f"of {', '.join(MUL_ACTIVATIONS)}"]
    if int(mul_requantization(layer.input_q, p.constant_q, layer.output_q)[1][0]) > MUL_MAX_LEFT_SHIFT:
        return [f"{layer.name}: a mul_constant's output scale is below 2^-{MUL_MAX_LEFT_SHIFT} of its input scale "
                "times the constant's (TFLite's MUL would overflow)"]
    return []


def lut_problems(plan, i: int) -> list[str]:
    layer = plan.layers[i]
    if tuple(layer.input_shape) != tuple(layer.output_shape):
        return [f"{layer.name}: a lut keeps its input's shape, got {list(layer.input_shape)} -> "
                f"{list(layer.output_shape)}"]
    if not isinstance(layer.params, LutParams):
        return [f"{layer.name}: a lut needs its function (LutParams)"]
    if (layer.act_min, layer.act_max) != (-128, 127):
        return [f"{layer.name}: a lut has no fused clamp (its table holds the function's own bounds)"]
    found = _params_problems(layer)
    if found:
        return found
    table = layer.arrays.get("table")
    if set(layer.arrays) != {"table"} or table.dtype != np.int8 or table.shape != (256,):
        return [f"{layer.name}: a lut holds one array, 'table', int8 of shape (256,)"]
    if not np.array_equal(table, lut_table(layer.params, layer.input_q, layer.output_q)):
        return [f"{layer.name}: its table is not TFLite's {layer.params.function} for its input and output "
                "quantization: rebuild the plan"]
    return []


def lut_layer(name: str, params: LutParams, shape: tuple[int, ...], in_q: QParams, out_q: QParams,
              inputs: tuple[int, ...] = ()) -> Layer:
    """A lut layer with its table computed from ``params`` and the two quantizations."""
    return Layer(name, "lut", tuple(shape), tuple(shape), input_q=in_q, output_q=out_q, params=params,
                 arrays={"table": lut_table(params, in_q, out_q)}, inputs=inputs)


LUT = register(Op("lut", lut_reference, lut_problems, params=LutParams,
                  summary="elementwise int8 function (hard-swish, logistic, leaky ReLU, ReLU/ReLU6, x * constant)"))
