"""What a user sees while long steps run (edgepack.progress): a named stage line with an estimate, nothing
without a terminal or with --quiet, one display for sweep's parallel workers, and errors that stay one line."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from edgepack import progress


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """Progress forced on (stderr is captured, not a terminal), shown at once, history in a fresh cache."""
    monkeypatch.setenv("EDGEPACK_PROGRESS", "on")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    monkeypatch.setattr(progress, "TICK_S", 0.05)
    monkeypatch.setitem(progress._state, "sink", None)
    return tmp_path / "cache"


def test_stage_line_names_the_stage_and_what_is_left(drawn, capsys):
    with progress.stage("lower", estimate_s=30):
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert "lowering for the target: 0 s, about 30 s left" in err


def test_status_text_past_the_estimate_and_in_minutes():
    assert progress.status("export", 75, 60) == "export: 1 min 15 s (estimated 1 min 00 s)"
    assert progress.status("export", 5, None) == "export: 5 s"


def test_second_run_is_estimated_from_the_first_of_the_same_scope(drawn, capsys):
    with progress.scope("host", 0.25, 32):
        with progress.stage("lower"):
            time.sleep(0.2)
        assert progress.estimate("lower") == pytest.approx(0.2, abs=0.1)
    with progress.scope("host", 0.5, 32):
        assert progress.estimate("lower") is None  # another model size: no guess
    with progress.scope("host", 0.25, 32):
        with pytest.raises(RuntimeError):
            with progress.stage("lower"):
                raise RuntimeError("a failed stage is not a duration to expect")
        assert progress.estimate("lower") == pytest.approx(0.2, abs=0.1)


def test_stage_history_keeps_only_the_latest_entries(drawn, monkeypatch):
    monkeypatch.setattr(progress, "HISTORY_SIZE", 3)
    for i in range(5):
        progress._remember(f"s|{i}", float(i))
    progress._remember("s|2", 9.0)  # seen again: newest
    assert progress._history() == {"s|3": 3.0, "s|4": 4.0, "s|2": 9.0}


@pytest.mark.parametrize("mode", ["off", "auto"])  # --quiet sets off; auto draws on a terminal only
def test_nothing_is_drawn_or_remembered_when_off_or_without_a_terminal(drawn, monkeypatch, capsys, mode):
    monkeypatch.setenv("EDGEPACK_PROGRESS", mode)
    with progress.stage("lower", estimate_s=5):
        time.sleep(0.2)
    assert list(progress.progress([1, 2], "calibrating")) == [1, 2]
    assert capsys.readouterr().err == ""
    assert not drawn.exists()


def _worker(sink, name: str, err_path: str) -> None:
    """A build worker: whatever it would draw goes to its own stderr file, which must stay empty."""
    sys.stderr = open(err_path, "w")
    os.environ["EDGEPACK_PROGRESS"] = "on"
    progress.DELAY_S, progress.TICK_S = 0.0, 0.05
    progress.use_sink(sink)
    with progress.task(name):
        with progress.stage("quantize", estimate_s=20):
            for _ in progress.progress(range(4), "calibrating"):
                time.sleep(0.1)
        with progress.stage("lower"):
            time.sleep(0.3)
    sys.stderr.close()


def test_parallel_workers_share_one_display_drawn_by_the_main_process(drawn, capsys, tmp_path):
    with progress.SharedDisplay(2, 2, "sweep: 2 builds") as display:
        assert display.sink is not None
        workers = [multiprocessing.Process(target=_worker, args=(display.sink, f"a0.25_r{r}", str(tmp_path / f"{r}.err")))
                   for r in (32, 48)]
        for w in workers:
            w.start()
        display.start()
        for w in workers:
            w.join(30)
        time.sleep(0.3)
    assert all(w.exitcode == 0 for w in workers)
    assert [(tmp_path / f"{r}.err").read_text() for r in (32, 48)] == ["", ""]  # the workers drew nothing
    err = capsys.readouterr().err
    for r in (32, 48):
        assert f"a0.25_r{r}: calibrating " in err and f"a0.25_r{r}: lowering for the target" in err
    assert "sweep: 2 builds" in err and "2/2" in err


def test_display_lines_follow_nested_stages_and_loops():
    display = progress.SharedDisplay(1, 1, "sweep")
    assert display.sink is None or display.queue is not None
    now = time.time()
    for event in [(7, "task", "a1_r224"), (7, "stage", "quantizing (calibration)", 100.0, now - 10),
                  (7, "step", "calibrating", 3, 8)]:
        display.apply(event)
    assert display.texts() == ["a1_r224: calibrating 3/8"]
    display.apply((7, "end"))  # the loop ended: the stage it runs in shows again
    assert display.texts() == ["a1_r224: quantizing (calibration): 10 s, about 1 min 30 s left"]
    display.apply((7, "end"))
    display.apply((7, "done"))
    assert display.texts() == [""]


def test_without_a_terminal_the_workers_get_no_sink_and_draw_nothing(monkeypatch):
    monkeypatch.setenv("EDGEPACK_PROGRESS", "auto")
    monkeypatch.setitem(progress._state, "sink", None)
    with progress.SharedDisplay(2, 2, "sweep") as display:
        assert display.sink is None and display.thread is None


def test_cli_error_is_one_stderr_line_with_progress_on():
    r = subprocess.run([sys.executable, "-m", "edgepack.cli.main", "compile", "--target", "host", "--alpha", "0"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "EDGEPACK_PROGRESS": "on"})
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("edgepack compile: error: alpha")
