"""Regression gate: baselines (exit 1 with a table naming what regressed), JUnit, per-layer
debug, sweeps, and the HTML report rendered in headless Chromium."""
import json
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import pytest

import edgepack
from edgepack.artifact import MANIFEST, write_manifest
from edgepack.benchmark.debug import debug_artifact
from edgepack.plan.plan import Plan
from tests.conftest import ALPHA, RES, run_cli

pytestmark = pytest.mark.slow  # every test here benches a compiled artifact or runs a sweep


def worsened_copy(src, dst, layer_index=5, extra_shift=-2):
    """A consistent (re-signed) artifact whose plan has a wrong shift in one layer: a compiler bug."""
    shutil.copytree(src, dst)
    plan = Plan.load(dst)
    plan.layers[layer_index].arrays["shift"] = plan.layers[layer_index].arrays["shift"] + extra_shift
    plan.save(dst)
    manifest = json.loads((dst / MANIFEST).read_text())
    manifest.pop("files")
    write_manifest(dst, manifest)
    return dst


def test_baseline_gate(host_artifact, tmp_path, capsys):
    base = tmp_path / "baseline.json"
    code, out, _ = run_cli(capsys, "bench", str(host_artifact), "--count", "10", "--update-baseline", str(base))
    assert code == 0 and base.exists()
    code, out, _ = run_cli(capsys, "bench", str(host_artifact), "--count", "10", "--baseline", str(base),
                           "--max-latency-increase", "5", "--junit", str(tmp_path / "ok.xml"))
    assert code == 0, out
    assert "no regression" in out
    bad = worsened_copy(host_artifact, tmp_path / "worse")
    code, out, _ = run_cli(capsys, "bench", str(bad), "--count", "10", "--baseline", str(base),
                           "--max-latency-increase", "5", "--junit", str(tmp_path / "bad.xml"))
    assert code == 1
    table = out.split("against baseline")[1]
    assert any(row.startswith("accuracy ") for row in table.splitlines()) and "REGRESSED" in table
    assert "regression(s):" in out
    suite = ET.parse(tmp_path / "bad.xml").getroot()
    assert int(suite.get("failures")) >= 2 and len(suite.findall("testcase")) == int(suite.get("tests"))
    assert ET.parse(tmp_path / "ok.xml").getroot().get("failures") == "0"


def test_missing_baseline_is_a_clear_error(host_artifact, tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", str(host_artifact), "--baseline", str(tmp_path / "none.json"))
    assert code == 2 and "--update-baseline" in err


@pytest.fixture(scope="module")
def per_tensor_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("pt") / "per_tensor"
    return edgepack.compile(target="host", alpha=ALPHA, resolution=RES, eval_size=40, calib_size=64,
                            weight_granularity="per-tensor", equalize=False, output=str(out))  # the collapse debug explains


def test_debug_names_depthwise_layers_worst_for_per_tensor(per_tensor_artifact, tmp_path, capsys):
    d = debug_artifact(per_tensor_artifact, images=32)
    kinds = {r["layer"]: r["kind"] for r in d["layers"]}
    assert kinds[d["worst"][0]] == "depthwise"
    assert sum(kinds[n] == "depthwise" for n in d["worst"][:3]) >= 2
    code, out, _ = run_cli(capsys, "debug", str(per_tensor_artifact), "--plot", str(tmp_path / "d.png"))
    assert code == 0 and "worst layers" in out
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _render(html_path) -> str:
    profile = tempfile.mkdtemp()
    try:
        r = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
                            f"file://{html_path}"], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return r.stdout


@pytest.mark.slow
def test_sweep_and_report_render_in_chromium(tmp_path, capsys):
    code, out, err = run_cli(capsys, "sweep", "--target", "host", "--alpha", "0.5,0.25", "--resolution", "64,32",
                             "--eval-size", "40", "--calib-size", "32", "-o", str(tmp_path / "sw"))
    assert code == 0, err
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert len(rows) == 4 and all(r["passed"] for r in rows)
    assert (tmp_path / "sw" / "sweep.csv").read_text().count("\n") == 5
    macs = {(r["alpha"], r["resolution"]): r["macs"] for r in rows}
    assert macs[(0.5, 64)] > macs[(0.25, 64)] > macs[(0.25, 32)]
    code, _, _ = run_cli(capsys, "report", str(tmp_path / "sw"))
    assert code == 0
    dom = _render(tmp_path / "sw" / "report.html")
    assert 'data-images-loaded="2"' in dom and "<table" in dom and "accuracy vs Mult-Adds" in dom
    # the sweep page as users read it: percents, separators, times in ms, PASS badges, the Pareto front marked
    assert re.search(r"<td>\d{1,3}\.\d{2}%</td>", dom) and re.search(r"<td>\d{1,3}(,\d{3})+</td>", dom)
    assert re.search(r"<td>[\d.]+ ms</td>", dom) and dom.count('<span class="badge pass">PASS</span>') == 4
    assert dom.count('<span class="badge front">time</span>') >= 2 and not re.search(r"<th>[^<]*_", dom)
    assert '"badge front">flash' not in dom  # host measures no flash: no flash front is announced


