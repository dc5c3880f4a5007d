"""softmax as TFLite's SOFTMAX, both ways.

Export: SOFTMAX (SoftmaxOptions.beta) from the (1, classes) logits to int8 at scale 1/256, zero point -128.

Import: a trailing SOFTMAX (before an optional DEQUANTIZE) is the plan's softmax layer only when the user
asks to keep it (``--keep-softmax``; tflite_import decides where the plan ends); by default it is dropped and
the plan outputs the logits. A SOFTMAX anywhere else is refused by name.
"""
from __future__ import annotations

from edgepack.interop.tflite_ops import EXPORTS, IMPORTS
from edgepack.interop.tflite_reader import Reader, Tensor, Value
from edgepack.interop.tflite_writer import Graph, builtin_options
from edgepack.ops.softmax import SoftmaxParams
from edgepack.plan.plan import Layer


@EXPORTS.register("softmax")
def export_softmax(g: Graph, sources: list[int], layer: Layer, prefix: str) -> int:
    """SOFTMAX of the logits, output in TFLite's int8 softmax quantization."""
    y = g.activation(prefix, g.tensors[sources[0]].shape, layer.output_q)
    g.op("SOFTMAX", sources[:1], [y], beta=layer.params.beta)
    return y


@builtin_options("SOFTMAX", 2)  # version 2: int8
def _softmax_options(b, tfl, o, vector):
    tfl.SoftmaxOptionsStart(b)
    tfl.SoftmaxOptionsAddBeta(b, float(o["beta"]))
    return tfl.BuiltinOptions.SoftmaxOptions, tfl.SoftmaxOptionsEnd(b)


@IMPORTS.register("SOFTMAX")
def import_softmax(r: Reader, i: int, op, inputs: list[int], value: Value, out: Tensor) -> Layer:
    """The plan's softmax over a (1, classes) vector (the walker reaches a SOFTMAX only when it is kept)."""
    tail = r.op_names[i + 1:]
    if tail not in ([], ["DEQUANTIZE"]):
        r.refuse(i, "is not at the model's end", "only a trailing SOFTMAX of the logits is imported")
    if len(value.shape) != 1:
        r.refuse(i, f"reads a {list(value.shape)} tensor", "only a SOFTMAX of the (1, classes) logits is imported")
    beta = float(r.options(op, "SoftmaxOptions").Beta())
    out_q = out.qparams(f"--model {r.path}: op {i}")
    return Layer(f"layer{i}_softmax", "softmax", tuple(value.shape), tuple(value.shape), input_q=value.q,
                 output_q=out_q, params=SoftmaxParams(beta))
