"""Issue 24 item 2's option, measured: empirical bias correction alone (equalization off) lifts per-tensor
MobileNetV2 1.0 at 96 from its collapse (13.61% int8 against 98.33% fp32 on the digits eval split) to 92.78%,
and --calibration-method auto on that model names its choice and every trial in the manifest."""
from __future__ import annotations

import json

import pytest

import edgepack
from edgepack.errors import AccuracyGateError

pytestmark = pytest.mark.slow  # two MobileNetV2 1.0 compiles


def _compiled(tmp_path, name: str, **options) -> dict:
    options.setdefault("max_accuracy_drop", 100)  # the collapse is measured: the gate writes it without raising
    folder = edgepack.compile(target="host", architecture="mobilenet_v2", alpha=1.0, resolution=96, equalize=False,
                              weight_granularity="per-tensor", bias_correction=True, output=str(tmp_path / name),
                              **options)
    return json.loads((folder / "manifest.json").read_text())


def test_bias_correction_recovers_most_of_the_per_tensor_collapse(tmp_path):
    corrected = _compiled(tmp_path, "corrected")
    fp32, int8 = corrected["metrics"]["fp32_accuracy"], corrected["metrics"]["int8_accuracy"]
    assert int8 > 0.85 and int8 < fp32  # without it 13.61% (test_equalization_accuracy checks the collapse)
    assert corrected["metrics"]["int8_vs_fp32"]["sqnr_db"] > 0  # -2.1 dB without it
    record = corrected["quantization"]["bias_correction"]
    assert record["applied"] and record["layers"] == 53 and record["weights"] == "per-tensor"
    assert record["passes"] == "one pass over the graph" and record["max_abs_bias_shift"] > 0


def test_calibration_search_names_its_choice_and_trials(tmp_path):
    """Per-tensor weights given, equalization off: no method meets the 1-point gate on the calibration images
    (the best misses it by about a point), so all four are tried and the best kept."""
    with pytest.raises(AccuracyGateError):  # the 1-point gate: the search's limit too
        _compiled(tmp_path, "auto", calibration_method="auto", max_accuracy_drop=1.0)
    searched = json.loads((tmp_path / "auto" / "manifest.json").read_text())
    entry = searched["quantization"]["calibration_search"]
    assert {t["method"] for t in entry["trials"]} == {"histogram", "percentile", "minmax", "moving-average"}
    assert {t["weights"] for t in entry["trials"]} == {"per-tensor"}  # given: not searched
    assert entry["value"] == min(t["value"] for t in entry["trials"])
    assert searched["quantization"]["activation_calibration"] == entry["chosen"]["method"]
    assert searched["quantization"]["weights"].endswith(entry["chosen"]["weights"])
    assert not entry["passed"] and entry["limit"] == 1.0
