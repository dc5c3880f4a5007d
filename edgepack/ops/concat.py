"""``concat``: two or more int8 (C_k, H, W) maps joined on the channel axis (NCHW C; TFLite's NHWC axis 3),
TFLite's int8 CONCATENATION (reference_ops::Concatenation): a copy, input k's channels after those of inputs
0..k-1. TFLite's int8 kernel refuses to rescale (its Prepare requires every input's scale and zero point to
equal the output's; ConcatenationWithScaling serves uint8 only) and takes no fused activation, so the plan's
concat has one quantization for all its tensors and no clamp: every executor copies bytes, bit-exact by
construction. Layer.input_q is the first input's quantization, ``ConcatParams.inputs_q`` those of inputs 2..N.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepack.ops import Op, register
from edgepack.ops.base import Layer, Params, QParams


@dataclass(frozen=True)
class ConcatParams(Params):
    inputs_q: tuple[QParams, ...]  # the quantization of inputs 2..N (Layer.input_q is the first's)

    def more_inputs_q(self) -> tuple[QParams, ...]:
        return tuple(self.inputs_q)

    @classmethod
    def from_json(cls, d: dict) -> "ConcatParams":
        """{"inputs_q": [{scale, zero_point}, ...]}; a TypeError for anything else (a malformed plan)."""
        if not isinstance(d, dict) or set(d) != {"inputs_q"} or not isinstance(d["inputs_q"], list):
            raise TypeError(f"concat params {d!r} are not {{'inputs_q': [{{scale, zero_point}}, ...]}}")
        return cls(tuple(QParams(**q) for q in d["inputs_q"]))


def concat_reference(layer: Layer, *inputs: np.ndarray) -> np.ndarray:
    """The inputs' channels one after the other (no rescaling: problems() proved one quantization)."""
    return np.concatenate([x.reshape(x.shape[0], -1, *layer.output_shape[1:]) for x in inputs], axis=1)


def concat_problems(plan, i: int) -> list[str]:
    """(C_k, H, W) inputs of one H and W whose channels sum to the output's, one quantization parameter set
    per input, all equal to the output's (TFLite's int8 CONCATENATION does not rescale), no clamp, no arrays."""
    layer = plan.layers[i]
    sources = plan.inputs_of(i)
    if not isinstance(layer.params, ConcatParams) or len(layer.params.inputs_q) != len(sources) - 1:
        return [f"{layer.name}: a concat of {len(sources)} inputs needs inputs_q for each input after the first "
                "(ConcatParams)"]
    shapes = [plan.tensor_shape(j) for j in sources]
    out = tuple(layer.output_shape)
    if any(len(s) != 3 or s[1:] != out[1:] for s in shapes + [tuple(layer.input_shape)]) or len(out) != 3:
        return [f"{layer.name}: a concat joins (C, H, W) maps of one height and width into one, got "
                f"{[list(s) for s in shapes]} -> {list(out)}"]
    if sum(s[0] for s in shapes) != out[0]:
        return [f"{layer.name}: output channels {out[0]} are not the sum of the inputs' "
                f"{[s[0] for s in shapes]}"]
    if any(q != layer.output_q for q in layer.inputs_q()):
        return [f"{layer.name}: a concat's inputs must all have its output's scale and zero point (TFLite's int8 "
                "CONCATENATION does not rescale): quantize them together"]
    if (layer.act_min, layer.act_max) != (-128, 127) or layer.activation != "none":
        return [f"{layer.name}: a concat takes no activation (TFLite's CONCATENATION fuses none)"]
    if layer.arrays:
        return [f"{layer.name}: a concat has no arrays, got {', '.join(sorted(layer.arrays))}"]
    return []


CONCAT = register(Op("concat", concat_reference, concat_problems, arity=2, variadic=True, own_input_shapes=True, params=ConcatParams,
                     summary="channel concatenation"))
