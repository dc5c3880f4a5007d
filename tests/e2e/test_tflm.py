"""The tflm target: model.tflite as a C array for TensorFlow Lite Micro firmware, with the arena TFLM needs and
the ops to register; the array compiles warning-free for a Cortex-M4 and holds exactly the verified model,
and bench runs it in TFLM's own interpreter (the real interpreter's arena is checked in test_tflm_arena.py)."""
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
    assert arena["arena_bytes"] < arena["arena_bytes_64bit"]  # the header's figure is for 32-bit pointers
    # reuse: far below the sum of all activations, at least the largest layer's input + output (int8 96x96x8 x 2)
    assert 2 * 48 * 48 * 8 <= arena["activations_bytes"] < arena["naive_activations_bytes"]


@pytest.mark.slow
def test_bench_runs_the_bytes_in_tflm_interpreter_within_the_estimated_arena(tflm_artifact, capsys):
    code, out, err = run_cli(capsys, "bench", str(tflm_artifact))
    assert code == 0, out + err
    assert "[PASS] eval: tflite-micro interpreter (host, reference kernels) == reference (bit-exact): 0" in out
    estimate = json.loads((tflm_artifact / "manifest.json").read_text())["backend_info"]["arena"]["arena_bytes_64bit"]
    assert f"TFLM ran in edgepack's 64-bit arena estimate, {estimate} bytes" in out
    assert "TFLM vs LiteRT's reference kernels on the eval inputs: 0 values differ" in out


@pytest.mark.slow
def test_bench_fails_when_tflm_refuses_the_arena(tflm_artifact, tmp_path, capsys):
    """An estimate below what TFLM needs is an error naming the arena, not a pass on other kernels."""
    import shutil

    from edgepack.backends.tflm import interpreter

    folder = tmp_path / "short"
    shutil.copytree(tflm_artifact, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    short = interpreter.minimum_arena((folder / "model.tflite").read_bytes()) - 1
    manifest["backend_info"]["arena"]["arena_bytes_64bit"] = short
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = run_cli(capsys, "bench", str(folder))
    assert code != 0 and f"TensorFlow Lite Micro refused model.tflite in edgepack's 64-bit arena estimate, {short} " \
        "bytes" in err, out + err


@pytest.mark.slow
def test_header_registers_exactly_the_ops_the_model_uses(tflm_artifact):
    """The firmware's MicroMutableOpResolver gets one Add call per builtin op in model.tflite, no more."""
    import tflite

    model = tflite.Model.GetRootAsModel((tflm_artifact / "model.tflite").read_bytes(), 0)
    graph = model.Subgraphs(0)
    codes = {model.OperatorCodes(graph.Operators(i).OpcodeIndex()).BuiltinCode() for i in range(graph.OperatorsLength())}
    method = {tflite.BuiltinOperator.CONV_2D: "AddConv2D", tflite.BuiltinOperator.DEPTHWISE_CONV_2D: "AddDepthwiseConv2D",
              tflite.BuiltinOperator.PAD: "AddPad", tflite.BuiltinOperator.AVERAGE_POOL_2D: "AddAveragePool2D",
              tflite.BuiltinOperator.RESHAPE: "AddReshape", tflite.BuiltinOperator.FULLY_CONNECTED: "AddFullyConnected"}
    header = (tflm_artifact / "model_data.h").read_text()
    registered = re.search(r"#define EDGEPACK_TFLM_REGISTER_OPS\(resolver\) do \{(.*)\} while \(0\)", header).group(1)
    assert sorted(re.findall(r"\(resolver\)\.(\w+)\(\);", registered)) == sorted(method[c] for c in codes)
    assert f"#define EDGEPACK_TFLM_OP_COUNT {len(codes)}" in header


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
