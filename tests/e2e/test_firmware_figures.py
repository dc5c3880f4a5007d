"""The Cortex-M figures a user budgets with are honest: the stack figure is a bound (the painted high-water
mark of edgepack_invoke below main's stack pointer, plus the most a SysTick interrupt can add at any instant:
its exception frame, 8-byte alignment and the handler's own frame from gcc -fstack-usage), the manifest says
how it was measured, and the model's own RAM (arena + model state + stack) is reported beside the harness
total, in the manifest and in bench's cost output. One small cortex-m4 artifact serves the module."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess

import pytest

from edgepack.backends.c.build import build
from edgepack.backends.c.runner import run_images
from edgepack.backends.c.spec import FIRMWARE, BuildSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def m4(tmp_path_factory):
    from tests.cli import SMALL, edgepack

    out = tmp_path_factory.mktemp("m4") / "art"
    code, _, err, _ = edgepack("compile", "--target", "cortex-m4", *SMALL, "-o", out)
    assert code == 0, err
    return out, json.loads((out / "manifest.json").read_text())


def test_stack_figure_adds_the_interrupt_margin(m4, tmp_path):
    folder, manifest = m4
    fp = manifest["footprint"]
    margin = fp["stack_margin"]
    # the M4F's FPU context can be live: the extended frame is 26 words
    assert margin["fpu_context"] is True and margin["exception_frame_bytes"] == 26 * 4 and margin["alignment_bytes"] == 4
    # the handler's frame is what gcc -fstack-usage says for the artifact's own start-up code and flags
    cc = manifest["backend_info"]
    subprocess.run(["arm-none-eabi-gcc", *cc["arch_flags"], *cc["cflags"], "-fstack-usage", "-c",
                    str(folder / "c" / "startup_cortexm.c"), "-o", str(tmp_path / "s.o")], check=True)
    handler = re.search(r":SysTick_Handler\t(\d+)\tstatic", (tmp_path / "s.su").read_text())
    assert margin["systick_handler_bytes"] == int(handler.group(1))
    assert margin["total_bytes"] == margin["exception_frame_bytes"] + 4 + margin["systick_handler_bytes"]
    assert fp["stack_bytes"] == fp["stack_measured_bytes"] + margin["total_bytes"]
    assert 0 < fp["stack_measured_bytes"] < fp["stack_bytes"] < 16384
    assert "exception frame" in fp["stack_method"] and "-fstack-usage" in fp["stack_method"]
    assert fp["ram_bytes"] == fp["firmware"]["data"] + fp["firmware"]["bss"] + fp["stack_bytes"]


def test_stack_bound_holds_when_interrupts_land_everywhere(m4, tmp_path):
    """The same sources built with SysTick interrupting every 98 cycles (so one lands at the deepest point of
    edgepack_invoke): the measured high-water mark grows past the uninterrupted one, and stays within the bound."""
    folder, manifest = m4
    spec = BuildSpec.from_json(manifest["target"])
    kernels = manifest["backend_info"]["kernels"]
    busy = dataclasses.replace(spec, cflags=spec.cflags + ("-DEDGEPACK_SYSTICK_RELOAD=97",))
    built = build(busy, folder / "c", tmp_path / "busy", kernels)
    import numpy as np

    golden = np.load(folder / "golden_input.npy")
    result = run_images(busy, built.files[FIRMWARE], golden, 10, "qemu-system-arm")
    assert np.array_equal(result.outputs, np.load(folder / "golden_output.npy"))
    fp = manifest["footprint"]
    assert fp["stack_measured_bytes"] < result.stack_bytes <= fp["stack_bytes"]


def test_model_ram_is_arena_state_and_stack_below_the_harness_total(m4):
    _, manifest = m4
    fp, mem = manifest["footprint"], manifest["memory_plan"]
    own = fp["model_ram"]
    assert own["arena_bytes"] == mem["arena_bytes"] == fp["arena_bytes"]
    assert own["state_bytes"] == fp["model_library"]["ram"] - mem["arena_bytes"] >= 0
    assert own["stack_bytes"] == fp["stack_bytes"]
    assert fp["model_ram_bytes"] == own["arena_bytes"] + own["state_bytes"] + own["stack_bytes"]
    assert fp["model_ram_bytes"] < fp["ram_bytes"]  # the harness's image buffers and newlib's state are not the model's
    assert "model_ram_bytes" in fp["ram_counts"]


def test_bench_reports_model_ram_beside_the_harness_total(m4):
    from tests.cli import edgepack

    folder, manifest = m4
    code, out, err, _ = edgepack("bench", folder, "--eval-size", "4")
    assert code == 0, err
    fp = manifest["footprint"]
    assert f"cost: Model RAM = {fp['model_ram_bytes']:,} B" in out  # bytes with separators (then KiB)
    assert f"cost: RAM = {fp['ram_bytes']:,} B" in out
    assert f"cost: Stack = {fp['stack_bytes']:,} B" in out
