"""The sweep plots' log x axes label at least three values (matplotlib's own ticks label one when the points sit
inside a decade: host latencies 0.07-0.17 ms read only '0.1'), and the sweep page names its folder, not the
absolute path of the machine it ran on."""
from __future__ import annotations

import pytest

from edgepack.benchmark import sweep


@pytest.mark.parametrize("lo, hi", [(0.068, 0.171), (48.26, 49.0), (5.0, 6.0), (0.83, 12.2), (12, 130), (1e3, 3e6)])
def test_log_axis_labels_three_values_inside_the_points(lo, hi):
    ticks = sweep.log_ticks(lo, hi)
    assert len(ticks) >= 3 and ticks == sorted(set(ticks))
    assert all(lo * 0.999 <= t <= hi * 1.001 for t in ticks)


def test_log_axis_uses_decades_when_the_points_span_them():
    assert sweep.log_ticks(0.83, 1200) == [1, 10, 100, 1000]
    assert sweep.log_ticks(0.83, 12.2) == [1, 2, 5, 10]
    assert sweep.log_ticks(3.0, 3.0) == [3.0]  # one point: one label, no repeats


def test_plot_time_axis_shows_those_labels(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    ax.set_xscale("log")
    ax.plot([0.068, 0.171], [1, 2])
    sweep._axis_plain(ax.xaxis, [0.068, 0.171])
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(ax.figure)
    assert labels == ["0.075", "0.1", "0.125", "0.15"]


def test_sweep_page_names_the_folder_not_its_path(tmp_path):
    rows = [{"model": "mobilenet_v1", "alpha": 0.25, "resolution": r, "macs": m, "params": 1000, "fp32_accuracy": 0.9,
             "int8_accuracy": 0.9, "top1_agreement": 1.0, "latency_median_ms": ms, "estimated_ms": None, "cost": None,
             "flash_bytes": None, "ram_bytes": None, "model_ram_bytes": None, "passed": True, "artifact": "a"}
            for r, m, ms in ((32, 834_688, 0.068), (64, 3_331_072, 0.123))]
    folder = tmp_path / "my-sweep"
    folder.mkdir()
    page = sweep.sweep_page({"target": "host", "rows": rows}, folder)
    assert "my-sweep" in page and str(tmp_path) not in page
