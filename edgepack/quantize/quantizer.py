"""edgepack's PT2E Quantizer: the int8 scheme every backend executes.

Weights: int8 symmetric in [-127, 127], per output channel (default) or per tensor (only to
show why per-tensor collapses depthwise layers). Activations: int8 per-tensor affine.
Annotates conv2d / linear (+ BatchNorm in QAT graphs) (+ ReLU / ReLU6), average pooling,
flatten and the residual add (+ ReLU / ReLU6): the operator set of MobileNet v1 / v2-style graphs, and
max pooling (+ ReLU / ReLU6), whose output shares its input's quantization as XNNPACKQuantizer's
max_pool2d does (TFLite's MAX_POOL_2D requires it).
An add's inputs keep their producers' quantization (PT2E shares the observer of an input edge with
its producer's output observer when the specs are the same), so the int8 add rescales each input
from its own scale, as TFLite's ADD does; a product of two tensors (`*`, a squeeze-and-excite gate) is
annotated as an add (its inputs their producers', its output its own), as TFLite's MUL rescales.
"""
from __future__ import annotations

import torch
from torch.fx import Node
from torchao.quantization.pt2e import observer as obs
from torchao.quantization.pt2e.fake_quantize import FakeQuantize
from torchao.quantization.pt2e.quantizer import (
    FixedQParamsQuantizationSpec,
    QuantizationAnnotation,
    QuantizationSpec,
    Quantizer,
    SharedQuantizationSpec,
)

from edgepack.config import CalibrationMethod, WeightGranularity  # noqa: F401 (re-exported)
from edgepack.errors import UnsupportedModelError
from edgepack.quantize.layers import (ACTIVATION_OPS, ADD_OPS, BATCHNORM_OPS, COMPUTE_OPS,  # noqa: F401 (re-exported)
                                      MAXPOOL_OPS, SHARED_OPS, SUPPORTED_LAYERS, SUPPORTED_OPS, max_pool_geometry)
from edgepack.quantize.layers import MUL_OPS
from edgepack.quantize.layers import CAT_OPS
from edgepack.quantize.layers import LUT_OPS
from edgepack.quantize.layers import check_layer_geometry
from edgepack.quantize.layers import SOFTMAX_OPS

aten = torch.ops.aten


def check_graph_ops(model: torch.fx.GraphModule) -> None:
    """Refuse, by node, any tensor operator the int8 plan has no layer for (and a max pool, concat, pad or
    upsample of a geometry or mode it lacks, by layer name), before calibration spends time on the model (shape
    arithmetic of the dynamic batch is no tensor operator)."""
    for node in model.graph.nodes:
        if node.op == "call_function":
            check_layer_geometry(node)
        if node.op != "call_function" or node.target in SUPPORTED_OPS:
            continue
        if isinstance(node.meta.get("val"), torch.Tensor):
            name = getattr(node.target, "__name__", str(node.target))
            raise UnsupportedModelError(
                f"{node.name}: operator {name} is not supported by the int8 plan: build the model from {SUPPORTED_LAYERS}")


class PercentileObserver(obs.HistogramObserver):
    """The activation range between the 0.01% and 99.99% points of the observed histogram: the rare outliers a
    min/max range spends its int8 steps on are clipped instead (TensorRT's percentile calibration)."""

    PERCENTILE = 99.99

    def calculate_qparams(self):
        if self.min_val == float("inf") or self.histogram.sum() == 0:
            return super().calculate_qparams()
        cdf = torch.cumsum(self.histogram, 0) / self.histogram.sum()
        tail = 1 - self.PERCENTILE / 100
        width = (self.max_val - self.min_val) / self.bins
        low = int(torch.searchsorted(cdf, torch.tensor(tail, dtype=cdf.dtype)))
        high = int(torch.searchsorted(cdf, torch.tensor(1 - tail, dtype=cdf.dtype)))
        return self._calculate_qparams(self.min_val + low * width, self.min_val + (high + 1) * width)


