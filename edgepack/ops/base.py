"""What every op reads and writes: a tensor's int8 quantization (QParams) and one plan layer (Layer).

They live below the plan (edgepack.plan.plan re-exports them) so that an op module can describe, check
and run its layer without importing the plan format. ``Layer`` holds what every op has (shapes,
quantization, clamp, inputs, arrays; stride and pads for the windowed ops); what only one op reads is its
typed ``Params`` (an fc's rounding, a pool's mode, an add's second input), declared by its op module.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

from edgepack import ops  # the registry (this package's __init__), which imports nothing of this module

PLAN_INPUT = -1  # in Layer.inputs: the plan's input tensor
MAX_TENSOR_ELEMENTS = 1 << 26  # int8 values in one tensor (3 x 4096 x 4096 is 50 Mi): more is a damaged plan
ARRAYS = ("weight", "bias", "multiplier", "shift", "weight_scale")  # what a weighted op carries


@dataclass(frozen=True)
class QParams:
    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x / self.scale) + self.zero_point, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


@dataclass(frozen=True)
class Params:
    """One op's own parameters, typed and frozen: each op module subclasses it (``Op.params``). Stored in a
    plan's layer as "params" (plan format v4); QParams fields nest as {scale, zero_point}."""

    def to_json(self) -> dict:
        return asdict(self)

    def more_inputs_q(self) -> tuple[QParams, ...]:
        """The quantization of the inputs after the first (an add's second): none for a one-input op."""
        return ()

    @classmethod
    def from_json(cls, d: dict) -> "Params":
        """A TypeError for an unknown or missing key: the plan loader reports the file as malformed."""
        if not isinstance(d, dict):
            raise TypeError(f"params {d!r} are not an object")
        qparams = {f.name for f in fields(cls) if f.type in (QParams, "QParams", "QParams | None")}
        return cls(**{k: QParams(**v) if k in qparams and v is not None else v for k, v in d.items()})


@dataclass
class Layer:
    name: str
    kind: str  # a registered op kind (edgepack.ops.kinds())
    input_shape: tuple[int, ...]  # (C, H, W) or (C,), no batch
    output_shape: tuple[int, ...]
    input_q: QParams
    output_q: QParams
    act_min: int = -128  # fused activation clamp in the output's int8 domain
    act_max: int = 127
    stride: int | tuple[int, int] = 1  # equal strides as one int (plans before rectangular ones), else (sh, sw)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # zero-point rows/columns added (top, left, bottom, right)
    activation: str = "none"  # none | relu | relu6
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    inputs: tuple[int, ...] = ()  # layers whose outputs this one reads (PLAN_INPUT = the plan input); () = previous
    params: Params | None = None  # the op's own (Op.params); None takes its defaults when it has them

    def __post_init__(self):
        """A layer built without its op's parameters gets their defaults (an fc rounds twice, a pool averages);
        an op whose parameters have no defaults (an add's second input) is left for Plan.problems to name."""
        if self.params is None and isinstance(self.kind, str):
            op = ops.get(self.kind)
            if op is not None and op.params is not None and all(
                    f.default is not MISSING or f.default_factory is not MISSING for f in fields(op.params)):
                self.params = op.params()
        self.stride = pair_or_int(self.stride)

    @property
    def strides(self) -> tuple[int, int]:
        """(stride along H, stride along W)."""
        return pair(self.stride)

    def inputs_q(self) -> tuple[QParams, ...]:
        """Each input's quantization, in the order of ``inputs``."""
        return (self.input_q,) + (self.params.more_inputs_q() if self.params is not None else ())

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

    def meta(self) -> dict:
        d = asdict(self)
        d.pop("arrays")
        d.pop("params")
        if self.params is not None:
            d["params"] = self.params.to_json()
        d["input_shape"], d["output_shape"] = list(self.input_shape), list(self.output_shape)
        d["pads"] = list(self.pads)
        d["inputs"] = list(self.inputs)
        return d

    def conv_output_hw(self) -> tuple[int, int]:
        """(H, W) a conv of this layer's (KH, KW) kernel, strides and pads makes of its input."""
        return window_output_hw(self, tuple(self.weight.shape[-2:]))


def pair(v) -> tuple[int, int]:
    """An (H, W) pair from one int (square) or two."""
    return (v, v) if not isinstance(v, (tuple, list)) else (v[0], v[1]) if len(v) == 2 else tuple(v)


def pair_or_int(v):
    """How a layer keeps a stride or window: one int when H and W agree (plan files before rectangular layers
    stay byte-identical), else the (H, W) tuple; a malformed value is kept for the op's problems() to name."""
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return v[0] if v[0] == v[1] and type(v[0]) is int else tuple(v)
    return v


def pair_problems(what: str, v) -> list[str]:
    """A stride or window must be a positive integer or two of them (H, W)."""
    values = v if isinstance(v, (tuple, list)) else (v,)
    if len(values) not in (1, 2) or any(type(d) is not int or d < 1 for d in values):
        return [f"{what} {v!r} is not a positive integer or two of them (H, W)"]
    return []


def window_output_hw(layer: Layer, window: tuple[int, int]) -> tuple[int, int]:
    """(H, W) a (KH, KW) window at the layer's strides and pads makes of its input:
    floor((H + top + bottom - KH) / SH) + 1, and the same across."""
    (kh, kw), (sh, sw), (top, left, bottom, right) = window, layer.strides, layer.pads
    _, h, w = layer.input_shape
    return (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
