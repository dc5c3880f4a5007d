"""The tflm target (issue 14 item 3): model.tflite as a C array for TensorFlow Lite Micro firmware, with the
arena estimate; the array compiles warning-free for a Cortex-M4 and holds exactly the verified model."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def tflm_artifact(tmp_path_factory):
    import edgepack

    out = tmp_path_factory.mktemp("tflm") / "art"
    return edgepack.compile(target="tflm", alpha=0.25, resolution=96, eval_size=16, calib_size=32, output=str(out))


@pytest.mark.slow
def test_c_array_holds_the_verified_tflite_and_compiles_warning_free(tflm_artifact, tmp_path):
    manifest = json.loads((tflm_artifact / "manifest.json").read_text())
    assert {"model.tflite", "model_data.c", "model_data.h"} <= set(manifest["files"])
    assert manifest["tflite"]["reference_kernels"]["bit_exact"]
    model = (tflm_artifact / "model.tflite").read_bytes()
    source = (tflm_artifact / "model_data.c").read_text()
    body = source[source.index("{") + 1:source.index("};")]
    assert bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body)) == model
    obj = tmp_path / "model_data.o"
    cmd = ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wpedantic",
           "-c", str(tflm_artifact / "model_data.c"), "-o", str(obj)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    symbols = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], capture_output=True, text=True, check=True).stdout
    size = next(int(line.split()[1], 16) for line in symbols.splitlines() if line.endswith(" g_edgepack_model_data"))
    assert size == len(model)


@pytest.mark.slow
def test_arena_estimate_is_recorded_and_sane(tflm_artifact):
    info = json.loads((tflm_artifact / "manifest.json").read_text())["backend_info"]
    arena = info["arena"]
    header = (tflm_artifact / "model_data.h").read_text()
    assert f"#define EDGEPACK_TENSOR_ARENA_SIZE {arena['arena_bytes']}" in header
    assert arena["is_estimate"] and arena["activations_bytes"] % 16 == 0
    # reuse: far below the sum of all activations, at least the largest layer's input + output (int8 96x96x8 x 2)
    assert 2 * 48 * 48 * 8 <= arena["activations_bytes"] < arena["naive_activations_bytes"]


@pytest.mark.slow
def test_bench_runs_the_bytes_under_litert_reference_kernels(tflm_artifact, capsys):
    code, out, err = run_cli(capsys, "bench", str(tflm_artifact))
    assert code == 0, out + err
    assert "eval: litert-reference-kernels (host) == reference (bit-exact): 0" in out


def test_fp32_is_refused_in_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "compile", "--target", "tflm", "--alpha", "0.25", "--resolution", "32",
                           "--eval-size", "8", "--quant", "none", "-o", str(tmp_path / "x"))
    assert code == 2 and len(err.splitlines()) == 1 and "--quant ptq" in err, err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_lower_returns_the_files_it_wrote_and_leaves_the_build_alone(tflm_artifact, tmp_path):
    """lower() hands the compiler one Lowered value (the manifest's backend_info, the files written) and
    changes nothing it was given: the compiler alone writes the manifest."""
    import shutil
    from types import SimpleNamespace

    from edgepack.backends import tflm
    from edgepack.backends.lowered import Lowered
    from edgepack.plan.plan import Plan

    folder = tmp_path / "again"
    folder.mkdir()
    shutil.copy(tflm_artifact / "model.tflite", folder)
    build = SimpleNamespace(plan=Plan.load(tflm_artifact), manifest={})
    given = dict(vars(build))
    lowered = tflm.lower(build, folder)
    manifest = json.loads((tflm_artifact / "manifest.json").read_text())
    assert isinstance(lowered, Lowered) and lowered.manifest_entries() == {"backend_info": manifest["backend_info"]}
    assert vars(build) == given and build.manifest == {}
    assert sorted(lowered.files) == ["model_data.c", "model_data.h"]
    for name in lowered.files:
        assert (folder / name).read_bytes() == (tflm_artifact / name).read_bytes()
