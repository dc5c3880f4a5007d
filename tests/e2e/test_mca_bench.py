"""bench of an rpi4 artifact shows the llvm-mca estimate (cycles per inference of the hot blocks qemu executed,
edgepack.devices.mca) beside the exact instruction count: in its text, its --json cost and device block, and
the HTML report; without llvm-mca it says how to install it in one line and keeps the fixed-CPI estimate.
Needs llvm-mca (Debian `llvm`): a missing one fails the first test."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.cli import edgepack

pytestmark = pytest.mark.slow


def test_bench_of_an_rpi4_artifact_estimates_its_cycles_with_llvm_mca(small_artifacts, tmp_path):
    folder = small_artifacts("rpi4")
    code, out, err, _ = edgepack("bench", folder, "--eval-size", "4", "--json", tmp_path / "b.json")
    assert code == 0, err
    report = json.loads((tmp_path / "b.json").read_text())
    cost = report["cost"]
    instructions, cycles = cost["instructions_per_inference"], cost["estimated_cycles_per_inference"]
    assert cost["mca_cpu"] == "cortex-a72" and cost["mca_covered_share"] >= 0.99 and "hottest blocks" in cost["mca_basis"]
    assert 0.2 * instructions < cycles < 3 * instructions  # plausible for an out-of-order 3-wide core
    est = report["device_report"]["compute"]["estimate"]
    assert est["method"] == "llvm-mca" and est["cycles"] == cycles and est["clock_mhz"] == 1500
    assert est["ms"] == pytest.approx(cycles / 1.5e6) and est["is_estimate"]
    line = re.search(r"^estimated cycles per inference \(llvm-mca cortex-a72, L1-resident\): [\d,.]+( M)?, "
                     r"[\d.,]+ ms at 1500 MHz$", out, re.M)
    assert line, out
    assert out.index("cost: Instructions / inference") < line.start()  # beside the instruction count
    assert "Estimated cycles (llvm-mca cortex-a72, L1-resident)" in out
    code, _, err, _ = edgepack("report", folder, "--bench", tmp_path / "b.json", "-o", tmp_path / "r.html")
    assert code == 0, err
    assert "Estimated cycles (llvm-mca cortex-a72, L1-resident)" in (tmp_path / "r.html").read_text()


def test_without_llvm_mca_bench_says_how_to_install_it_and_keeps_the_fixed_cpi_estimate(small_artifacts, tmp_path):
    """PATH: every program of this machine's PATH but llvm-mca and llvm-mc (symlinks in one folder)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in reversed(os.environ["PATH"].split(os.pathsep)):
        for tool in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if not tool.name.startswith(("llvm-mca", "llvm-mc")) and not (bin_dir / tool.name).is_symlink():
                (bin_dir / tool.name).symlink_to(tool)
    code, out, err, _ = edgepack("bench", small_artifacts("rpi4"), "--eval-size", "4", "--json", tmp_path / "b.json",
                                 env={"PATH": str(bin_dir)})
    assert code == 0, err
    note = [line for line in out.splitlines() if line.startswith("no llvm-mca estimate")]
    assert len(note) == 1 and "apt-get install -y llvm" in note[0], out
    report = json.loads((tmp_path / "b.json").read_text())
    assert "estimated_cycles_per_inference" not in report["cost"]
    est = report["device_report"]["compute"]["estimate"]
    assert est.get("method") is None and est["cycles_per_instruction"] == 0.57  # rpi4.toml's fixed CPI
    assert "Estimated time (board)" in out
