"""The int8 plan: what every integer executor (numpy reference, C runtime, TVM int8) runs.

Format on disk (documented in README "Int8 plan format"):
  plan.json  {"format": "edgepack-int8-plan", "version": 3, "layout": "NCHW",
              "input": {shape, scale, zero_point}, "output": {...}, "layers": [Layer...]}
             Version 2 stores each layer's zero padding as "pads": [top, left, bottom, right]
             (TFLite's SAME pads stride-2 layers bottom/right only); version 1 stored one symmetric
             "padding": p and still loads, as pads (p, p, p, p).
             Version 3 makes the plan a graph: each layer's "inputs" are the indices of the layers it
             reads (-1 = the plan input; [] = the previous layer, so v1/v2 chains load unchanged),
             and the "add" kind adds two tensors (its second input's QParams in "input2_q").
             An fc's "rounding" is "double" (gemmlowp, the default) or "single" (TFLite's
             FULLY_CONNECTED); an avgpool's "pool" is "average" (the default), "mean" (TFLite's int8
             MEAN) or "raw_average" (TFLite's int8 AVERAGE_POOL_2D). Layers without them load with the defaults.
  plan.npz   per layer i: "i.weight" int8 (O, I/groups, KH, KW) or (O, I); "i.bias" int32 (O);
             "i.multiplier" int32 (O) Q31 in [2^30, 2^31); "i.shift" int32 (O), M = M0 * 2^shift;
             "i.weight_scale" float32 (O). Pooling layers have no arrays; an add has "i.multiplier"
             and "i.shift" (3,) for [input a, input b, output] (TFLite's int8 ADD, see add_multipliers);
             a "mean" pool has "i.multiplier" and "i.shift" (C), one value repeated (mean_requantization).
Both are written deterministically (sorted keys, fixed zip timestamps) so artifacts are
byte-identical for identical inputs.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgepack.errors import ArtifactError

FORMAT, VERSION = "edgepack-int8-plan", 3
READABLE_VERSIONS = (1, 2, 3)
LAYER_KINDS = ("conv", "depthwise", "pointwise", "avgpool", "fc", "add")
CONV_KINDS = ("conv", "depthwise", "pointwise")
ARRAYS = ("weight", "bias", "multiplier", "shift", "weight_scale")
ROUNDINGS = ("double", "single")  # fc requantization: gemmlowp's two roundings, or TFLite FULLY_CONNECTED's one
POOLS = ("average", "mean", "raw_average")  # global pool: the plan's rounded average, TFLite's int8 MEAN or AVERAGE_POOL_2D
PLAN_INPUT = -1  # in Layer.inputs: the plan's input tensor
MAX_TENSOR_ELEMENTS = 1 << 26  # int8 values in one tensor (3 x 4096 x 4096 is 50 Mi): more is a damaged plan
ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD widens both inputs by 2^20 before rescaling them


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x / self.scale) + self.zero_point, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


@dataclass
class Layer:
    name: str
    kind: str  # one of LAYER_KINDS
    input_shape: tuple[int, ...]  # (C, H, W) or (C,), no batch
    output_shape: tuple[int, ...]
    input_q: QParams
    output_q: QParams
    act_min: int = -128  # fused activation clamp in the output's int8 domain
    act_max: int = 127
    stride: int = 1
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # zero-point rows/columns added (top, left, bottom, right)
    activation: str = "none"  # none | relu | relu6
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    inputs: tuple[int, ...] = ()  # layers whose outputs this one reads (PLAN_INPUT = the plan input); () = previous
    input2_q: QParams | None = None  # an add's second input (input_q is its first)
    rounding: str = "double"  # fc only: "single" rounds acc * M once, as TFLite's FULLY_CONNECTED (README "Arithmetic")
    pool: str = "average"  # avgpool only: "mean" / "raw_average" as TFLite's int8 MEAN / AVERAGE_POOL_2D (README "Arithmetic")

    @property
    def weight(self) -> np.ndarray:
        return self.arrays["weight"]

    def weight_scales(self) -> np.ndarray:
        return self.arrays["weight_scale"]

    def folded_bias(self, input_zero_point: int) -> np.ndarray:
        """bias - zp * sum(w) per output channel (int64): sum((x - zp) * w) + bias becomes
        sum(x * w) + folded_bias when every window is full (inputs padded with zp)."""
        w = self.weight
        return self.arrays["bias"].astype(np.int64) - input_zero_point * w.reshape(w.shape[0], -1).astype(np.int64).sum(1)

    def pool_zero_points(self) -> tuple[int, int]:
        """What an average pool subtracts from its inputs and adds to its rounded mean: the zero points, or
        none for "raw_average" (TFLite's AVERAGE_POOL_2D averages the raw int8 values, in and out scale equal)."""
        return (0, 0) if self.pool == "raw_average" else (self.input_q.zero_point, self.output_q.zero_point)

    def meta(self) -> dict:
        d = asdict(self)
        d.pop("arrays")
        d["input_shape"], d["output_shape"] = list(self.input_shape), list(self.output_shape)
        d["pads"] = list(self.pads)
        d["inputs"] = list(self.inputs)
        return d

    def conv_output_hw(self) -> tuple[int, int]:
        """(H, W) a conv of this layer's kernel, stride and pads makes of its input."""
        k, (top, left, bottom, right) = self.weight.shape[-1], self.pads
        _, h, w = self.input_shape
        return (h + top + bottom - k) // self.stride + 1, (w + left + right - k) // self.stride + 1


@dataclass
class Plan:
    input_q: QParams
    input_shape: tuple[int, ...]
    layers: list[Layer]

    @property
    def output_q(self) -> QParams:
        return self.layers[-1].output_q

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[-1].output_shape

    def inputs_of(self, i: int) -> tuple[int, ...]:
        """The tensors layer ``i`` reads: layer indices, PLAN_INPUT for the plan input."""
        return tuple(self.layers[i].inputs) or (i - 1,)

    def last_readers(self) -> dict[int, int]:
        """Tensor (layer index or PLAN_INPUT) -> the last layer that reads it: how long it must stay alive."""
        last = {}
        for i in range(len(self.layers)):
            for j in self.inputs_of(i):
                last[j] = i
        return last

    def is_chain(self) -> bool:
        return all(self.inputs_of(i) == (i - 1,) for i in range(len(self.layers)))

    def tensor_shape(self, j: int) -> tuple[int, ...]:
        return tuple(self.input_shape) if j == PLAN_INPUT else tuple(self.layers[j].output_shape)

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "layout": "NCHW",
            "input": {"shape": list(self.input_shape), **asdict(self.input_q)},
            "output": {"shape": list(self.output_shape), **asdict(self.output_q)},
            "layers": [layer.meta() for layer in self.layers],
        }

    def save(self, folder: Path) -> list[str]:
        folder = Path(folder)
        (folder / "plan.json").write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        arrays = {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.arrays.items()}
        write_npz(folder / "plan.npz", arrays)
        return ["plan.json", "plan.npz"]

    def problems(self) -> list[str]:
        """What breaks the int8 contract (README "Arithmetic"): no layers, shapes that are not positive
        integers or too large, a layer whose input is not what its producer outputs or whose weights do not
        match its sizes, scales that are not finite and positive, zero points and clamps outside int8,
        missing or mistyped arrays, multipliers outside [2^30, 2^31), shifts outside [-31, 30],
        accumulators that can leave int32, conv output sizes that do not follow from the input, pads,
        kernel and stride. Every executor trusts a plan that has none of these."""
        found = self._header_problems()
        if found:
            return found
        for i in range(len(self.layers)):
            found += self._layer_problems(i)
        return found

    def _header_problems(self) -> list[str]:
        if not isinstance(self.layers, list) or not self.layers:
            return ["the plan has no layers (it needs at least one)"]
        shape = self.input_shape
        if not _is_shape(shape) or len(shape) != 3:
            return [f"input shape {list(shape) if isinstance(shape, (list, tuple)) else shape!r} is not 3 positive "
                    "integers (C, H, W)"]
        if math.prod(shape) > MAX_TENSOR_ELEMENTS:
            return [f"input shape {list(shape)} has more than {MAX_TENSOR_ELEMENTS:,} values"]
        return [f"plan input: {p}" for p in _qparams_problems(self.input_q)]

    def _layer_problems(self, i: int) -> list[str]:
        layer = self.layers[i]
        if layer.kind not in LAYER_KINDS:
            return [f"{layer.name}: unknown kind {layer.kind!r}"]
        found = self._input_problems(i) or self._shape_problems(i) or _activation_problems(layer)
        if found:
            return found
        if layer.rounding not in ROUNDINGS or (layer.rounding != "double" and layer.kind != "fc"):
            return [f"{layer.name}: rounding {layer.rounding!r} is not one of {', '.join(ROUNDINGS)} "
                    "(and only an fc may round once)"]
        if layer.pool not in POOLS or (layer.pool != "average" and layer.kind != "avgpool"):
            return [f"{layer.name}: pool {layer.pool!r} is not one of {', '.join(POOLS)} "
                    "(and only an avgpool may be a mean)"]
        if layer.kind == "avgpool":
            if layer.pool == "raw_average" and layer.input_q != layer.output_q:
                return [f"{layer.name}: a raw_average pool must keep its input's scale and zero point"]
            return _mean_pool_problems(layer) if layer.pool == "mean" else []
        if layer.kind == "add":
            return self._add_problems(i)
        return _weighted_problems(layer)

    def _shape_problems(self, i: int) -> list[str]:
        """Each shape is positive integers of a sane size, and each input is what its producer outputs
        (a (C, H, W) map and its flattened (C*H*W,) vector are one tensor: a flatten moves no data)."""
        layer = self.layers[i]
        for what, shape in (("input", layer.input_shape), ("output", layer.output_shape)):
            if not _is_shape(shape):
                return [f"{layer.name}: {what} shape {shape!r} is not positive integers"]
            if math.prod(shape) > MAX_TENSOR_ELEMENTS:
                return [f"{layer.name}: {what} shape {list(shape)} has more than {MAX_TENSOR_ELEMENTS:,} values"]
        for j in self.inputs_of(i):
            made, need = self.tensor_shape(j), tuple(layer.input_shape)
            if not _is_shape(made):
                continue  # its producer's own problem, reported there
            if (made != need) if len(made) == len(need) else math.prod(made) != math.prod(need):
                source = "the plan input" if j == PLAN_INPUT else self.layers[j].name
                return [f"{layer.name}: its input shape {list(need)} is not the {list(made)} that {source} outputs"]
        if layer.kind in CONV_KINDS + ("avgpool",) and len(layer.input_shape) != 3:
            return [f"{layer.name}: a {layer.kind} layer reads a (C, H, W) map, not {list(layer.input_shape)}"]
        if layer.kind in CONV_KINDS and len(layer.output_shape) != 3:
            return [f"{layer.name}: a {layer.kind} layer outputs a (C, H, W) map, not {list(layer.output_shape)}"]
        if layer.kind == "avgpool" and math.prod(layer.output_shape) != layer.input_shape[0]:
            return [f"{layer.name}: a global pool of {layer.input_shape[0]} channels outputs "
                    f"{layer.input_shape[0]} values, not {list(layer.output_shape)}"]
        if layer.kind == "fc" and math.prod(layer.output_shape) != layer.output_shape[0]:
            return [f"{layer.name}: an fc outputs a vector, not {list(layer.output_shape)}"]
        return []

    def _input_problems(self, i: int) -> list[str]:
        """Every input must be the plan input or an earlier layer (the layers are in execution order)."""
        layer, wanted = self.layers[i], 2 if self.layers[i].kind == "add" else 1
        inputs = self.inputs_of(i)
        if any(type(j) is not int or not PLAN_INPUT <= j < i for j in inputs):
            return [f"{layer.name}: inputs {list(inputs)} are not the plan input (-1) or earlier layers (< {i})"]
        if len(inputs) != wanted:
            return [f"{layer.name}: a {layer.kind} layer reads {wanted} input(s), not {len(inputs)}"]
        return []

    def _add_problems(self, i: int) -> list[str]:
        layer = self.layers[i]
        shapes = {tuple(layer.input_shape), tuple(layer.output_shape)} | {self.tensor_shape(j) for j in self.inputs_of(i)}
        if len(shapes) != 1:
            return [f"{layer.name}: an add needs inputs and output of one shape, got {sorted(shapes)}"]
        if layer.input2_q is None:
            return [f"{layer.name}: an add needs input2_q (its second input's quantization)"]
        a = layer.arrays
        if any(k not in a or a[k].dtype != np.int32 or a[k].shape != (3,) for k in ("multiplier", "shift")):
            return [f"{layer.name}: an add needs int32 multiplier and shift arrays of 3 (input a, input b, output)"]
        m, sh = a["multiplier"].astype(np.int64), a["shift"].astype(np.int64)
        if np.any((m != 0) & ((m < 1 << 30) | (m >= 1 << 31))) or np.any((sh < -31) | (sh > 0)):
            return [f"{layer.name}: add multipliers must be Q31 in [2^30, 2^31) with shifts in [-31, 0]"]
        return []

    @classmethod
    def load(cls, folder: Path) -> "Plan":
        folder = Path(folder)
        try:
            meta = json.loads((folder / "plan.json").read_text())
            with np.load(folder / "plan.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # OSError, zlib.error, BadZipFile, ValueError, ...: a damaged file either way
            raise ArtifactError(f"cannot read the int8 plan in {folder} ({type(e).__name__}): recompile the artifact")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
            raise ArtifactError(f"{folder}/plan.json is not an {FORMAT} v1 to v{VERSION}: recompile with this edgepack")
        try:
            plan = cls._from_json(meta, arrays)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ArtifactError(f"{folder}/plan.json is malformed ({type(e).__name__}: {e}): recompile the artifact")
        problems = plan.problems()
        if problems:
            raise ArtifactError(f"the int8 plan in {folder} is invalid ({problems[0]}): recompile the artifact")
        return plan

    @classmethod
    def _from_json(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "Plan":
        layers = []
        for i, m in enumerate(meta["layers"]):
            own = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.split(".", 1)[0] == str(i)}
            m = dict(m)
            m["pads"] = (m.pop("padding"),) * 4 if meta["version"] == 1 else tuple(m["pads"])
            m["inputs"] = tuple(m.get("inputs", ()))
            m["input2_q"] = QParams(**m["input2_q"]) if m.get("input2_q") else None
            layers.append(Layer(
                **{**m, "input_q": QParams(**m["input_q"]), "output_q": QParams(**m["output_q"]),
                   "input_shape": tuple(m["input_shape"]), "output_shape": tuple(m["output_shape"])},
                arrays=own,
            ))
        inp = meta["input"]
        return cls(QParams(inp["scale"], inp["zero_point"]), tuple(inp["shape"]), layers)


def _is_shape(shape) -> bool:
    return (isinstance(shape, (tuple, list)) and len(shape) > 0
            and all(isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d > 0 for d in shape))


def _qparams_problems(q) -> list[str]:
    """A scale that is not finite and positive (NaN quantizes to garbage with only a RuntimeWarning), or a
    zero point outside int8."""
    if not isinstance(q, QParams):
        return ["quantization parameters missing"]
    scale, zp = q.scale, q.zero_point
    if not isinstance(scale, (int, float, np.floating)) or isinstance(scale, bool) or not math.isfinite(scale) or scale <= 0:
        return [f"scale {scale!r} is not a finite positive number"]
    if not isinstance(zp, (int, np.integer)) or isinstance(zp, bool) or not -128 <= zp <= 127:
        return [f"zero point {zp!r} is not an integer in [-128, 127]"]
    return []


def _activation_problems(layer: Layer) -> list[str]:
    qs = [("input", layer.input_q), ("output", layer.output_q)] + ([("input2", layer.input2_q)] if layer.input2_q else [])
    for what, q in qs:
        bad = _qparams_problems(q)
        if bad:
            return [f"{layer.name}: {what} {bad[0]}"]
    lo, hi = layer.act_min, layer.act_max
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi)) or not -128 <= lo <= hi <= 127:
        return [f"{layer.name}: activation clamp [{lo!r}, {hi!r}] is not an int8 range"]
    return []


