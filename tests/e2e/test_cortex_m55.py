"""The cortex-m55 target (qemu mps3-an547, Helium / MVE): its Helium kernels equal the numpy reference bit for bit
on random layers (tails, positive shifts, saturation, TFLite pads), a compiled model records them in kernel_choices
and benches PASS bit-exact, and they beat the fast (DSP) kernels of the same core. Builds firmware and runs QEMU:
slow; a missing arm-none-eabi-gcc / newlib / qemu-system-arm fails the compile (ToolchainError), it never skips."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.backends.c.spec import BuildSpec
from edgepack.plan import reference
from edgepack.targets import BUILTIN_DIR, get_target
from tests.cli import SMALL, edgepack
from tests.e2e.test_c_backend import LAYER_CASES, _random_layer, _run_plan

HELIUM_CASES = {  # shapes the Helium kernels split differently from the DSP ones
    "pointwise 37 in (two 16-byte chunks + a tail), 25 pixels (3 blocks of 8 + 1)":
        dict(kind="pointwise", c=37, h=5, w=5, out_c=6, in_zp=-17, out_zp=9),
    "pointwise 3x3 plane, 64 in, relu": dict(kind="pointwise", c=64, h=3, w=3, out_c=5, in_zp=-128, out_zp=-128,
                                              relu=True),
    "depthwise s1, 13 wide (a 1-output last pass)": dict(kind="depthwise", c=3, h=5, w=13, in_zp=4, out_zp=-2),
    "depthwise s2, 3x3 plane": dict(kind="depthwise", c=7, h=3, w=3, stride=2, in_zp=-128, out_zp=0),
    "depthwise s2, 10x9 outputs (row passes, not flat)": dict(kind="depthwise", c=3, h=20, w=18, stride=2, in_zp=-9,
                                                              out_zp=11, relu=True),
    "conv3x3 3 in s2, 17 wide": dict(kind="conv", c=3, h=11, w=17, out_c=4, stride=2, in_zp=-1, out_zp=-5, relu=True),
    "conv3x3 7 in s1, positive shifts": dict(kind="conv", c=7, h=6, w=6, out_c=3, in_zp=3, out_zp=1, small=True),
    "conv3x3 1 in (grayscale) s2": dict(kind="conv", c=1, h=9, w=10, out_c=5, stride=2, in_zp=-128, out_zp=-7),
}


@pytest.mark.slow
def test_helium_kernels_match_reference_on_random_layers(tmp_path):
    rng = np.random.default_rng(55)
    m55 = BuildSpec.from_target(get_target("cortex-m55"))
    for i, (name, case) in enumerate({**LAYER_CASES, **HELIUM_CASES}.items()):
        plan, x = _random_layer(rng, **case)
        want = reference.run(plan, x).reshape(len(x), -1)
        got = _run_plan(m55, plan, x, "helium", tmp_path / str(i))
        assert np.array_equal(got, want), f"{name}: cortex-m55 helium differs in {np.count_nonzero(got != want)} values"


def _fast_board(tmp_path) -> str:
    """cortex-m55 with the fast (DSP) kernel set instead of helium: the same core, the baseline."""
    boards = tmp_path / "boards"
    boards.mkdir()
    text = (BUILTIN_DIR / "cortex-m55.toml").read_text()
    assert 'kernels = "helium"' in text
    text = text.replace('name = "cortex-m55"', 'name = "m55-dsp"').replace('kernels = "helium"', 'kernels = "fast"')
    (boards / "m55-dsp.toml").write_text(text)
    return str(boards)


@pytest.mark.slow
def test_cortex_m55_model_runs_helium_kernels_bit_exact_and_faster_than_dsp(small_artifacts, tmp_path):
    art = small_artifacts("cortex-m55")
    manifest = json.loads((art / "manifest.json").read_text())
    info, cost = manifest["backend_info"], manifest["cost"]
    assert info["kernels"] == "helium" and "c/kernels_helium.c" in info["sources"]
    chosen = {r["kernel"] for r in info["kernel_choices"]}
    assert {"ep_pointwise_helium", "ep_depthwise_helium", "ep_conv_helium"} <= chosen
    assert not any(r["fallback"] for r in info["kernel_choices"])
    assert "Helium" in info["fast_layers"]
    assert cost["instructions_per_inference"] == round(cost["ticks_per_inference"] * 31.25)
    code, out, err, _ = edgepack("bench", art, "--count", "1")
    assert code == 0 and "result: PASS" in out, out + err
    assert "[PASS] eval: qemu-system-arm mps3-an547 == reference (bit-exact)" in out
    assert "device: kernels helium: " in out
    dsp = tmp_path / "dsp"
    code, _, err, _ = edgepack("compile", "--target", "m55-dsp", "--targets", _fast_board(tmp_path), *SMALL, "-o", dsp)
    assert code == 0, err
    dsp_cost = json.loads((dsp / "manifest.json").read_text())["cost"]
    assert cost["ticks_per_inference"] < 0.7 * dsp_cost["ticks_per_inference"], (cost, dsp_cost)