def test_artifact_report_renders(host_artifact, tmp_path, capsys):
    code, _, _ = run_cli(capsys, "report", str(host_artifact), "-o", str(tmp_path / "a.html"))
    assert code == 0
    dom = _render(tmp_path / "a.html")
    # Summary, Bench checks, Device report and its per-layer table, Latency, Per-layer error, Files
    assert 'data-images-loaded="1"' in dom and 'data-tables="7"' in dom and "Bench checks" in dom
    from tests.e2e.test_report_pages import assert_report_page  # the checks every artifact page passes

    rows = assert_report_page(dom, layers=29)
    assert re.fullmatch(r"[\d,]+\.\d+ ms", rows["Measured latency (median)"]), rows


@pytest.mark.slow
def test_mobilenet_v1_and_v2_sweeps_on_one_plot(tmp_path, capsys):
    """`sweep --model mobilenet_v2` sweeps alpha and resolution (random weights with BatchNorm statistics: no V2
    weights are shipped yet), `sweep --model mobilenet_v1` uses the shipped ones, and `report DIR1 DIR2` puts both
    on one accuracy-vs-Mult-Adds plot, a series per model (the paper's Figure 5); one checkpoint for two
    architectures is refused before any build."""
    import torch

    from edgepack.data import load_dataset
    from edgepack.model.mobilenet_v2 import MobileNetV2
    from tests.e2e.test_residual import _with_batchnorm_statistics

    torch.manual_seed(0)
    digits = load_dataset(None, "calibration", 32, 10, (0.5,) * 3, (0.5,) * 3)
    v2 = _with_batchnorm_statistics(MobileNetV2(0.35, 32, 10), torch.from_numpy(digits.images[:64]))
    torch.save(v2.state_dict(), tmp_path / "v2.pt")
    small = ["--target", "c-host", "--resolution", "32,64", "--eval-size", "16", "--calib-size", "16", "--jobs", "1"]
    code, _, err = run_cli(capsys, "sweep", *small, "--model", "mobilenet_v1,mobilenet_v2", "--checkpoint",
                           str(tmp_path / "v2.pt"), "-o", str(tmp_path / "refused"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "edgepack report DIR1 DIR2" in err, err
    assert not (tmp_path / "refused").exists()
    code, _, err = run_cli(capsys, "sweep", *small, "--model", "mobilenet_v2", "--alpha", "0.35", "--checkpoint",
                           str(tmp_path / "v2.pt"), "-o", str(tmp_path / "v2"))
    assert code == 0, err
    code, _, err = run_cli(capsys, "sweep", *small, "--model", "mobilenet_v1", "--alpha", "0.25", "-o", str(tmp_path / "v1"))
    assert code == 0, err
    v2_rows = json.loads((tmp_path / "v2" / "sweep.json").read_text())["rows"]
    assert [(r["model"], r["alpha"], r["resolution"], r["passed"]) for r in v2_rows] == \
        [("mobilenet_v2", 0.35, 32, True), ("mobilenet_v2", 0.35, 64, True)]
    assert v2_rows[1]["macs"] > 3.5 * v2_rows[0]["macs"]
    assert json.loads((tmp_path / "v2" / "mobilenet_v2_a0.35_r32" / "manifest.json").read_text())["model"]["name"] == "MobileNetV2"
    code, out, err = run_cli(capsys, "report", str(tmp_path / "v1"), str(tmp_path / "v2"), "-o", str(tmp_path / "both.html"))
    assert code == 0, err
    page = (tmp_path / "both.html").read_text()
    assert page.count("<td>mobilenet_v1</td>") == 2 and page.count("<td>mobilenet_v2</td>") == 2
    assert page.count("<img") == 3 and "accuracy vs Mult-Adds" in page  # and vs time, vs flash (c-host measures it)
    code, _, err = run_cli(capsys, "report", str(tmp_path / "v1"), str(tmp_path / "v2" / "mobilenet_v2_a0.35_r32"))
    assert code == 2 and "is not a sweep folder" in err