def _weighted_problems(layer: Layer) -> list[str]:
    """A conv or fc: arrays present, typed, sized for the layer's channels, and inside the Q31 contract."""
    a = layer.arrays
    missing = [k for k in ARRAYS if k not in a]
    if missing:
        return [f"{layer.name}: no {', '.join(missing)}"]
    out = layer.output_shape[0]
    dtypes = {"weight": np.int8, "bias": np.int32, "multiplier": np.int32, "shift": np.int32}
    bad = [k for k, t in dtypes.items() if a[k].dtype != t] + [k for k in ARRAYS if a[k].ndim < 1 or len(a[k]) != out]
    bad += [k for k in ARRAYS if k != "weight" and a[k].ndim != 1]
    if bad:
        return [f"{layer.name}: {', '.join(sorted(set(bad)))} of the wrong type or length (the layer has {out} outputs)"]
    if not np.issubdtype(a["weight_scale"].dtype, np.floating) or not np.all(np.isfinite(a["weight_scale"])):
        return [f"{layer.name}: weight_scale is not finite floating-point numbers"]
    wrong = _weight_shape_problems(layer)
    if wrong:
        return wrong
    found = []
    m, sh = a["multiplier"].astype(np.int64), a["shift"].astype(np.int64)
    if np.any((m != 0) & ((m < 1 << 30) | (m >= 1 << 31))) or np.any((sh < -31) | (sh > 30)):
        found.append(f"{layer.name}: requantization multiplier or shift outside the Q31 contract")
    terms = int(np.prod(a["weight"].shape[1:]))
    worst = np.abs(a["bias"].astype(np.int64)) + terms * 255 * 127
    if np.any(worst > 2**31 - 1):
        found.append(f"{layer.name}: bias too large for the int32 accumulator (its weights are ~0 next to the bias)")
    if layer.kind in CONV_KINDS:
        found += _conv_geometry_problems(layer)
    return found