_ACTIVATION_OBSERVERS = {
    CalibrationMethod.HISTOGRAM: obs.HistogramObserver,
    CalibrationMethod.MINMAX: obs.MinMaxObserver,
    CalibrationMethod.MOVING_AVERAGE: obs.MovingAverageMinMaxObserver,
    CalibrationMethod.PERCENTILE: PercentileObserver,
}


def activation_spec(qat: bool, method: CalibrationMethod = CalibrationMethod.HISTOGRAM) -> QuantizationSpec:
    if qat:  # PTQ's histogram ranges, observed once on the calibration set and then fixed (edgepack.quantize.qat)
        ctr = FakeQuantize.with_args(observer=obs.HistogramObserver, eps=2**-12)
    else:
        ctr = _ACTIVATION_OBSERVERS[CalibrationMethod(method)].with_args(eps=2**-12)
    return QuantizationSpec(
        dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
        is_dynamic=False, observer_or_fake_quant_ctr=ctr,
    )


# TFLite's int8 SOFTMAX output quantization (edgepack.ops.softmax.SOFTMAX_OUTPUT), fixed, not observed
SOFTMAX_OUTPUT_SPEC = FixedQParamsQuantizationSpec(dtype=torch.int8, scale=1.0 / 256, zero_point=-128, quant_min=-128,
                                                   quant_max=127, qscheme=torch.per_tensor_affine)


def weight_spec(granularity: WeightGranularity, qat: bool) -> QuantizationSpec:
    per_channel = granularity == WeightGranularity.PER_CHANNEL
    if per_channel:
        observer = obs.MovingAveragePerChannelMinMaxObserver if qat else obs.PerChannelMinMaxObserver
        qscheme = torch.per_channel_symmetric
    else:
        observer = obs.MovingAverageMinMaxObserver if qat else obs.MinMaxObserver
        qscheme = torch.per_tensor_symmetric
    ctr = FakeQuantize.with_args(observer=observer) if qat else observer.with_args(eps=2**-12)
    return QuantizationSpec(
        dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=qscheme,
        ch_axis=0 if per_channel else None, is_dynamic=False, observer_or_fake_quant_ctr=ctr,
    )


def _only_user(node: Node) -> Node | None:
    users = [u for u in node.users if u.op == "call_function"]
    return users[0] if len(users) == 1 else None


def _batchnorm_output(node: Node) -> Node:
    """In QAT graphs batch_norm may be followed by getitem[0]; return the tensor node."""
    user = _only_user(node)
    if user is not None and user.target is __import__("operator").getitem and user.args[1] == 0:
        return user
    return node


def is_relu6(node: Node) -> bool:
    return node.target in (aten.hardtanh.default, aten.hardtanh_.default) and tuple(node.args[1:3]) == (0.0, 6.0)


def is_tensor_add(node: Node) -> bool:
    """x + y of two tensors, unscaled (alpha=1): the residual add the int8 plan has."""
    return (len(node.args) == 2 and all(isinstance(a, Node) for a in node.args)
            and node.kwargs.get("alpha", 1) == 1)


def is_tensor_mul(node: Node) -> bool:
    """x * y of two tensors (a squeeze-and-excite gate times its map), not a tensor times a number."""
    return len(node.args) == 2 and all(isinstance(a, Node) for a in node.args)


def is_activation(node: Node) -> bool:
    return node.target in (aten.relu.default, aten.relu_.default) or is_relu6(node)


