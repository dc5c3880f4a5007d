"""`edgepack report` and `sweep -o` read only what edgepack wrote: a sweep.json that is corrupt, a list,
has malformed rows, is a FIFO or is left by a stopped sweep, and a corrupt manifest.json, are each one
stderr line with exit 2 (never exit 0 with a broken page, a traceback, or a hang on the FIFO), and
nothing is written."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgepack.benchmark.sweep import parse_list
from tests.cli import assert_one_line, edgepack, tree

ROW = {"model": "mobilenet_v1", "alpha": 0.25, "resolution": 32, "macs": 834688, "params": 210170, "fp32_accuracy": 0.5,
       "int8_accuracy": 0.5, "top1_agreement": 1.0, "latency_median_ms": 0.07, "cost": None, "passed": True,
       "artifact": "a0.25_r32"}
GOOD = {"format": "edgepack-sweep", "target": "host", "rows": [ROW]}


SWEEP_FILES = {
    "corrupt JSON": ("{bad", "unreadable or corrupt"),
    "a list": (json.dumps([1, 2]), "not an edgepack sweep table"),
    "rows not a list": (json.dumps({**GOOD, "rows": 5}), "rows are not a list"),
    "a row not an object": (json.dumps({**GOOD, "rows": [1]}), "row 0 is not an object"),
    "a row without macs": (json.dumps({**GOOD, "rows": [{k: v for k, v in ROW.items() if k != "macs"}]}), "row 0 has no valid 'macs'"),
    "a row with text for a number": (json.dumps({**GOOD, "rows": [{**ROW, "resolution": "big"}]}), "row 0 has no valid 'resolution'"),
    "a FIFO": (None, "not a regular file"),
}


def _sweep_folder(tmp_path: Path, content: str | None) -> Path:
    folder = tmp_path / "sw"
    folder.mkdir()
    if content is None:
        os.mkfifo(folder / "sweep.json")
    else:
        (folder / "sweep.json").write_text(content)
    return folder


@pytest.mark.parametrize("case", SWEEP_FILES)
def test_report_of_a_bad_sweep_json_is_one_line(case, tmp_path):
    content, words = SWEEP_FILES[case]
    folder = _sweep_folder(tmp_path, content)
    before = tree(tmp_path)
    code, out, err, seconds = edgepack("report", folder, timeout=30)
    assert_one_line(code, err, 2, "sweep.json", words)
    assert out == "" and seconds < 15 and tree(tmp_path) == before  # no report.html


@pytest.mark.parametrize("case", SWEEP_FILES)
def test_sweep_over_a_bad_sweep_json_is_refused(case, tmp_path):
    content, words = SWEEP_FILES[case]
    folder = _sweep_folder(tmp_path, content)
    before = tree(tmp_path)
    code, out, err, seconds = edgepack("sweep", "--target", "host", "--alpha", "0.25", "--resolution", "32", "-o", folder,
                                       timeout=30)
    assert_one_line(code, err, 2, "sweep.json", words, "nothing was changed")
    assert out == "" and seconds < 15 and tree(tmp_path) == before


def test_report_of_a_stopped_sweep_says_rerun_it(tmp_path):
    folder = _sweep_folder(tmp_path, json.dumps({**GOOD, "state": "incomplete", "rows": []}))
    code, _, err, _ = edgepack("report", folder)
    assert_one_line(code, err, 2, "stopped before it finished", "rerun the same `edgepack sweep`")
    assert sorted(p.name for p in folder.iterdir()) == ["sweep.json"]


@pytest.mark.parametrize("content, words", [("{x", "is corrupt"), ("[]", "manifest.json")])
def test_report_of_a_corrupt_manifest_is_one_line(content, words, tmp_path):
    art = tmp_path / "art"
    art.mkdir()
    (art / "manifest.json").write_text(content)
    code, out, err, _ = edgepack("report", art)
    assert_one_line(code, err, 2, words, "recompile")
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_sweep_lists_each_point_once():
    """`sweep --alpha 0.25,0.25` built the same folder twice at once and deadlocked on its own lock."""
    assert parse_list("0.25,0.25, 0.250", float, "alpha") == [0.25]
    assert parse_list("64,32,64", int, "resolution") == [64, 32]
