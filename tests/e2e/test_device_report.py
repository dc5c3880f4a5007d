"""The device report block of a cortex-m4 artifact in bench's text, its --json and the HTML report: flash,
RAM, arena, stack, SysTick ticks with the instructions they stand for, the estimated time on the target's
STM32F4 board (labelled an estimate) and one row per plan layer, each figure the one the manifest holds."""
from __future__ import annotations

import json
import re

import pytest

from tests.cli import edgepack

pytestmark = pytest.mark.slow


def _expected(manifest: dict) -> dict:
    """What the block must show, computed here from the manifest and the target's [board]."""
    board, ticks = manifest["target"]["board"], manifest["cost"]["ticks_per_inference"]
    instructions = ticks * manifest["target"]["run"]["instructions_per_tick"]
    ms = instructions * board["cycles_per_instruction"] / (board["clock_mhz"] * 1e3)
    return {"board": board, "ticks": ticks, "instructions": instructions, "ms": ms}


def test_bench_and_report_show_the_device_block(small_artifacts, tmp_path):
    folder = small_artifacts("cortex-m4")
    manifest = json.loads((folder / "manifest.json").read_text())
    plan = json.loads((folder / "plan.json").read_text())
    want, fp = _expected(manifest), manifest["footprint"]
    # the manifest gives the estimate beside the exact count too
    assert manifest["cost"]["estimate"]["ms"] == pytest.approx(want["ms"]) and manifest["cost"]["estimate"]["is_estimate"]

    code, out, err, _ = edgepack("bench", folder, "--eval-size", "4", "--json", tmp_path / "b.json")
    assert code == 0, err
    block = json.loads((tmp_path / "b.json").read_text())["device_report"]
    assert block["board"]["name"] == want["board"]["name"] and block["memory"]["flash_bytes"] == fp["flash_bytes"]
    assert block["memory"]["arena_bytes"] == manifest["memory_plan"]["arena_bytes"]
    assert block["memory"]["model_ram_bytes"] == fp["model_ram_bytes"] and block["memory"]["ram_bytes"] == fp["ram_bytes"]
    assert block["compute"]["ticks_per_inference"] == want["ticks"]
    assert block["compute"]["estimate"]["ms"] == pytest.approx(want["ms"])
    layers = block["layers"]
    assert [r["kind"] for r in layers] == [layer["kind"] for layer in plan["layers"]]
    assert sum(r["macs"] for r in layers) == manifest["macs"]  # the plan's Mult-Adds add up to the model's
    assert [r["ticks"] for r in layers] == manifest["cost"]["per_layer_ticks"]
    assert [r["bytes"] for r in layers] == [r["total_bytes"] for r in fp["per_layer"]]
    assert sum(r["ticks_share"] for r in layers) == pytest.approx(1.0)

    assert "device report:" in out and "None" not in out
    assert f"{fp['flash_bytes']:,} B" in out and f"{manifest['memory_plan']['arena_bytes']:,} B" in out
    assert f"{want['ticks']:,} (x 40 = {want['instructions']:,} instructions)" in out
    assert f"{want['ms']:,.2f} ms" in out and "an estimate" in out and "cycles/instruction" in out
    biggest = max(layers, key=lambda r: r["ticks"])
    assert re.search(rf"\b{biggest['name']}\s+{biggest['kind']}\b.*\b{biggest['ticks']:,}\s", out), out

    code, _, err, _ = edgepack("report", folder, "-o", tmp_path / "r.html")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Device report</h2>" in page and 'class="badge pass">PASS' in page
    assert f"{fp['flash_bytes']:,} B" in page and f"{want['ms']:,.2f} ms" in page and want["board"]["name"] in page
    assert page.count('class="bar"') == len(plan["layers"]) and ">None<" not in page
    assert ">fp32_accuracy<" not in page and f"{manifest['metrics']['int8_accuracy']:.2%}" in page
