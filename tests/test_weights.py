"""The shipped default weights: each alpha's single checkpoint is >= 97% accurate (fp32) on the
digits eval split at the paper's resolutions (issue: 224, 192, 160, 128)."""
import pytest

from edgepack.data import load_digits_split
from edgepack.evaluate import accuracy, torch_logits
from edgepack.model.weights import DEFAULT_ALPHAS, pretrained, weights_path


@pytest.mark.parametrize("alpha", DEFAULT_ALPHAS)
def test_shipped_weights_are_compact(alpha):
    assert weights_path(alpha).stat().st_size < 8 * 2**20


@pytest.mark.slow
@pytest.mark.parametrize("alpha", DEFAULT_ALPHAS)
@pytest.mark.parametrize("resolution", (224, 192, 160, 128))
def test_shipped_weights_accuracy(alpha, resolution):
    data = load_digits_split("eval", resolution)
    assert accuracy(torch_logits(pretrained(alpha, resolution), data.images), data.labels) >= 0.97
