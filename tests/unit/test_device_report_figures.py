"""Board profiles ([board] in target files) and the device report block's formatting: the estimated time is
instructions x cycles per instruction / clock, always labelled an estimate with its assumption; bad board
values are one-line errors; figures show with units and separators, fractions as percent, never as None."""
from __future__ import annotations

import types

import numpy as np
import pytest

from edgepack.benchmark import device_report as dr
from edgepack.benchmark import report
from edgepack.errors import TargetError
from edgepack.targets import catalogue, parse_target
from tests.unit.test_targets import board

STM32F4 = '[board]\nname = "STM32F4"\nclock_mhz = 168\ncycles_per_instruction = 1.25\n'


def test_builtin_boards_name_their_clock_and_assumption():
    targets = catalogue().targets
    clocks = {name: t.board.clock_mhz for name, t in targets.items() if t.board.clock_mhz is not None}
    assert clocks == {"cortex-m4": 168, "cortex-m7": 216, "cortex-m55": 400, "rpi4": 1500, "rpi5": 2400, "arm64-a53": 1200}
    for name in clocks:
        b = targets[name].board
        assert b.name and b.cycles_per_instruction > 0 and b.cpi_basis, name
    for name in ("host", "x86-tvm", "intel-cpu", "intel-npu", "c-host", "tflm"):
        assert targets[name].board.to_json() == {}, name  # no real board: no estimate


def test_estimate_is_instructions_times_cpi_over_clock(tmp_path):
    b = parse_target(board(tmp_path, "f4", STM32F4, backend="c")).board
    est = b.estimate(2_688_000)
    assert est["cycles"] == 3_360_000  # 2,688,000 x 1.25
    assert est["ms"] == pytest.approx(20.0)  # 3.36 M cycles at 168 MHz
    assert est["is_estimate"] and "estimate, not a measurement" in est["assumption"]
    assert "1.25 cycles/instruction" in est["assumption"] and "168 MHz" in est["assumption"]


def test_a_board_is_recorded_and_read_back_from_the_manifest(tmp_path):
    from edgepack.targets import target_from_json

    target = parse_target(board(tmp_path, "f4", STM32F4, backend="c"))
    again = target_from_json(target.to_json(), "manifest target")
    assert again.board == target.board and target.to_json()["board"]["clock_mhz"] == 168


@pytest.mark.parametrize("text, words", [
    ('[board]\nname = "X"\nclock_mhz = 168000000\ncycles_per_instruction = 1\n', ["clock_mhz 1.68e+08", "in MHz"]),
    ('[board]\nname = "X"\nclock_mhz = 168\n', ["[board] lacks 'cycles_per_instruction'"]),
    ('[board]\nname = "X"\nclock_mhz = -1\ncycles_per_instruction = 1\n', ["[board] clock_mhz must be positive"]),
    ('[board]\nname = "X"\nclock_mhz = "168 MHz"\ncycles_per_instruction = 1\n', ["clock_mhz must be a number"]),
    ('[board]\nname = "X"\nclock_mhz = 168\ncycles_per_instruction = 400\n', ["cycles_per_instruction 400"]),
    ('[board]\nname = "X"\nclock = 168\n', ["[board] has no key 'clock'", "did you mean 'clock_mhz'?"]),
])
def test_bad_board_values_are_one_line_errors(tmp_path, text, words):
    with pytest.raises(TargetError) as e:
        parse_target(board(tmp_path, "b", text, backend="c"))
    assert len(str(e.value).splitlines()) == 1 and "[board]" in str(e.value)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_a_board_on_a_backend_without_instruction_counts_is_refused(tmp_path):
    with pytest.raises(TargetError, match="not read by the onnxruntime backend"):
        parse_target(board(tmp_path, "h", STM32F4, backend="onnxruntime"))


def test_a_users_board_file_may_omit_the_board(tmp_path):
    assert parse_target(board(tmp_path, "mine", "", backend="c")).board.clock_mhz is None


