"""The int8 plan as a TFLite flatbuffer (.tflite), for LiteRT / TFLite and the tools that read it.

Every op is a TFLite builtin whose integer arithmetic is the plan's (README "Arithmetic"), so LiteRT's
reference kernels (op resolver BUILTIN_REF) reproduce edgepack's int8 outputs bit for bit:

- activations NHWC int8 (the model input too), one scale / zero point per tensor (the plan's QParams);
- conv and pointwise weights OHWI, depthwise 1HWC, per-channel symmetric int8 with
  quantized_dimension 0 (3 for depthwise), as the TFLite converter writes them; bias int32 with scale
  in_scale * w_scale[c]. TFLite derives each requantization multiplier from these float32 scales in
  double precision, as the plan builder did, so it gets the plan's Q31 multipliers and shifts;
- the plan's (top, left, bottom, right) pads become SAME where they are TFLite's SAME pads for that
  shape (bottom/right first: a stride-2 layer on an even input pads 0 top / 1 bottom), VALID where
  they are 0, and otherwise (PyTorch's symmetric 1 on such a layer) an explicit PAD (filled with the
  input's zero point, i.e. real 0) before a VALID conv;
- the global average pool is AVERAGE_POOL_2D over the whole map (in int16 with zero point 0 when the
  count is even, see tflite_ops.avgpool); a "mean" pool (imported from a MEAN) is MEAN again;
- the fc is a CONV_2D whose kernel covers the map, then RESHAPE to (1, classes): LiteRT's
  FULLY_CONNECTED rounds acc * M once, the plan's fc twice (see tflite_ops.fc); an fc with
  rounding "single" (imported from a FULLY_CONNECTED) is FULLY_CONNECTED again;
- an add is ADD (its int8 kernel prepares the plan's add multipliers from the two input scales and the
  output scale, see edgepack.ops.arith.add_multipliers); a residual tensor feeds both its readers;
- fused ReLU / ReLU6 become TFLite fused activations whose clamp equals the plan's act_min/act_max.

LiteRT's default CPU path (XNNPACK) requantizes in fp32 and differs by one step on some values.
The bytes depend on the plan alone (no timestamps, no version strings): same plan, same file.
This module walks the plan; each op kind's lowering is its module in edgepack.interop.tflite_ops (EXPORTS),
the graph and its flatbuffer writer are edgepack.interop.tflite_writer.
"""
from __future__ import annotations

from pathlib import Path

from edgepack import ops
from edgepack.errors import UnsupportedModelError
from edgepack.interop import tflite_ops
from edgepack.interop.tflite_ops import EXPORTS
from edgepack.interop.tflite_writer import Graph, serialize
from edgepack.plan.plan import PLAN_INPUT, Plan


def plan_to_tflite(plan: Plan) -> bytes:
    """The plan as .tflite bytes: int8 NHWC input (1, H, W, C) or (1, F) -> int8 logits (1, classes); a plan with
    several outputs has as many subgraph outputs, in its order (a map NHWC, a vector (1, F))."""
    EXPORTS.check(plan)
    if not plan.layers or not plan.multi_output() and not ops.get(plan.layers[-1].kind).classifier:
        raise UnsupportedModelError("only plans that end in an fc classifier (or have several outputs) can be written "
                                    "as .tflite")
    g = Graph()
    shape = plan.input_shape  # (C, H, W) as NHWC; a vector (F,) as (1, F)
    nhwc = (1, shape[1], shape[2], shape[0]) if len(shape) == 3 else (1, *shape)
    produced = {PLAN_INPUT: g.activation("input", nhwc, plan.input_q)}  # plan tensor -> .tflite tensor
    g.input = produced[PLAN_INPUT]
    for i, layer in enumerate(plan.layers):
        sources = [produced[j] for j in plan.inputs_of(i)]
        for t, q in zip(sources, layer.inputs_q()):
            if g.quant[t] != q:
                raise UnsupportedModelError(f"{layer.name}: its input quantization differs from its producer's output: "
                                            "the plan has no requantize op to express that in .tflite")
        produced[i] = EXPORTS[layer.kind](g, sources, layer, f"{i}.{layer.name}")
    g.output, *g.more_outputs = (produced[i] for i in plan.output_layers)
    return serialize(g)


def write_tflite(plan: Plan, path: Path) -> Path:
    """Write ``plan_to_tflite(plan)`` to ``path``."""
    path = Path(path)
    path.write_bytes(plan_to_tflite(plan))
    return path


def _serialize(g: Graph) -> bytes:
    """tflite_writer.serialize once every op module has registered its options writers (for graphs built by
    hand, as tests/e2e/test_imported_model_bench.py does)."""
    tflite_ops.load()
    return serialize(g)
