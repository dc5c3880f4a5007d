"""The int8 plan: what every integer executor (numpy reference, C runtime, TVM int8) runs.

Format on disk (documented in README "Int8 plan format"):
  plan.json  {"format": "edgepack-int8-plan", "version": 4, "layout": "NCHW",
              "input": {shape, scale, zero_point}, "output": {...}, "layers": [Layer...]}
             Version 2 stores each layer's zero padding as "pads": [top, left, bottom, right]
             (TFLite's SAME pads stride-2 layers bottom/right only); version 1 stored one symmetric
             "padding": p and still loads, as pads (p, p, p, p).
             Version 3 makes the plan a graph: each layer's "inputs" are the indices of the layers it
             reads (-1 = the plan input; [] = the previous layer, so v1/v2 chains load unchanged),
             and the "add" kind adds two tensors (its second input's QParams in "input2_q").
             Version 4 moves what only one op reads into the layer's "params" (its op's typed Params,
             absent for ops without any): an fc's {"rounding": "double" (gemmlowp) | "single" (TFLite's
             FULLY_CONNECTED)}, an avgpool's {"pool": "average" | "mean" (TFLite's int8 MEAN) |
             "raw_average" (TFLite's int8 AVERAGE_POOL_2D)}, an add's {"input2_q": {scale, zero_point}}.
             Versions 1-3 kept them as flat layer keys "rounding", "pool", "input2_q" and still load
             (missing ones take the defaults; one set on a layer of another kind is refused).
             A layer's "stride" (and a maxpool's "window") is one int when H and W agree, as every
             earlier plan wrote it, else [along H, along W] (a 1-D conv's [1, 2]); a conv's kernel is
             its weight's (KH, KW), any rectangle (keyword spotting's 10x4).
             Version 5 is written only by a plan with several outputs (a detector's heads, an autoencoder's code
             and reconstruction): "outputs": [{layer, shape, scale, zero_point}...] in order, "output" the first.
             Every other plan is still written as version 4, byte for byte: its one output is the last layer.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgepack import ops
from edgepack.errors import ArtifactError
# Layer, QParams and the shared arithmetic live in edgepack.ops (below the plan); imported from here too.
from edgepack.ops.arith import ADD_LEFT_SHIFT, add_multipliers, mean_requantization, quantize_multiplier  # noqa: F401
from edgepack.ops.base import (  # noqa: F401
    ARRAYS, MAX_TENSOR_ELEMENTS, PLAN_INPUT, Layer, Params, QParams)

FORMAT, VERSION = "edgepack-int8-plan", 5
SINGLE_OUTPUT_VERSION = 4  # what a plan whose one output is its last layer is written as (older edgepacks read it)
READABLE_VERSIONS = (1, 2, 3, 4, 5)
# Versions 1-3: an op's parameters were flat layer keys, with these defaults on every kind
FLAT_PARAMS = {"rounding": "double", "pool": "average", "input2_q": None}


@dataclass
class Plan:
    input_q: QParams
    input_shape: tuple[int, ...]
    layers: list[Layer]
    outputs: tuple[int, ...] = ()  # the layers whose tensors the plan outputs, in order; () = the last layer

    @property
    def output_layers(self) -> tuple[int, ...]:
        return tuple(self.outputs) or (len(self.layers) - 1,)

    @property
    def output_q(self) -> QParams:
        """The first (usually only) output's quantization."""
        return self.layers[self.output_layers[0]].output_q

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layers[self.output_layers[0]].output_shape

    @property
    def output_qs(self) -> tuple[QParams, ...]:
        return tuple(self.layers[i].output_q for i in self.output_layers)

    @property
    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(self.layers[i].output_shape) for i in self.output_layers)

    def multi_output(self) -> bool:
        return len(self.output_layers) > 1

    @property
    def output_row_shape(self) -> tuple[int, ...]:
        """One image's output as executors hand it over: the output's shape, or for several outputs each one
        flattened and concatenated in plan order (as TFLite Micro's output tensors follow one another)."""
        return tuple(self.output_shape) if not self.multi_output() else (sum(map(math.prod, self.output_shapes)),)

    def output_segments(self) -> list[tuple[int, int]]:
        """(start, stop) of each output in a row of output_row_shape."""
        stops = np.cumsum([math.prod(s) for s in self.output_shapes]).tolist()
        return list(zip([0] + stops[:-1], stops))

    def dequantize_outputs(self, q: np.ndarray) -> np.ndarray:
        """Real values of int8 rows of output_row_shape, each output segment with its own scale and zero point."""
        if not self.multi_output():
            return self.output_q.dequantize(q)
        return np.concatenate([oq.dequantize(q[:, a:b]) for oq, (a, b) in zip(self.output_qs, self.output_segments())], axis=1)

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
        meta = {
            "format": FORMAT, "version": SINGLE_OUTPUT_VERSION, "layout": "NCHW",
            "input": {"shape": list(self.input_shape), **asdict(self.input_q)},
            "output": {"shape": list(self.output_shape), **asdict(self.output_q)},
            "layers": [layer.meta() for layer in self.layers],
        }
        if self.output_layers != (len(self.layers) - 1,):
            meta["version"] = VERSION
            meta["outputs"] = [{"layer": i, "shape": list(self.layers[i].output_shape), **asdict(self.layers[i].output_q)}
                               for i in self.output_layers]
        return meta

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
        found = self._header_problems() or self._output_problems()
        if found:
            return found
        for i in range(len(self.layers)):
            found += self._layer_problems(i)
        return found

    def _output_problems(self) -> list[str]:
        """Outputs are distinct layers, and the last layer is one of them (else its work is never used)."""
        outputs, last = self.outputs, len(self.layers) - 1
        if not isinstance(outputs, (tuple, list)) or any(type(i) is not int or not 0 <= i <= last for i in outputs):
            return [f"outputs {outputs!r} are not layer indices in [0, {last}]"]
        if len(set(outputs)) != len(outputs):
            return [f"outputs {list(outputs)} name a layer twice"]
        if outputs and last not in outputs:
            return [f"outputs {list(outputs)} leave out the last layer {last}, whose result would be unused"]
        return []

    def _header_problems(self) -> list[str]:
        if not isinstance(self.layers, list) or not self.layers:
            return ["the plan has no layers (it needs at least one)"]
        shape = self.input_shape
        if not _is_shape(shape) or len(shape) not in (1, 3):
            return [f"input shape {list(shape) if isinstance(shape, (list, tuple)) else shape!r} is not 3 positive "
                    "integers (C, H, W) or 1 (a vector of F values)"]
        if math.prod(shape) > MAX_TENSOR_ELEMENTS:
            return [f"input shape {list(shape)} has more than {MAX_TENSOR_ELEMENTS:,} values"]
        return [f"plan input: {p}" for p in _qparams_problems(self.input_q)]

    def _layer_problems(self, i: int) -> list[str]:
        """The checks every layer gets, then its op's own (edgepack.ops: shapes, arrays, ranges)."""
        layer = self.layers[i]
        op = ops.get(layer.kind) if isinstance(layer.kind, str) else None
        if op is None:
            return [f"{layer.name}: unknown kind {layer.kind!r}"]
        found = (self._input_problems(i, op) or _params_problems(layer, op) or self._shape_problems(i, op)
                 or _activation_problems(layer))
        return found or op.problems(self, i)

    def _shape_problems(self, i: int, op: ops.Op) -> list[str]:
        """Each shape is positive integers of a sane size, and each input is what its producer outputs
        (a (C, H, W) map and its flattened (C*H*W,) vector are one tensor: a flatten moves no data). For an op
        with own_input_shapes, input_shape is its first input's and its problems() checks the others (a concat's
        channel counts, a mul's gate)."""
        layer = self.layers[i]
        for what, shape in (("input", layer.input_shape), ("output", layer.output_shape)):
            if not _is_shape(shape):
                return [f"{layer.name}: {what} shape {shape!r} is not positive integers"]
            if math.prod(shape) > MAX_TENSOR_ELEMENTS:
                return [f"{layer.name}: {what} shape {list(shape)} has more than {MAX_TENSOR_ELEMENTS:,} values"]
        for j in self.inputs_of(i)[:1] if op.own_input_shapes else self.inputs_of(i):
            made, need = self.tensor_shape(j), tuple(layer.input_shape)
            if not _is_shape(made):
                continue  # its producer's own problem, reported there
            if (made != need) if len(made) == len(need) else math.prod(made) != math.prod(need):
                source = "the plan input" if j == PLAN_INPUT else self.layers[j].name
                return [f"{layer.name}: its input shape {list(need)} is not the {list(made)} that {source} outputs"]
        return []

    def _input_problems(self, i: int, op: ops.Op) -> list[str]:
        """Every input must be the plan input or an earlier layer (the layers are in execution order), as many
        as the op reads (at least that many for a variadic op)."""
        layer = self.layers[i]
        inputs, wanted = self.inputs_of(i), op.arity
        if any(type(j) is not int or not PLAN_INPUT <= j < i for j in inputs):
            return [f"{layer.name}: inputs {list(inputs)} are not the plan input (-1) or earlier layers (< {i})"]
        if op.variadic and len(inputs) < wanted:
            return [f"{layer.name}: a {layer.kind} layer reads {wanted} or more inputs, not {len(inputs)}"]
        if len(inputs) != wanted and not op.variadic:
            return [f"{layer.name}: a {layer.kind} layer reads {wanted} input(s), not {len(inputs)}"]
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
            m["params"] = _params_from_json(m, meta["version"])
            layers.append(Layer(
                **{**m, "input_q": QParams(**m["input_q"]), "output_q": QParams(**m["output_q"]),
                   "input_shape": tuple(m["input_shape"]), "output_shape": tuple(m["output_shape"])},
                arrays=own,
            ))
        inp = meta["input"]
        outputs = tuple(int(o["layer"]) for o in meta["outputs"]) if meta["version"] >= 5 else ()
        return cls(QParams(inp["scale"], inp["zero_point"]), tuple(inp["shape"]), layers, outputs)


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


