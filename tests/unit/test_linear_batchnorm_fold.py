"""A BatchNorm1d right after a Linear is folded into it (torch.fx's fuse_linear_bn_eval), as a BatchNorm2d into
its conv; one anywhere else is refused naming the fix. A model of vectors takes (N, F) inputs through the API."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgepack.config import CompileConfig
from edgepack.errors import UnsupportedModelError
from edgepack.fold import can_fold, fold
from edgepack.inputs import check_shape, inputs_of


def _mlp(bn_after_relu: bool = False) -> nn.Module:
    layers = [nn.Linear(12, 8), nn.ReLU(), nn.BatchNorm1d(8)] if bn_after_relu else [nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(8, 3))
    torch.manual_seed(0)
    bn = next(m for m in model if isinstance(m, nn.BatchNorm1d))
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_batchnorm1d_after_linear_is_folded_into_it():
    model = _mlp()
    folded = fold(model)
    assert not [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    x = torch.randn(16, 12)
    with torch.no_grad():
        assert torch.allclose(model(x), folded(x), atol=1e-5)


def test_batchnorm1d_not_after_a_linear_is_refused_with_the_fix():
    ok, why = can_fold(_mlp(bn_after_relu=True))
    assert not ok and "do not directly follow a Conv2d (a Linear for BatchNorm1d)" in why
    with pytest.raises(UnsupportedModelError, match="each BatchNorm1d right after its Linear"):
        fold(_mlp(bn_after_relu=True))


def test_vectors_are_model_inputs_of_a_model_of_vectors():
    batch = np.zeros((5, 12), np.float32)
    assert inputs_of(batch, "calibration").shape == (5, 12)
    assert inputs_of([np.zeros(12, np.float32), batch], "calibration").shape == (6, 12)  # one vector, then a batch
    assert check_shape(batch, "calibration", None) == 12
    assert CompileConfig(model_name="Mlp", classes=3, input_features=12).input_shape == (12,)
    assert CompileConfig(model_name="Mlp", classes=3, resolution=48).input_shape == (3, 48, 48)
