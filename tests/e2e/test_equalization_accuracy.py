"""Issue 24 item 2: per-tensor MobileNetV2 1.0 at 96 collapses in int8 (about 14% against 98% in fp32) because
BatchNorm folding leaves per-channel weight ranges nearly a thousandfold apart; cross-layer equalization, on
by default, brings it back to within 2 points of fp32 (measured: 98.3%, equal to fp32, on the digits eval
split), and compile --no-equalize still shows the collapse."""
from __future__ import annotations

import json

import pytest

import edgepack

pytestmark = pytest.mark.slow  # two MobileNetV2 1.0 compiles


def _compiled(tmp_path, name: str, **options) -> dict:
    folder = edgepack.compile(target="host", architecture="mobilenet_v2", alpha=1.0, resolution=96,
                              weight_granularity="per-tensor", output=str(tmp_path / name), **options)
    return json.loads((folder / "manifest.json").read_text())


def _worst_layer(folder) -> tuple[str, float]:
    d = edgepack.debug(folder, images=8)
    row = min((r for r in d["layers"] if r["isolated_sqnr_db"] is not None), key=lambda r: r["isolated_sqnr_db"])
    return row["layer"], row["isolated_sqnr_db"]


def test_per_tensor_mobilenet_v2_keeps_its_accuracy_with_equalization(tmp_path):
    on = _compiled(tmp_path, "on")
    # the collapse is what this test measures: a limit of 100 points lets the accuracy gate write it without
    # raising (test_accuracy_gate_mobilenet_v2 checks the gate refuses this compile by default)
    off = _compiled(tmp_path, "off", equalize=False, max_accuracy_drop=100)
    assert on["metrics"]["fp32_accuracy"] == off["metrics"]["fp32_accuracy"]  # the fp32 figure is the model's own
    fp32 = on["metrics"]["fp32_accuracy"]
    assert on["metrics"]["int8_accuracy"] >= fp32 - 0.02
    assert off["metrics"]["int8_accuracy"] < fp32 - 0.30  # the collapse equalization fixes
    record = on["quantization"]["equalization"]
    assert record["applied"] and record["converged"] and record["relu6_pairs"] > 30
    assert record["max_weight_range_spread_after"] < record["max_weight_range_spread_before"] / 10
    assert off["quantization"]["equalization"] == {"applied": False}
    # debug compares each layer with the fp32 model as compiled: equalized when the compile equalized
    assert _worst_layer(tmp_path / "on")[1] > 20
    name, sqnr = _worst_layer(tmp_path / "off")
    assert sqnr < 10 and name == "conv2d_1"  # features.1.block.0.0, the first depthwise: weight ranges 914x apart
