"""The artifact report page, rendered in headless Chromium, shows what a user needs to judge the artifact on its
device: the device block (flash, RAM, instructions or ticks, an estimated time in ms), the per-layer table,
accuracy as a percent, PASS badges, and numbers with thousands separators and units, never raw Python values
(True, 0.9778, snake_case headers). docs/img holds screenshots of these pages (scripts/report_screenshots.py)."""
from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import run_cli
from tests.e2e.test_benchmark import _render


def _kv(dom: str) -> dict[str, str]:
    """The device block's rows (label -> value text) from the rendered DOM."""
    block = dom.split("<h2>Device report</h2>", 1)[1].split("</table>", 1)[0]
    return dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", block, re.S))


def assert_report_page(dom: str, layers: int) -> dict[str, str]:
    """The elements every artifact page shows; returns the device block's rows for target-specific checks."""
    assert "<h2>Device report</h2>" in dom and "<h3>Per layer</h3>" in dom, dom[:2000]
    table = dom.split('<table class="layers">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == layers + 1  # the header and a row per plan layer
    assert "<th>Mult-Adds</th>" in table and "<th>Output shape</th>" in table and 'class="bar"' in table
    assert re.search(r"<td>\d{1,3}(,\d{3})+</td>", table), "no Mult-Adds with thousands separators"
    assert re.search(r"<td>\d{1,3}\.\d{2}%</td>", dom), "no accuracy as a percent"
    assert '<span class="badge pass">PASS</span>' in dom and "badge fail" not in dom
    headers = re.findall(r"<th>([^<]*)</th>", dom)
    assert not [h for h in headers if "_" in h], headers  # human headers, not column names
    assert not re.search(r"<td>(True|False|None)</td>", dom)
    rows = _kv(dom)
    assert rows["Mult-Adds"] == re.sub(r"[^\d,]", "", rows["Mult-Adds"]) and "," in rows["Mult-Adds"]
    return rows


def _estimated_ms(rows: dict[str, str]) -> float:
    """The estimated time the device block gives, in ms (fixed-CPI estimate or llvm-mca's)."""
    label = next(k for k in rows if k.startswith("Estimated"))
    return float(re.search(r"([\d,.]+) ms", rows[label]).group(1).replace(",", ""))


def _page(small_artifacts, target: str, tmp_path, capsys) -> str:
    art = shutil.copytree(small_artifacts(target), tmp_path / target)
    code, _, err = run_cli(capsys, "bench", str(art), "--eval-size", "16", "--count", "2", "--warmup", "1")
    assert code == 0, err
    code, _, err = run_cli(capsys, "report", str(art), "--images", "8", "-o", str(tmp_path / "page.html"))
    assert code == 0, err
    return _render(tmp_path / "page.html")


@pytest.mark.slow
def test_cortex_m4_report_page_shows_flash_ram_ticks_and_time(small_artifacts, tmp_path, capsys):
    rows = assert_report_page(_page(small_artifacts, "cortex-m4", tmp_path, capsys), layers=29)
    for label in ("Flash", "RAM (total)"):  # bytes with separators, KiB, and the share of the target's budget
        assert re.fullmatch(r"[\d,]+ B \([\d.]+ KiB\) of [\d,]+ B \([\d.]+ [KM]iB\) budget \([\d.]+%\)", rows[label]), rows
    assert re.match(r"[\d,]+ B \([\d.]+ KiB\) = arena [\d,]+ B", rows["RAM (model's own)"]), rows
    assert re.match(r"\d{1,3}(,\d{3})+ \(x \d+ = [\d,]+ instructions\)", rows["SysTick ticks / inference"]), rows
    assert 0 < _estimated_ms(rows) < 1000 and "estimate" in rows["Estimate basis"]


@pytest.mark.slow
def test_rpi4_report_page_shows_instructions_and_estimated_time(small_artifacts, tmp_path, capsys):
    rows = assert_report_page(_page(small_artifacts, "rpi4", tmp_path, capsys), layers=29)
    assert re.match(r"\d{1,3}(,\d{3})+, exact count", rows["Instructions / inference"]), rows
    assert rows["Flash / RAM"] == "not measured for this backend"  # said, not left blank
    assert 0 < _estimated_ms(rows) < 100 and "estimate" in rows["Estimate basis"]
