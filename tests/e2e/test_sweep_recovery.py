"""A sweep stopped with SIGTERM (what `timeout` and CI cancellation send to its main process) stops its
build workers before it exits, so nothing is written afterwards, and a rerun with the same arguments
completes the sweep instead of refusing the folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

SWEEP = ["sweep", "--target", "host", "--alpha", "0.25", "--resolution", "32,64", "--jobs", "2", "--eval-size", "16",
         "--calib-size", "16"]


def tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_sigterm_stops_sweep_workers_and_the_rerun_completes(tmp_path):
    out = tmp_path / "sw"
    env = {**os.environ, "EDGEPACK_PROGRESS": "auto"}
    p = subprocess.Popen([sys.executable, "-m", "edgepack.cli.main", *SWEEP, "-o", str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not list(out.glob(".*edgepack-partial*")) and time.monotonic() < deadline:
        time.sleep(0.1)  # a worker is writing its artifact: the worst moment to stop
    assert list(out.glob(".*edgepack-partial*")), "no build started"
    workers = psutil.Process(p.pid).children()
    assert len(workers) == 2
    sent = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)  # a worker left running would hold stderr open: this times out
    code = p.returncode
    assert code == 143 and err.splitlines() == ["edgepack sweep: terminated (SIGTERM)"], err
    assert time.monotonic() - sent < 15
    assert not any(alive(w) for w in workers)
    after = tree(out)
    time.sleep(3)
    assert tree(out) == after  # nothing written once the sweep has exited
    assert not list(out.glob(".*edgepack-partial*"))  # the workers removed their partial artifacts
    assert json.loads((out / "sweep.json").read_text())["state"] == "incomplete"

    rerun = subprocess.run([sys.executable, "-m", "edgepack.cli.main", *SWEEP, "-o", str(out)], capture_output=True,
                           text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    table = json.loads((out / "sweep.json").read_text())
    assert "state" not in table and [r["resolution"] for r in table["rows"]] == [32, 64]
    assert all(r["passed"] for r in table["rows"])
