"""The mechanics of the automatic calibration search (--calibration-method auto): calibrate ONCE, with one
observer per activation that keeps what every method needs (the histogram, the exact min/max, the moving-average
min/max), then convert as many times as there are methods, each conversion reading its own method's range.
What each method's conversion gives is exactly what a compile with that method gives (the same statistics from
the same batches, the same range arithmetic), so the search re-uses the calibration pass instead of repeating
it. Judging the trials against the accuracy gate is the front end's part (edgepack.frontends.calibration_search).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import torch
from torchao.quantization.pt2e import observer as obs
from torchao.quantization.pt2e.quantizer import QuantizationSpec

from edgepack.config import CalibrationMethod, WeightGranularity
from edgepack.data import Dataset
from edgepack.quantize.ptq import prepare_calibrated
from edgepack.quantize.quantizer import EdgepackQuantizer, PercentileObserver

# the order the search tries them: the default first, then the others from least to most clipping-prone
METHODS = (CalibrationMethod.HISTOGRAM, CalibrationMethod.PERCENTILE, CalibrationMethod.MINMAX,
           CalibrationMethod.MOVING_AVERAGE)
AVERAGING_CONSTANT = 0.01  # MovingAverageMinMaxObserver's default, which --calibration-method moving-average uses


class SearchObserver(PercentileObserver):
    """A histogram observer that also keeps the moving-average min/max, and answers calculate_qparams as the
    observer of ``method`` would have (the histogram's min_val / max_val are the exact extremes minmax takes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = CalibrationMethod.HISTOGRAM
        self.register_buffer("average_min", torch.tensor(float("inf")))
        self.register_buffer("average_max", torch.tensor(float("-inf")))

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel():
            low, high = torch.aminmax(x_orig.detach().to(self.average_min.dtype))
            if self.average_min == float("inf") and self.average_max == float("-inf"):
                self.average_min.copy_(low)
                self.average_max.copy_(high)
            else:  # MovingAverageMinMaxObserver.forward's arithmetic
                self.average_min.copy_(self.average_min + AVERAGING_CONSTANT * (low - self.average_min))
                self.average_max.copy_(self.average_max + AVERAGING_CONSTANT * (high - self.average_max))
        return super().forward(x_orig)

    def calculate_qparams(self):
        if self.method == CalibrationMethod.PERCENTILE:
            return super().calculate_qparams()
        if self.method == CalibrationMethod.HISTOGRAM or self.min_val == float("inf"):
            return obs.HistogramObserver.calculate_qparams(self)
        if self.method == CalibrationMethod.MINMAX:
            return self._calculate_qparams(self.min_val, self.max_val)
        return self._calculate_qparams(self.average_min, self.average_max)


class SearchQuantizer(EdgepackQuantizer):
    """edgepack's quantizer with every activation observed by one SearchObserver (weights as before). One spec
    object replaces the activation spec everywhere, so PT2E shares observers exactly as it does for one method."""

    def __init__(self, granularity: WeightGranularity):
        super().__init__(granularity, calibration_method=CalibrationMethod.HISTOGRAM)

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        super().annotate(model)
        swapped: dict = {}

        def swap(spec):
            if not isinstance(spec, QuantizationSpec) or spec.qscheme != torch.per_tensor_affine:
                return spec  # a weight (symmetric), a shared spec or none
            if id(spec) not in swapped:
                swapped[id(spec)] = replace(spec, observer_or_fake_quant_ctr=SearchObserver.with_args(eps=2**-12))
            return swapped[id(spec)]

        for node in model.graph.nodes:
            annotation = node.meta.get("quantization_annotation")
            if annotation is not None:
                annotation.input_qspec_map = {k: swap(v) for k, v in annotation.input_qspec_map.items()}
                annotation.output_qspec = swap(annotation.output_qspec)
        return model


def calibrate(folded: torch.nn.Module, calibration: Dataset, input_shape: tuple[int, ...],
              granularity: WeightGranularity) -> torch.fx.GraphModule:
    """The prepared (observed, calibrated) graph every method's conversion starts from."""
    return prepare_calibrated(folded, calibration, input_shape, SearchQuantizer(granularity))


@torch.no_grad()
def convert(prepared: torch.fx.GraphModule, method: CalibrationMethod) -> torch.fx.GraphModule:
    """The quantize/dequantize graph of ``method``'s activation ranges (``prepared`` is left as it was)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    with warnings.catch_warnings():  # copying a prepared graph warns about torch's own pytree internals
        warnings.simplefilter("ignore", FutureWarning)
        prepared = copy.deepcopy(prepared)
    for module in prepared.modules():
        if isinstance(module, SearchObserver):
            module.method = CalibrationMethod(method)
    return convert_pt2e(prepared)
