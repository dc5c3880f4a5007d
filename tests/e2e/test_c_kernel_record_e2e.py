"""A cortex-m4 artifact records which C kernel ran each layer and bench's device line says how many were fast; on a
board whose RAM budget the fast kernels' scratch alone would exceed, the compile is not refused: the peak layer runs
its portable kernel (bit-exact, recorded with the reason) and the artifact fits. Compiles and runs QEMU: slow."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgepack
from edgepack.errors import BudgetError
from edgepack.interop.tflite_export import write_tflite
from edgepack.targets import BUILTIN_DIR
from tests.cli import edgepack as edgepack_cli
from tests.conformance.plans import FAST_PATH_CASES, fast_path_case


def _model(tmp_path):
    """The ResNet-style fast-path plan (GEMM convs, strided pointwise, add, fc) as a .tflite with 12 eval images."""
    plan, _ = fast_path_case(next(iter(FAST_PATH_CASES)))
    model = write_tflite(plan, tmp_path / "fast_path.tflite")
    images = np.random.default_rng(3).integers(0, 256, (12, *plan.input_shape)).astype(np.uint8)
    np.savez(tmp_path / "eval.npz", images=images, labels=np.arange(12) % plan.output_shape[0])
    return plan, model, tmp_path / "eval.npz"


def _board(tmp_path, ram_bytes: int) -> str:
    boards = tmp_path / "boards"
    boards.mkdir(exist_ok=True)
    text = (BUILTIN_DIR / "cortex-m4.toml").read_text().replace('name = "cortex-m4"', 'name = "m4-tight"')
    assert "ram_bytes = 262144" in text
    (boards / "m4-tight.toml").write_text(text.replace("ram_bytes = 262144", f"ram_bytes = {ram_bytes}"))
    return str(boards)


def _compile_and_bench(tmp_path, model, eval_data, target: str, **options):
    out = edgepack.compile(str(model), target, eval_data=str(eval_data), output=str(tmp_path / target), **options)
    manifest = json.loads((tmp_path / target / "manifest.json").read_text())
    code, stdout, err, _ = edgepack_cli("bench", out, "--count", "1")
    assert code == 0 and "result: PASS" in stdout, stdout + err
    return manifest, next(line for line in stdout.splitlines() if line.startswith("device: "))


@pytest.mark.slow
def test_a_cortex_m4_artifact_records_its_kernels_and_bench_prints_how_many_were_fast(tmp_path):
    plan, model, eval_data = _model(tmp_path)
    manifest, line = _compile_and_bench(tmp_path, model, eval_data, "cortex-m4")
    info = manifest["backend_info"]
    rows = info["kernel_choices"]
    assert [r["kind"] for r in rows] == [layer.kind for layer in plan.layers]  # names: the .tflite import's
    assert not any(r["fallback"] for r in rows) and manifest["memory_plan"]["scratch_fallbacks"] == {}
    model_c = (tmp_path / "cortex-m4" / "c" / "model.c").read_text()
    assert all(f"{r['kernel']}(&edgepack_l{r['layer']}, " in model_c for r in rows)
    n = len(plan.layers)
    assert info["fast_layers"] == f"{n - 1} of {n} layers fast; portable (no fast kernel): avgpool"
    assert line == f"device: kernels fast: {info['fast_layers']}"


@pytest.mark.slow
def test_fast_scratch_over_the_ram_budget_falls_back_to_portable_instead_of_refusing(tmp_path):
    """9,000 B: the all-fast build needs about 10 KB (its arena 5,856 B, of which 1,944 B is layer 2's GEMM scratch at
    the peak); with layer 2 portable it needs about 8.7 KB. Portable throughout fits too, so refusing would be wrong."""
    _, model, eval_data = _model(tmp_path)
    manifest, line = _compile_and_bench(tmp_path, model, eval_data, "m4-tight", target_dirs=(_board(tmp_path, 9000),))
    fallbacks = manifest["memory_plan"]["scratch_fallbacks"]
    assert list(fallbacks) == ["2"] and fallbacks["2"].startswith("RAM budget: the fast kernel's 1,944 B scratch")
    row = manifest["backend_info"]["kernel_choices"][2]
    assert (row["kernel"], row["scratch_bytes"], row["fallback"], row["reason"]) == ("ep_conv", 0, True, fallbacks["2"])
    assert manifest["footprint"]["ram_bytes"] <= 9000
    assert f"fallback to portable: {row['name']} (RAM budget)" in line and "6 of 8 layers fast" in line
    assert "ep_conv(&edgepack_l2, " in (tmp_path / "m4-tight" / "c" / "model.c").read_text()


@pytest.mark.slow
def test_a_budget_even_the_portable_kernels_exceed_is_still_refused(tmp_path):
    _, model, eval_data = _model(tmp_path)
    with pytest.raises(BudgetError, match=r"does not fit target m4-tight: RAM [\d,]+ bytes > ram_bytes 4,000"):
        edgepack.compile(str(model), "m4-tight", eval_data=str(eval_data), output=str(tmp_path / "no"),
                         target_dirs=(_board(tmp_path, 4000),))
    assert not (tmp_path / "no").exists()
