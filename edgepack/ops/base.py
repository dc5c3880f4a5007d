"""What every op reads and writes: a tensor's int8 quantization (QParams) and one plan layer (Layer).

They live below the plan (edgepack.plan.plan re-exports them) so that an op module can describe, check
and run its layer without importing the plan format. ``Layer`` is flat: the few fields only one kind
reads (KIND_FIELDS) are owned by that kind's Op (``Op.fields``); every other kind keeps their defaults.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

PLAN_INPUT = -1  # in Layer.inputs: the plan's input tensor
MAX_TENSOR_ELEMENTS = 1 << 26  # int8 values in one tensor (3 x 4096 x 4096 is 50 Mi): more is a damaged plan
ARRAYS = ("weight", "bias", "multiplier", "shift", "weight_scale")  # what a weighted op carries
ROUNDINGS = ("double", "single")  # fc requantization: gemmlowp's two roundings, or TFLite FULLY_CONNECTED's one
POOLS = ("average", "mean", "raw_average")  # global pool: the plan's rounded average, TFLite's int8 MEAN or AVERAGE_POOL_2D


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
    kind: str  # a registered op kind (edgepack.ops.kinds())
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


# Layer fields only their owning kind may set: the values the owner accepts (None: any QParams) and the
# refusal's note. Another kind's layer keeps the field's default.
KIND_FIELDS = {
    "rounding": (ROUNDINGS, "only an fc may round once"),
    "pool": (POOLS, "only an avgpool may be a mean"),
    "input2_q": (None, "only an add reads a second input"),
}
FIELD_DEFAULTS = {f.name: f.default for f in Layer.__dataclass_fields__.values() if f.name in KIND_FIELDS}


def field_problem(layer: Layer, name: str) -> str:
    """The one-line refusal of kind-only field ``name`` of ``layer``: a value its owner does not accept,
    or any value but the default on another kind's layer."""
    choices, note = KIND_FIELDS[name]
    value = getattr(layer, name)
    if choices is None:
        return f"{layer.name}: {name} is set to {value!r} ({note})"
    return f"{layer.name}: {name} {value!r} is not one of {', '.join(choices)} (and {note})"
