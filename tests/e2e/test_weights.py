"""The shipped default weights: each alpha's single checkpoint on the digits eval split (fp32).

The issue asks >= 97% at 224, 192, 160 and 128. Measured (scripts/train_digits.py --check-only),
lowest per alpha: 1.0 98.1% (224), 0.75 97.2% (224), 0.5 98.1% (224), 0.25 97.8% (224).
MobileNetV2 (issue 13 asks for 1.0, 0.75, 0.5 and 0.35, each >= 97% at 224, 160, 128 and 96), lowest:
1.0 98.3% (224, 96), 0.75 97.5% (224), 0.5 97.8% (224, 96), 0.35 97.2% (96).
"""
import pytest

from edgepack.data import load_digits_split
from edgepack.evaluate import accuracy, torch_logits
from edgepack.model.builtin import shipped_alphas
from edgepack.model.weights import DEFAULT_ALPHAS, pretrained, weights_path

V2_ALPHAS = (1.0, 0.75, 0.5, 0.35)  # the widths issue 13 asks to ship


def test_the_shipped_v2_widths_are_the_ones_asked_for():
    assert shipped_alphas("mobilenet_v2") == list(V2_ALPHAS)


@pytest.mark.parametrize("alpha", DEFAULT_ALPHAS)
def test_shipped_weights_are_compact(alpha):
    assert weights_path(alpha).stat().st_size < 8 * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("alpha", DEFAULT_ALPHAS)
@pytest.mark.parametrize("resolution", (224, 192, 160, 128))
def test_shipped_weights_accuracy(alpha, resolution):
    data = load_digits_split("eval", resolution)
    assert accuracy(torch_logits(pretrained(alpha, resolution), data.images), data.labels) >= 0.97


@pytest.mark.slow
@pytest.mark.parametrize("alpha", V2_ALPHAS)
@pytest.mark.parametrize("resolution", (224, 160, 128, 96))
def test_shipped_v2_weights_accuracy(alpha, resolution):
    data = load_digits_split("eval", resolution)
    model = pretrained(alpha, resolution, model="mobilenet_v2")
    assert weights_path(alpha, "mobilenet_v2").stat().st_size < 8 * 2**20
    assert accuracy(torch_logits(model, data.images), data.labels) >= 0.97
