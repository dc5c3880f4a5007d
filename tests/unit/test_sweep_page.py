"""The sweep page and plots (edgepack.benchmark.sweep): flash, RAM and time columns, the Pareto front of
accuracy vs time and vs flash marked in the table and the plots, readable numbers; from rows as bench makes
them, without compiling anything."""
from __future__ import annotations

import re

from edgepack.benchmark import sweep


def _row(alpha, resolution, accuracy, ms, flash, passed=True, latency=None):
    return {"model": "mobilenet_v1", "alpha": alpha, "resolution": resolution, "macs": int(5e6 * alpha * resolution),
            "params": int(2e5 * alpha), "fp32_accuracy": 0.9, "int8_accuracy": accuracy, "top1_agreement": 0.99,
            "latency_median_ms": latency, "estimated_ms": ms, "cost": int(ms * 1e5), "flash_bytes": flash,
            "ram_bytes": flash // 3, "model_ram_bytes": flash // 5, "passed": passed, "artifact": "a"}


# (0.25, 32) is slower and worse than (0.5, 32): off the time front; same flash as (0.25, 64) but worse: off both
ROWS = [_row(0.5, 64, 0.95, 20.0, 300_000), _row(0.25, 64, 0.93, 8.0, 90_000), _row(0.5, 32, 0.90, 6.0, 300_000),
        _row(0.25, 32, 0.80, 9.0, 90_000, passed=False)]


def test_pareto_front_keeps_only_points_nothing_beats():
    assert sweep.pareto_front(ROWS, "estimated_ms", "int8_accuracy") == {0, 1, 2}
    assert sweep.pareto_front(ROWS, "flash_bytes", "int8_accuracy") == {0, 1}
    with_gap = [*ROWS, {**ROWS[0], "estimated_ms": None}]
    assert sweep.pareto_front(with_gap, "estimated_ms", "int8_accuracy") == {0, 1, 2}  # no figure, no front
    assert sweep.pareto_front([ROWS[0], dict(ROWS[0])], "estimated_ms", "int8_accuracy") == {0, 1}  # equal: both


def test_time_axis_is_latency_then_board_estimate_then_cost():
    assert sweep.time_key(ROWS) == "estimated_ms"
    assert sweep.time_key([{**r, "latency_median_ms": 3.0} for r in ROWS]) == "latency_median_ms"
    assert sweep.time_key([{**r, "estimated_ms": None} for r in ROWS]) == "cost"


def test_page_has_flash_ram_and_time_columns_and_marks_both_fronts(tmp_path):
    page = sweep.sweep_page({"target": "cortex-m4", "rows": ROWS}, tmp_path)
    headers = re.findall(r"<th>([^<]*)</th>", page)
    for h in ("Flash", "RAM (total)", "RAM (model)", "Estimated time (board)", "int8 accuracy", "Pareto front", "Result"):
        assert h in headers
    rows = re.findall(r"<tr( class=\"front\")?><td>(.*?)</tr>", page)
    assert [bool(front) for front, _ in rows] == [True, True, True, False]
    cells = [r for _, r in rows]
    assert ">time</span>" in cells[0] and ">flash</span>" in cells[0]
    assert ">time</span>" in cells[2] and ">flash</span>" not in cells[2]
    assert "293.0 KiB" in cells[0] and "95.00%" in cells[0] and "20.00 ms" in cells[0] and "PASS" in cells[0]
    assert "FAIL" in cells[3] and "None" not in page
    assert page.count('src="data:image/png;base64,') == 3  # Mult-Adds, time and flash plots
    assert "<h2>accuracy vs flash</h2>" in page


def test_plots_name_the_axis_they_draw_and_skip_flash_without_it(tmp_path):
    rows = [{**r, "estimated_ms": None, "flash_bytes": None} for r in ROWS]
    paths = sweep.plot_sweep(rows, tmp_path, "rpi4")
    assert [p.name for p in paths] == ["accuracy_vs_macs.png", "accuracy_vs_latency.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_unlabelled_sweep_ranks_by_agreement(tmp_path):
    rows = [{**r, "int8_accuracy": None, "fp32_accuracy": None} for r in ROWS]
    page = sweep.sweep_page({"target": "c-host", "rows": rows}, tmp_path)
    headers = re.findall(r"<th>([^<]*)</th>", page)
    assert "Top-1 agreement" in headers and "int8 accuracy" not in headers


def test_sweep_tables_from_before_the_flash_columns_still_read():
    old = [{k: v for k, v in r.items() if k not in sweep.OPTIONAL_TYPES} for r in ROWS]
    assert sweep._sweep_problem({"format": sweep.SWEEP_FORMAT, "target": "host", "rows": old}) is None
    bad = [{**ROWS[0], "flash_bytes": "300 KB"}]
    assert "flash_bytes" in sweep._sweep_problem({"format": sweep.SWEEP_FORMAT, "target": "host", "rows": bad})


def test_log_axis_ticks_read_as_plain_numbers():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_xscale("log")
    sweep._axis_plain(ax.xaxis, [1, 1000])
    major, minor = ax.xaxis.get_major_formatter(), ax.xaxis.get_minor_formatter()
    assert (major(10, 0), major(1000, 0), minor(3, 0), minor(7, 0)) == ("10", "1,000", "", "")  # minors: grid only
    assert list(ax.xaxis.get_major_locator()()) == [1, 10, 100, 1000]
    plt.close(fig)