def _weight_shape_problems(layer: Layer) -> list[str]:
    """The weights must be as wide as the layer's input: (O, C, K, K) for a conv of C input channels,
    (C, 1, K, K) for a depthwise one (C in = C out), (O, features) for an fc."""
    w, (c, *_) = layer.weight, layer.input_shape
    if layer.kind == "fc":
        want, ok = f"({layer.output_shape[0]}, {math.prod(layer.input_shape)})", w.ndim == 2 and w.shape[1] == math.prod(layer.input_shape)
    elif layer.kind == "depthwise":
        want, ok = f"({c}, 1, K, K)", w.ndim == 4 and w.shape[1] == 1 and layer.output_shape[0] == c
    else:
        want, ok = f"({layer.output_shape[0]}, {c}, K, K)", w.ndim == 4 and w.shape[1] == c
    if not ok:
        return [f"{layer.name}: weight of shape {list(w.shape)} does not fit a {layer.kind} layer of input "
                f"{list(layer.input_shape)} and output {list(layer.output_shape)} (expected {want})"]
    return []


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


def _conv_geometry_problems(layer: Layer) -> list[str]:
    """A conv whose output size does not follow from its input would make executors read or write
    outside their buffers."""
    pads, w = layer.pads, layer.weight
    if len(pads) != 4 or any(type(p) is not int or p < 0 for p in pads):
        return [f"{layer.name}: pads {list(pads)} are not 4 non-negative integers (top, left, bottom, right)"]
    if w.ndim != 4 or w.shape[2] != w.shape[3] or len(layer.input_shape) != 3 or len(layer.output_shape) != 3:
        return [f"{layer.name}: a conv needs a square (O, I, K, K) weight and (C, H, W) shapes"]
    c, h, wd = layer.input_shape
    if c * (h + pads[0] + pads[2]) * (wd + pads[1] + pads[3]) > MAX_TENSOR_ELEMENTS:
        return [f"{layer.name}: pads {list(pads)} make a padded input of more than {MAX_TENSOR_ELEMENTS:,} values"]
    if type(layer.stride) is not int or layer.stride < 1:
        return [f"{layer.name}: stride {layer.stride} is not a positive integer"]
    if layer.kind == "pointwise" and (w.shape[-1] != 1 or any(pads)):
        return [f"{layer.name}: a pointwise conv must be 1x1 without pads"]
    if tuple(layer.output_shape[1:]) != layer.conv_output_hw():
        return [f"{layer.name}: output {list(layer.output_shape[1:])} does not follow from input "
                f"{list(layer.input_shape[1:])}, pads {list(pads)}, kernel {w.shape[-1]} and stride {layer.stride} "
                f"(expected {list(layer.conv_output_hw())})"]
    return []


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez, but byte-reproducible: sorted members and a fixed timestamp."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def mean_requantization(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """(multiplier, shift) of TFLite's int8 MEAN over ``count`` values (LiteRT 2.3, reference/reduce.h
    QuantizedMeanOrSum): QuantizeMultiplier(in / out) of the float32 scales widened to double, then 1/count
    folded in: the multiplier times 2^s integer-divided by count, s = floor(log2(count)) capped at 32 and at
    31 + shift, and the shift lowered by s. The mean is then the usual requantize(sum(x - in_zp))."""
    m, shift = quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    s = min(count.bit_length() - 1, 32, 31 + shift)
    return (m << s) // count, shift - s


def quantize_multiplier(real: float) -> tuple[int, int]:
    """real = M0 * 2^shift with M0 a Q31 integer in [2^30, 2^31) (TFLite's QuantizeMultiplier)."""
    if real <= 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)  # real = mantissa * 2^shift, mantissa in [0.5, 1)
    q = math.floor(mantissa * (1 << 31) + 0.5)  # std::round, half away from zero (Python's round() is half-even)
    if q == 1 << 31:
        q //= 2
        shift += 1
    if shift < -31:  # too small to matter: the output is always the zero point
        return 0, 0
    return q, shift


def add_multipliers(a: QParams, b: QParams, out: QParams) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) int32 (3,) for [input a, input b, output] as TFLite's int8 ADD prepares them
    (kernels/add.cc): both inputs rescaled to twice the larger input scale after a 2^20 left shift,
    then to the output scale. Scales are float32 in a .tflite, so they are rounded to float32 first."""
    sa, sb, so = (float(np.float32(q.scale)) for q in (a, b, out))
    twice_max = 2.0 * max(sa, sb)
    reals = (sa / twice_max, sb / twice_max, twice_max / ((1 << ADD_LEFT_SHIFT) * so))
    pairs = [quantize_multiplier(r) for r in reals]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)
