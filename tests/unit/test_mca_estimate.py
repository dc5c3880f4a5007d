"""llvm-mca's cycle estimate over executed blocks (edgepack.devices.mca) and the QEMU plugin's blocks file it
reads: cycles are positive, scale with executions, and the blocks the plugin records add up to its exact
instruction count. Needs llvm-mca / llvm-mc (Debian `llvm`), qemu-aarch64 and the aarch64 cross gcc: a missing
tool fails these tests."""
from __future__ import annotations

import subprocess

import pytest

from edgepack.devices import mca, qemu
from edgepack.errors import ToolchainError

# ldr x0,[sp,#8]; madd x0,x3,x1,x0; str x0,[sp,#8]; add x1,x1,#1; subs x2,x2,#1; b.ne -20 (a counted loop's body)
LOOP = bytes.fromhex("e00740f9" "6000019b" "e00700f9" "21040091" "420400f1" "61ffff54")
# add x0,x0,#1 x4; ret
STRAIGHT = bytes.fromhex("00040091" * 4 + "c0035fd6")


def test_a_known_block_costs_positive_cycles_that_scale_with_its_executions():
    one = mca.estimate({(0x400000, LOOP): 1000}, "cortex-a72")
    two = mca.estimate({(0x400000, LOOP): 2000}, "cortex-a72")
    assert one.cycles > 0 and one.hot_blocks == 1 and one.covered_share == 1.0
    assert two.cycles == pytest.approx(2 * one.cycles)
    # 6 instructions per iteration: somewhere between a superscalar 3 per cycle and an in-order 1 per 5 cycles
    assert 2 * 1000 <= one.cycles <= 30 * 1000
    a53 = mca.estimate({(0x400000, LOOP): 1000}, "cortex-a53")
    assert a53.cycles > one.cycles  # the in-order A53 takes longer than the out-of-order A72


def test_blocks_add_up_and_the_cold_share_is_scaled_to_all_instructions():
    blocks = {(0x1000, LOOP): 1000, (0x2000, STRAIGHT): 10}
    both = mca.estimate(blocks, "cortex-a72", coverage=1.0)
    alone = mca.estimate({(0x1000, LOOP): 1000}, "cortex-a72").cycles
    straight = mca.estimate({(0x2000, STRAIGHT): 10}, "cortex-a72").cycles
    assert both.hot_blocks == 2 and both.cycles == pytest.approx(alone + straight)
    hot = mca.estimate(blocks, "cortex-a72", coverage=0.99)  # the loop holds 6000 of 6050 instructions
    assert hot.hot_blocks == 1 and hot.covered_share == pytest.approx(6000 / 6050)
    assert hot.cycles == pytest.approx(alone * 6050 / 6000)


def test_per_inference_blocks_are_the_difference_of_two_runs_matched_by_their_bytes():
    one = {(1, LOOP): 10, (2, STRAIGHT): 5}
    three = {(1, LOOP): 30, (2, STRAIGHT): 5, (3, STRAIGHT): 4}
    assert mca.difference(three, one, 2) == {(1, LOOP): 10, (2, STRAIGHT): 2}
    # qemu-user maps the library elsewhere in each run: the same bytes at another address are the same block
    moved = {(0x7000 + a, code): n for (a, code), n in three.items()}
    assert mca.difference(moved, one, 2) == {(0x7001, LOOP): 10, (0x7002, STRAIGHT): 2}
    counted = sum(n * len(code) // 4 for (_, code), n in mca.difference(moved, one, 2).items())
    assert mca.cost_figures(one, moved, 2, "cortex-a72", counted)["estimated_cycles_per_inference"] > 0
    with pytest.raises(Exception, match="add up to"):  # blocks that do not add up to the exact count: refused
        mca.cost_figures(one, moved, 2, "cortex-a72", counted * 1.5)


def test_an_unknown_core_is_one_line_naming_the_target_key():
    with pytest.raises(Exception, match="mca_cpu"):
        mca.estimate({(0x1000, LOOP): 1}, "cortex-z99")


def test_the_plugin_records_blocks_that_add_up_to_its_instruction_count(tmp_path):
    source = tmp_path / "loop.c"
    source.write_text("int main(int c, char **v) { volatile long s = 0; for (long i = 0; i < 5000; i++) s += i * c;"
                      " return (int)(s & 1); }\n")
    subprocess.run(["aarch64-linux-gnu-gcc", "-O1", "-static", "-o", tmp_path / "loop", source], check=True)
    run = qemu.run_user([tmp_path / "loop"], cpu="cortex-a72", count=True, blocks=True, timeout=60)
    assert run.returncode == 0 and run.blocks
    assert sum(n * len(code) // 4 for (_, code), n in run.blocks.items()) == run.instructions
    assert max(run.blocks.values()) >= 4999  # the loop body's block
    plain = qemu.run_user([tmp_path / "loop"], cpu="cortex-a72", count=True, timeout=60)
    assert plain.blocks is None and plain.instructions == run.instructions  # the blocks file changes no count
    est = mca.estimate(run.blocks, "cortex-a72")
    assert 0.2 * run.instructions < est.cycles < 3 * run.instructions and est.covered_share >= mca.COVERAGE


def test_without_llvm_mca_the_cost_figures_say_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no llvm-mca, no llvm-mc
    figures = mca.cost_figures({}, {}, 2, "cortex-a72")
    assert list(figures) == ["mca_note"] and "apt-get install -y llvm" in figures["mca_note"]
    with pytest.raises(ToolchainError, match="apt-get install -y llvm"):
        mca.estimate({(0x1000, LOOP): 1}, "cortex-a72")


def test_the_device_block_shows_the_llvm_mca_estimate_at_the_board_clock():
    from edgepack.benchmark import device_report
    from edgepack.targets import Board

    board = Board(name="Raspberry Pi 4", clock_mhz=1500, cycles_per_instruction=0.57, mca_cpu="cortex-a72")
    cost = {"instructions_per_inference": 96_839_282, **mca.Estimate(54_812_345.4, "cortex-a72", 412, 0.9903).to_cost()}
    est = device_report.mca_estimate(cost, board)
    assert est["cycles"] == 54_812_345 and est["ms"] == pytest.approx(54_812_345.4 / 1.5e6)
    assert est["cycles_per_instruction"] == pytest.approx(0.566, abs=1e-3) and "412 hottest blocks (99.03% of" in est["assumption"]
    comp = {"instructions_per_inference": 96_839_282, "estimate": est}
    assert device_report.mca_line(comp) == ("estimated cycles per inference (llvm-mca cortex-a72, L1-resident): "
                                            "54.8 M, 36.54 ms at 1500 MHz")
    rows = dict(device_report.compute_rows(comp, None))
    assert rows["Estimated cycles (llvm-mca cortex-a72, L1-resident)"].startswith("54,812,345 (54.8 M) = 36.54 ms at 1,500 MHz")
    assert device_report.mca_estimate({"instructions_per_inference": 5}, board) is None  # no llvm-mca figure