class EdgepackQuantizer(Quantizer):
    """Annotates a torch.export graph with edgepack's int8 scheme (PTQ observers or QAT fake-quant)."""

    def __init__(self, granularity: WeightGranularity = WeightGranularity.PER_CHANNEL, qat: bool = False,
                 calibration_method: CalibrationMethod = CalibrationMethod.HISTOGRAM):
        super().__init__()
        self.granularity = WeightGranularity(granularity)
        self.qat = qat
        self.calibration_method = CalibrationMethod(calibration_method)

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        act, weight = activation_spec(self.qat, self.calibration_method), weight_spec(self.granularity, self.qat)
        for node in model.graph.nodes:
            if node.op != "call_function" or "quantization_annotation" in node.meta:
                continue
            if node.target in COMPUTE_OPS:
                self._annotate_compute(node, act, weight)
            elif node.target in ADD_OPS and is_tensor_add(node):
                self._annotate_add(node, act)
            elif node.target in MUL_OPS and is_tensor_mul(node):
                self._annotate_add(node, act)  # a product's inputs and output are quantized as a sum's
            elif node.target in MAXPOOL_OPS and isinstance(node.args[0], Node):
                self._annotate_max_pool(node, act)
            elif (node.target in LUT_OPS or is_activation(node)) and isinstance(node.args[0], Node):
                # an elementwise function, or a ReLU/ReLU6 no earlier layer fused (those are annotated by now)
                node.meta["quantization_annotation"] = QuantizationAnnotation(  # input and output observed apart
                    input_qspec_map={node.args[0]: act}, output_qspec=act, _annotated=True)
            elif node.target in SOFTMAX_OPS and isinstance(node.args[0], Node):  # a kept softmax (the model's end)
                node.meta["quantization_annotation"] = QuantizationAnnotation(  # input: its producer's quantization
                    input_qspec_map={node.args[0]: act}, output_qspec=SOFTMAX_OUTPUT_SPEC, _annotated=True)
            elif node.target in CAT_OPS and all(isinstance(x, Node) for x in node.args[0]):
                self._annotate_cat(node, act)
            elif node.target in SHARED_OPS and isinstance(node.args[0], Node):
                inp = node.args[0]
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={inp: act},
                    output_qspec=SharedQuantizationSpec((inp, node)),
                    _annotated=True,
                )
        return model

    @staticmethod
    def _annotate_add(node: Node, act: QuantizationSpec) -> None:
        """Both inputs and the output (after a fused ReLU/ReLU6, if any) int8 per-tensor."""
        a, b = node.args[:2]
        node.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={a: act, b: act}, _annotated=True)
        user = _only_user(node)
        last = user if user is not None and is_activation(user) else node
        ann = last.meta.get("quantization_annotation") or QuantizationAnnotation(_annotated=True)
        ann.output_qspec = act
        last.meta["quantization_annotation"] = ann

    @staticmethod
    def _annotate_max_pool(node: Node, act: QuantizationSpec) -> None:
        """The input int8 per-tensor; the output (after a fused ReLU/ReLU6, if any) in the input's quantization."""
        inp = node.args[0]
        node.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={inp: act}, _annotated=True)
        user = _only_user(node)
        last = user if user is not None and is_activation(user) else node
        ann = last.meta.get("quantization_annotation") or QuantizationAnnotation(_annotated=True)
        ann.output_qspec = SharedQuantizationSpec((inp, node))
        last.meta["quantization_annotation"] = ann

    @staticmethod
    def _annotate_cat(node: Node, act: QuantizationSpec) -> None:
        """Every input and the output in the first input's quantization, as XNNPACKQuantizer's cat: PT2E then
        gives the producers of all inputs one observer, and the int8 concat is a copy (TFLite's int8
        CONCATENATION requires one quantization)."""
        first, *rest = node.args[0]
        shared = SharedQuantizationSpec((first, node))
        qspecs = {first: act, **{x: shared for x in rest if x is not first}}
        node.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=qspecs, output_qspec=shared,
                                                                      _annotated=True)

    @staticmethod
    def _annotate_compute(node: Node, act: QuantizationSpec, weight: QuantizationSpec) -> None:
        inputs = {node.args[0]: act, node.args[1]: weight}
        node.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
        # the quantized output sits after the fused BatchNorm (QAT) and activation, if any
        last = node
        user = _only_user(last)
        if user is not None and user.target in BATCHNORM_OPS:
            user.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
            last = _batchnorm_output(user)
            if last is not user:
                last.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)
            user = _only_user(last)
        if user is not None and is_activation(user):
            last = user
        ann = last.meta.get("quantization_annotation") or QuantizationAnnotation(_annotated=True)
        ann.output_qspec = act
        last.meta["quantization_annotation"] = ann
        if last is not node and "quantization_annotation" not in node.meta:
            node.meta["quantization_annotation"] = QuantizationAnnotation(_annotated=True)

    def validate(self, model: torch.fx.GraphModule) -> None:
        pass
