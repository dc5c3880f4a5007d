"""Quantization-aware training with torchao PT2E: BatchNorm folding is simulated while training.

The unfolded model is exported in training mode; the quantizer annotates conv -> BatchNorm ->
ReLU chains, so ``prepare_qat_pt2e`` rewrites each into the fused conv-bn QAT pattern (weights
scaled by gamma/sigma before fake-quantization). ``convert_pt2e`` then folds BN for good.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgepack.data import Dataset
from edgepack.progress import progress
from edgepack.quantize.layers import remove_no_ops
from edgepack.quantize.ptq import check_calibration, export
from edgepack.quantize.quantizer import EdgepackQuantizer, WeightGranularity, check_graph_ops

ZERO_GAMMA = 1e-6


def guard_zero_batchnorm(model: nn.Module) -> int:
    """BatchNorm weights of exactly 0 make the QAT fold divide by zero (NaN scales): nudge them."""
    fixed = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                zero = m.weight == 0
                fixed += int(zero.sum())
                m.weight[zero] = ZERO_GAMMA
    return fixed


def quantize_qat(
    model: nn.Module, train: Dataset, calibration: Dataset, input_shape: tuple[int, ...], epochs: int = 1,
    granularity: WeightGranularity = WeightGranularity.PER_CHANNEL, lr: float = 1e-4, batch: int = 32, seed: int = 0,
) -> tuple[torch.fx.GraphModule, int]:
    """Fine-tune with fake quantization; return the converted graph and the count of guarded BN weights."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    check_calibration(calibration, input_shape)
    check_calibration(train, input_shape)
    model = copy.deepcopy(model).train()
    guarded = guard_zero_batchnorm(model)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    images = torch.from_numpy(np.ascontiguousarray(train.images))
    labels = torch.from_numpy(train.labels)
    exported = remove_no_ops(export(model, images[:2]).module())
    check_graph_ops(exported)
    prepared = prepare_qat_pt2e(exported, EdgepackQuantizer(granularity, qat=True))
    with torch.no_grad():  # initialise observer ranges on the calibration set before training
        calib = torch.from_numpy(np.ascontiguousarray(calibration.images))
        for start in range(0, len(calib), batch):
            prepared(calib[start:start + batch])
    opt = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9)
    move_exported_model_to_train(prepared)
    for _ in progress(range(epochs), "QAT", unit="epoch"):
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(labels), batch):
            idx = order[start:start + batch]
            loss = F.cross_entropy(prepared(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    move_exported_model_to_eval(prepared)
    return convert_pt2e(prepared), guarded