def test_formatting_has_units_separators_and_percent():
    assert dr.count(3331072) == "3,331,072" and dr.count(None) == "n/a"
    assert dr.size(282436) == "282,436 B (275.8 KiB)" and dr.size(512) == "512 B"
    assert dr.size(3 << 20) == "3,145,728 B (3.0 MiB)"
    assert dr.percent(1) == "100.00%" and dr.percent(0.9778) == "97.78%"
    assert dr.millis(19.4567) == "19.46 ms" and dr.millis(0.0734) == "0.073 ms"
    assert report._header("latency_median_ms") == "Latency median (ms)" and report._header("fp32_accuracy") == "fp32 accuracy"
    assert report._cell("int8_accuracy", 0.9722) == "97.22%" and report._cell("cost", None) == ""
    assert report._cell("passed", False) == {"badge": "fail", "text": "FAIL"}


def _layer(kind, output_shape, weight_shape=None):
    arrays = {} if weight_shape is None else {"weight": np.zeros(weight_shape, np.int8), "bias": np.zeros(weight_shape[0], np.int32),
                                              "weight_scale": np.zeros(weight_shape[0], np.float32)}
    return types.SimpleNamespace(name=kind, kind=kind, output_shape=output_shape, arrays=arrays)


def test_layer_macs_count_conv_and_fc_only():
    assert dr.layer_macs(_layer("conv", (8, 16, 16), (8, 3, 3, 3))) == 8 * 16 * 16 * 27
    assert dr.layer_macs(_layer("depthwise", (8, 16, 16), (8, 1, 3, 3))) == 8 * 16 * 16 * 9
    assert dr.layer_macs(_layer("fc", (10,), (10, 256))) == 2560
    assert dr.layer_macs(_layer("avgpool", (256, 1, 1))) == 0
    assert dr._plan_bytes(_layer("fc", (10,), (10, 256))) == 2560 + 40  # int8 weights + int32 bias, no float scales


def _block(**overrides):
    layers = [{"index": 0, "name": "conv2d", "kind": "conv", "output_shape": [8, 16, 16], "macs": 55296, "macs_share": 0.9,
               "ticks": None, "ticks_share": None, "bytes": 312},
              {"index": 1, "name": "linear", "kind": "fc", "output_shape": [10], "macs": 6144, "macs_share": 0.1,
               "ticks": None, "ticks_share": None, "bytes": 100}]
    return {"target": "rpi4", "board": None, "memory": {}, "compute": {}, "macs": 61440, "params": 1234,
            "latency_median_ms": None, "layers": layers, "layer_bytes": "Constants (B): the plan's", **overrides}


def test_text_block_without_device_figures_prints_no_none():
    text = dr.format_text(_block())
    assert "None" not in text and "not measured for this backend" in text
    assert "Ticks" not in text and "Mult-Adds share" in text and "90.0%" in text and "61,440" in text


def test_text_block_shows_the_estimate_beside_the_exact_count(tmp_path):
    b = parse_target(board(tmp_path, "f4", STM32F4, backend="c")).board
    compute = {"metric": "SysTick ticks", "ticks_per_inference": 67_200, "instructions_per_tick": 40,
               "instructions_per_inference": 2_688_000, "estimate": b.estimate(2_688_000)}
    text = dr.format_text(_block(board=b.to_json(), compute=compute, memory={"flash_bytes": 282436,
                                                                             "flash_budget_bytes": 1 << 20}))
    assert "67,200 (x 40 = 2,688,000 instructions)" in text
    assert "20.00 ms = 3,360,000 cycles at 168 MHz, an estimate" in text and "1.25 cycles/instruction" in text
    assert "282,436 B (275.8 KiB) of 1,048,576 B (1.0 MiB) budget (26.9%)" in text and "None" not in text


def test_html_device_block_has_a_table_per_layer_and_bars():
    page = report._page("t", [report._device(_block())])
    assert "<h2>Device report</h2>" in page and page.count('class="bar"') == 2
    assert "width:100.0%" in page and "width:11.1%" in page  # the largest layer a full bar, the other 0.1/0.9 of it
    assert "None" not in page and "_" not in page.split("<body>")[1].replace("conv2d", "")
