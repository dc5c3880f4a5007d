import pytest
import torch
from torch import nn

from edgepack.data import load_digits_split
from edgepack.errors import UnsupportedModelError
from edgepack.fold import can_fold, fold, folding_error
from edgepack.model.weights import pretrained


@pytest.mark.parametrize("alpha", (1.0, 0.75, 0.5, 0.25))
def test_folding_error_under_1e4(alpha):
    model = pretrained(alpha, 96)
    folded = fold(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    images = torch.from_numpy(load_digits_split("eval", 96).images[:32])
    assert folding_error(model, folded, images) < 1e-4


def test_fold_random_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU()).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.1, 3), m.weight.data.uniform_(-2, 2)
    folded = fold(model)
    x = torch.randn(4, 3, 16, 16)
    assert folding_error(model, folded, x) < 1e-4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0


def test_batchnorm_not_after_conv_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.BatchNorm2d(8))
    ok, why = can_fold(model)
    assert not ok and "2" in why  # the BatchNorm sits at index 2, after a ReLU
    with pytest.raises(UnsupportedModelError, match="BatchNorm"):
        fold(model)
