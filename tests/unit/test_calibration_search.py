"""--calibration-method auto (edgepack.quantize.search, edgepack.frontends.calibration_search): one calibration
pass converts to exactly the plan each method's own compile gives, the search keeps the first trial meeting the
gate on the calibration images (else the best), tries per-tensor weights only when the granularity was not
given, and names its choice in the manifest's quantization entry."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgepack.config import CalibrationMethod, CompileConfig, WeightGranularity
from edgepack.data import Dataset
from edgepack.frontends.calibration_search import describe, granularities, search_calibration
from edgepack.frontends.pt2e_plan import build_plan
from edgepack.gate import Limit
from edgepack.quantize.ptq import quantize_ptq
from edgepack.quantize.search import METHODS, calibrate, convert

sys.path.insert(0, str(Path(__file__).parent))
from test_bias_correction import _chain, _images  # noqa: E402  (the same small spread-channel chain)

SHAPE = (3, 8, 8)


def _same_plan(a, b) -> bool:
    return len(a.layers) == len(b.layers) and all(
        la.output_q == lb.output_q and la.arrays.keys() == lb.arrays.keys()
        and all(np.array_equal(la.arrays[k], lb.arrays[k]) for k in la.arrays) for la, lb in zip(a.layers, b.layers))


@pytest.mark.parametrize("granularity", [WeightGranularity.PER_TENSOR, WeightGranularity.PER_CHANNEL])
def test_one_calibration_converts_to_each_methods_own_plan(granularity):
    folded, calibration = torch.fx.symbolic_trace(_chain()), Dataset(_images(100), None, "random")
    prepared = calibrate(folded, calibration, SHAPE, granularity)
    plans = []
    for method in METHODS:
        plans.append(build_plan(convert(prepared, method), SHAPE))
        alone = build_plan(quantize_ptq(folded, calibration, SHAPE, granularity, calibration_method=method), SHAPE)
        assert _same_plan(plans[-1], alone), method
    assert not _same_plan(plans[0], plans[2])  # histogram and minmax ranges do differ: the test can tell


def _labelled(n: int = 64, tied: bool = False):
    """Calibration images labelled by the fp32 model itself: fp32 accuracy 100%, so the drop is int8's error.
    ``tied``: the classifier's rows differ by 1e-4 of their size, so int8 rounding flips many top-1 classes."""
    model, images = _chain(), _images(n)
    if tied:
        with torch.no_grad():
            fc = model[-1]
            fc.weight.copy_(fc.weight[:1] + 1e-4 * torch.randn(fc.weight.shape, generator=torch.Generator().manual_seed(5)))
            fc.bias.zero_()
    labels = model(torch.from_numpy(images)).argmax(1).numpy()
    return torch.fx.symbolic_trace(model), Dataset(images, labels, "random")


def _config(**kwargs) -> CompileConfig:
    return CompileConfig(target="host", model_name="Chain", image_shape=SHAPE, resolution=8,
                         calibration_method="auto", **kwargs)


def test_search_keeps_the_first_trial_meeting_the_gate():
    folded, calibration = _labelled()
    quantization: dict = {}
    search_calibration(_config(), folded, calibration, quantization, (Limit(100.0, "test"), Limit(0.0, "test")))
    entry = quantization["calibration_search"]
    assert entry["passed"] and len(entry["trials"]) == 1
    assert entry["chosen"] == {"method": "histogram", "weights": "per-channel"}
    assert quantization["activation_calibration"] == "histogram"
    assert quantization["bias_correction"] == {"applied": False}
    assert "chose histogram activation ranges, per-channel weights" in describe(entry)


def test_search_tries_every_method_and_granularity_and_keeps_the_best_when_none_passes():
    folded, calibration = _labelled(tied=True)
    quantization: dict = {}
    _, granularity = search_calibration(_config(bias_correction=True), folded, calibration, quantization,
                                        (Limit(0.0, "test"), Limit(100.0, "test")))
    entry = quantization["calibration_search"]
    assert not entry["passed"] and len(entry["trials"]) == 2 * len(METHODS)
    assert {t["weights"] for t in entry["trials"]} == {"per-channel", "per-tensor"}
    assert entry["value"] == min(t["value"] for t in entry["trials"])  # the smallest accuracy drop
    assert granularity.value == entry["chosen"]["weights"]
    assert quantization["bias_correction"]["applied"] and quantization["bias_correction"]["weights"] == granularity.value
    assert "is the best of the trials, but misses the limit 0" in describe(entry)


def test_a_given_granularity_is_not_searched():
    assert granularities(_config()) == (WeightGranularity.PER_CHANNEL, WeightGranularity.PER_TENSOR)
    assert granularities(_config(weight_granularity="per-tensor")) == (WeightGranularity.PER_TENSOR,)
    assert granularities(_config(weight_granularity="per-channel")) == (WeightGranularity.PER_CHANNEL,)
    assert CompileConfig().weight_granularity == WeightGranularity.PER_CHANNEL


def test_auto_is_a_calibration_method_for_ptq_only_and_the_cli_leaves_granularity_open():
    from edgepack.cli.compile_cmd import _torch_config
    from edgepack.cli.main import build_parser
    from edgepack.errors import ConfigError

    assert CompileConfig(calibration_method="auto").calibration_method == CalibrationMethod.AUTO
    with pytest.raises(ConfigError, match="applies to PTQ, not --quant qat"):
        CompileConfig(calibration_method="auto", quant="qat")
    config = _torch_config(build_parser().parse_args(["compile", "--target", "host", "--calibration-method", "auto"]))
    assert config.weight_granularity_given is False and config.weight_granularity == WeightGranularity.PER_CHANNEL
    config = _torch_config(build_parser().parse_args(["compile", "--target", "host", "--weight-granularity",
                                                      "per-channel"]))
    assert config.weight_granularity_given is True
