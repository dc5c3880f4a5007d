"""bench's and report's per-layer table name a layer as debug does (its module path, `features.3.1.0`), so one
layer reads the same in every command; a layer no module makes (a functional pool, an add) keeps its plan name."""
from __future__ import annotations

import json

import pytest

import edgepack
from edgepack.artifact import load as load_artifact
from edgepack.benchmark import debug, device_report
from edgepack.plan.plan import Plan

pytestmark = pytest.mark.slow  # compiles the small host artifact


def test_device_block_names_layers_like_debug(small_artifacts):
    folder = small_artifacts("host")
    plan, manifest = Plan.load(folder), load_artifact(folder)
    names = debug.module_names(manifest, folder, plan)
    assert names is not None and len(names) == len(plan.layers)
    block = device_report.block(manifest, plan, None, None, names)
    shown = [r["name"] for r in block["layers"]]
    debugged = [r["module"] or r["layer"] for r in edgepack.debug(str(folder), images=2)["layers"]]
    assert shown == debugged
    assert shown[0].startswith("features.") and all(not n.startswith("conv2d") for n in shown)
    assert [r["plan_name"] for r in block["layers"]] == [layer.name for layer in plan.layers]
    json.dumps(block)  # still plain data for bench --json


def test_device_block_keeps_plan_names_without_a_model(small_artifacts):
    folder = small_artifacts("host")
    plan, manifest = Plan.load(folder), load_artifact(folder)
    block = device_report.block(manifest, plan, None, None, None)  # what an imported .tflite gets
    assert [r["name"] for r in block["layers"]] == [layer.name for layer in plan.layers]


def test_report_page_names_layers_like_debug(small_artifacts, tmp_path):
    folder = small_artifacts("host")
    out = tmp_path / "r.html"
    edgepack.report(str(folder), output=str(out), eval_size=4, images=2, rebench=True)
    page = out.read_text()
    assert "<td>features.0.0</td>" in page and "<td>features.13.1.0</td>" in page
    assert "conv2d" not in page  # neither the device block nor the per-layer error table uses the plan's names
    assert "h1,h2{overflow-wrap:anywhere}" in page  # a long calibration path in the per-layer heading wraps
