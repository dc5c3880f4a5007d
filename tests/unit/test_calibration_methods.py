"""PTQ's activation calibration methods (--calibration-method): each picks its observer, the percentile one
clips rare outliers a min/max range would spend its int8 steps on, and bad or meaningless choices are refused
in one line before any work."""
from __future__ import annotations

import pytest
import torch

from edgepack.config import CalibrationMethod, CompileConfig, QuantMode
from edgepack.errors import ConfigError
from edgepack.quantize.quantizer import PercentileObserver, activation_spec
from torchao.quantization.pt2e import observer as obs
from tests.conftest import run_cli


@pytest.mark.parametrize("method, observer", [
    ("histogram", obs.HistogramObserver), ("minmax", obs.MinMaxObserver),
    ("moving-average", obs.MovingAverageMinMaxObserver), ("percentile", PercentileObserver)])
def test_each_method_builds_its_observer(method, observer):
    made = _observer(CalibrationMethod(method))
    assert type(made) is observer


def _observer(method: CalibrationMethod):
    """The observer as PT2E's prepare makes it from the spec (int8, [-128, 127], per-tensor affine)."""
    spec = activation_spec(False, method)
    return spec.observer_or_fake_quant_ctr(dtype=spec.dtype, quant_min=spec.quant_min, quant_max=spec.quant_max,
                                           qscheme=spec.qscheme)


def _range(observer, x: torch.Tensor) -> tuple[float, float]:
    observer(x)
    scale, zero_point = observer.calculate_qparams()
    return float((-128 - zero_point) * scale), float((127 - zero_point) * scale)


def test_percentile_range_clips_rare_outliers_that_minmax_keeps():
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    x[:5] = 1000.0  # five outliers in 200,000 values: 0.0025%, inside the 0.01% tail
    low, high = _range(_observer(CalibrationMethod.PERCENTILE), x)
    assert 3.0 < high < 6.0 and -6.0 < low < -3.0  # N(0, 1)'s 99.99% points are +-3.9
    _, minmax_high = _range(_observer(CalibrationMethod.MINMAX), x)
    assert minmax_high >= 999


def test_method_defaults_to_histogram_for_ptq_and_to_none_otherwise():
    assert CompileConfig(target="host").calibration_method == CalibrationMethod.HISTOGRAM
    assert CompileConfig(target="host", quant="qat").calibration_method is None
    assert CompileConfig(target="host", calibration_method="percentile").calibration_method == CalibrationMethod.PERCENTILE


@pytest.mark.parametrize("kwargs, words", [
    ({"calibration_method": "entropy"}, "calibration method 'entropy' is unknown: use histogram, minmax, moving-average, percentile"),
    ({"calibration_method": "minmax", "quant": "none"}, "applies to PTQ, not --quant none"),
])
def test_bad_method_is_one_config_error(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        CompileConfig(target="host", **kwargs)


def test_an_imported_tflite_refuses_a_calibration_method(capsys, tmp_path):
    code = run_cli(capsys, "compile", "--target", "host", "--model", str(tmp_path / "m.tflite"),
                   "--calibration-method", "minmax")
    assert code[0] == 2 and code[2].count("\n") == 1 and "--calibration-method cannot apply" in code[2], code