def _params_from_json(m: dict, version: int) -> Params | None:
    """A layer's typed parameters: v4's "params" object, or (v1-v3) its op's flat keys. A flat key set to
    other than its default on a kind that does not own it is a damaged plan (a ValueError: malformed)."""
    op = ops.get(m["kind"]) if isinstance(m.get("kind"), str) else None
    if version >= 4:
        given = m.pop("params", None)
        return op.params.from_json(given) if op is not None and op.params is not None and given is not None else given
    flat = {k: m.pop(k) for k in FLAT_PARAMS if k in m}
    owned = {f for f in getattr(op.params, "__dataclass_fields__", ())} if op is not None and op.params else set()
    for key, value in flat.items():
        if key not in owned and value != FLAT_PARAMS[key]:
            raise ValueError(f"layer {m.get('name')!r}: {key} {value!r} is set on a {m.get('kind')} layer, which has none")
    kept = {k: v for k, v in flat.items() if k in owned and v is not None}
    return op.params.from_json(kept) if owned and kept else None


def _params_problems(layer: Layer, op: ops.Op) -> list[str]:
    """The layer's params are its op's typed Params (none for an op without any)."""
    wanted, got = op.params, layer.params
    if got is not None and type(got) is not wanted:
        takes = f"it takes {wanted.__name__}" if wanted else "it takes none"
        return [f"{layer.name}: params {type(got).__name__} are not the {layer.kind} op's ({takes})"]
    return []


def _activation_problems(layer: Layer) -> list[str]:
    more = layer.params.more_inputs_q() if isinstance(layer.params, Params) else ()
    qs = [("input", layer.input_q), ("output", layer.output_q)] + [(f"input{n}", q) for n, q in enumerate(more, 2)]
    for what, q in qs:
        bad = _qparams_problems(q)
        if bad:
            return [f"{layer.name}: {what} {bad[0]}"]
    lo, hi = layer.act_min, layer.act_max
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi)) or not -128 <= lo <= hi <= 127:
        return [f"{layer.name}: activation clamp [{lo!r}, {hi!r}] is not an int8 range"]
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
