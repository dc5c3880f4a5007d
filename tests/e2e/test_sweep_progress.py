"""A real two-worker sweep as a user watches it: one display in the main process (a build counter and a line
per worker with its stage), no worker drawing over another, and the sweep page with flash, RAM and time
columns and the Pareto front marked."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_two_worker_sweep_shows_one_display_and_writes_the_page(tmp_path):
    out = tmp_path / "sw"
    env = {**os.environ, "EDGEPACK_PROGRESS": "on", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "edgepack.cli.main", "sweep", "--target", "c-host", "--alpha", "0.25",
                        "--resolution", "32,64", "--jobs", "2", "--eval-size", "16", "--calib-size", "16", "-o", str(out)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    err = r.stderr
    assert "sweep: 2 builds" in err  # the main process's counter of finished builds
    for point in ("a0.25_r32", "a0.25_r64"):  # each worker's line, drawn by the main process
        assert re.search(rf"{point}: (starting|compile, all stages|loading torch|folding BatchNorm|quantizing|calibrating)", err), err[-2000:]
    assert "calibrating:" not in err  # a worker's own tqdm bar ("calibrating:  0%|") would fight the others
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert all(row["flash_bytes"] > 0 and row["ram_bytes"] > 0 for row in rows)
    page = (out / "sweep.html").read_text()
    headers = re.findall(r"<th>([^<]*)</th>", page)
    assert {"Flash", "RAM (total)", "Pareto front", "Result"} <= set(headers)
    assert page.count('<tr class="front">') >= 1 and page.count('src="data:image/png;base64,') == 3
    assert "sweep.html" in r.stdout
