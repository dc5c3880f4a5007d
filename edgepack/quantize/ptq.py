"""Post-training quantization with torchao PT2E: export -> prepare_pt2e -> calibrate -> convert_pt2e."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgepack.data import Dataset
from edgepack.errors import DataError
from edgepack.progress import progress
from edgepack.quantize.layers import remove_no_ops
from edgepack.quantize.quantizer import CalibrationMethod, EdgepackQuantizer, WeightGranularity, check_graph_ops

MAX_BATCH = 1024


def export(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch dimension (so calibration and eval batches may differ)."""
    batch = torch.export.Dim("batch", max=MAX_BATCH)
    if example.shape[0] < 2:  # a batch of 1 would be specialised as a constant
        example = example[:1].expand(2, *example.shape[1:]).contiguous()
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def check_calibration(data: Dataset, input_shape: tuple[int, ...]) -> None:
    if len(data) == 0:
        raise DataError("the calibration set is empty: give at least one image (--calibration DIR|FILE.npz)")
    if tuple(data.images.shape[1:]) != tuple(input_shape):
        raise DataError(
            f"calibration images have shape {tuple(data.images.shape[1:])}, the model expects {tuple(input_shape)}: "
            "resize them or pass the matching --resolution"
        )


@torch.no_grad()
def prepare_calibrated(folded: nn.Module, calibration: Dataset, input_shape: tuple[int, ...], quantizer,
                       batch: int = 32) -> torch.fx.GraphModule:
    """The exported graph with ``quantizer``'s observers, calibrated on ``calibration`` (not yet converted: the
    calibration search converts one calibration several ways)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    check_calibration(calibration, input_shape)
    images = torch.from_numpy(np.ascontiguousarray(calibration.images))
    exported = remove_no_ops(export(folded, images[:2]).module())
    check_graph_ops(exported)
    prepared = prepare_pt2e(exported, quantizer)
    for start in progress(range(0, len(images), batch), "calibrating", unit="batch"):
        prepared(images[start:start + batch])
    return prepared


@torch.no_grad()
def quantize_ptq(
    folded: nn.Module, calibration: Dataset, input_shape: tuple[int, ...],
    granularity: WeightGranularity = WeightGranularity.PER_CHANNEL, batch: int = 32,
    calibration_method: CalibrationMethod = CalibrationMethod.HISTOGRAM,
) -> torch.fx.GraphModule:
    """Calibrate observers on ``calibration`` and return the converted (quantize/dequantize) graph."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    quantizer = EdgepackQuantizer(granularity, calibration_method=calibration_method)
    return convert_pt2e(prepare_calibrated(folded, calibration, input_shape, quantizer, batch))
