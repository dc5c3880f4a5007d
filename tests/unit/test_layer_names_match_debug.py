"""bench's and report's per-layer table name a layer as debug does (its module path, `features.3.1.0`), so one
layer reads the same in every command; a layer no module makes (a functional pool, an add) keeps its plan name.
Compile records the names in the manifest (plan.module_paths) once: bench reads them and rebuilds no model."""
from __future__ import annotations

import json
import shutil

import pytest

import edgepack
from edgepack.artifact import load as load_artifact
from edgepack.benchmark import device_report
from edgepack.benchmark.run import bench_artifact
from edgepack.errors import ArtifactError
from edgepack.plan.plan import Plan
from tests.cli import resign

pytestmark = pytest.mark.slow  # compiles the small host artifact


def _edited(folder, tmp_path, edit):
    """A copy of the artifact whose manifest ``edit`` changed (re-hashed, so it verifies)."""
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    resign(copy)
    return copy


def test_device_block_names_layers_like_debug(small_artifacts):
    folder = small_artifacts("host")
    plan, manifest = Plan.load(folder), load_artifact(folder)
    names = device_report.recorded_names(manifest)
    assert names is not None and len(names) == len(plan.layers)
    block = device_report.block(manifest, plan, None, None, names)
    shown = [r["name"] for r in block["layers"]]
    debugged = [r["module"] or r["layer"] for r in edgepack.debug(str(folder), images=2)["layers"]]
    assert shown == debugged
    assert shown[0].startswith("features.") and all(not n.startswith("conv2d") for n in shown)
    assert [r["plan_name"] for r in block["layers"]] == [layer.name for layer in plan.layers]
    json.dumps(block)  # still plain data for bench --json


def test_bench_shows_the_names_compile_recorded_without_rebuilding_the_model(small_artifacts, tmp_path):
    """Names no model has: they can only have come from the manifest, not from a rebuilt fp32 model."""
    folder = small_artifacts("host")
    layers = len(Plan.load(folder).layers)
    copy = _edited(folder, tmp_path, lambda m: m["plan"].update(module_paths=[f"recorded.{i}" for i in range(layers)]))
    report = bench_artifact(copy, eval_size=4, count=2, warmup=0)
    assert [r["name"] for r in report["device_report"]["layers"]] == [f"recorded.{i}" for i in range(layers)]


def test_bench_of_an_artifact_without_recorded_names_keeps_the_plan_names(small_artifacts, tmp_path):
    """An artifact from before the record (or an imported .tflite) benches with its plan's names."""
    folder = small_artifacts("host")
    copy = _edited(folder, tmp_path, lambda m: m["plan"].pop("module_paths"))
    report = bench_artifact(copy, eval_size=4, count=2, warmup=0)
    assert [r["name"] for r in report["device_report"]["layers"]] == [layer.name for layer in Plan.load(copy).layers]


def test_recorded_names_must_cover_every_plan_layer(small_artifacts, tmp_path):
    folder = small_artifacts("host")
    copy = _edited(folder, tmp_path, lambda m: m["plan"].update(module_paths=["features.0.0"]))
    with pytest.raises(ArtifactError, match="module_paths names 1 layers"):
        load_artifact(copy)


def test_report_page_names_layers_like_debug(small_artifacts, tmp_path):
    folder = small_artifacts("host")
    out = tmp_path / "r.html"
    edgepack.report(str(folder), output=str(out), eval_size=4, images=2, rebench=True)
    page = out.read_text()
    assert "<td>features.0.0</td>" in page and "<td>features.13.1.0</td>" in page
    assert "conv2d" not in page  # neither the device block nor the per-layer error table uses the plan's names
    assert "h1,h2{overflow-wrap:anywhere}" in page  # a long calibration path in the per-layer heading wraps
