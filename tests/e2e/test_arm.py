"""ARM Cortex-A under qemu-user: the exact CPU of each target, edgepack's instruction-count plugin,
compile-time verification of cross-compiled libraries and bench's cost figure (issue 11, items 3-5)."""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import edgepack
from edgepack.backends.tvm import runner as tvm_runner
from edgepack.backends.tvm.runner import Runner
from edgepack.benchmark.run import cost_label
from edgepack.devices import qemu, tools
from edgepack.errors import ArtifactError, DeviceError, ToolchainError
from edgepack.targets import get_target, load_targets
from tests.conftest import run_cli

RPI4_SMALL = dict(alpha=0.25, resolution=32, eval_size=8, calib_size=32)
INSTR = "instructions_per_inference"


# -- the plugin ------------------------------------------------------------------------------

LOOP_C = r"""
#include <stdlib.h>
static char buf[64] __attribute__((aligned(16)));
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    /* 7 instructions per iteration, 3 of them SIMD&FP: fadd (data processing, op0 x111), ldr q and
       ld1 (loads with V = 1); ldr x (V = 0), add, subs and b.ne are not */
    __asm__ volatile("1:\n\tfadd v0.4s, v0.4s, v0.4s\n\tldr q1, [%1]\n\tld1 {v2.16b}, [%1]\n\tldr x11, [%1]\n\t"
                     "add x9, x9, #1\n\tsubs %0, %0, #1\n\tb.ne 1b"
                     : "+r"(n) : "r"(buf) : "x9", "x11", "v0", "v1", "v2", "cc", "memory");
    return 0;
}
"""


@pytest.fixture(scope="module")
def loop_program(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loop")
    (folder / "loop.c").write_text(LOOP_C)
    subprocess.run(["aarch64-linux-gnu-gcc", "-O1", "-o", str(folder / "loop"), str(folder / "loop.c")], check=True)
    return folder / "loop"


@pytest.mark.slow
def test_plugin_counts_every_instruction_and_the_simd_fp_ones(loop_program):
    """2000 more loop iterations = exactly 14000 more instructions, 6000 of them vector; and the same
    run counts the same twice."""
    short, long_ = (qemu.run_user([loop_program, n], cpu="cortex-a72", count=True) for n in ("1000", "3000"))
    assert short.returncode == 0 and long_.returncode == 0, short.stderr
    assert long_.instructions - short.instructions == 7 * 2000
    assert long_.vector_instructions - short.vector_instructions == 3 * 2000
    again = qemu.run_user([loop_program, "1000"], cpu="cortex-a72", count=True)
    assert (again.instructions, again.vector_instructions) == (short.instructions, short.vector_instructions)
    assert qemu.run_user([loop_program, "1000"], cpu="cortex-a72").instructions is None  # count=False: no plugin


def test_plugin_is_built_once_and_rebuilt_when_its_source_changes(tmp_path, monkeypatch):
    source = tmp_path / "insn_count.c"
    source.write_text(qemu.PLUGIN_SOURCE.read_text())
    monkeypatch.setattr(qemu, "PLUGIN_SOURCE", source)
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path / "cache"))
    built = qemu.plugin()
    assert built == tmp_path / "cache" / "qemu-plugins" / qemu.PLUGIN_NAME and built.stat().st_size > 0
    first = built.stat().st_mtime_ns
    assert qemu.plugin().stat().st_mtime_ns == first  # up to date: not rebuilt
    later = time.time() + 5
    os.utime(source, (later, later))
    assert qemu.plugin().stat().st_mtime_ns != first
    assert [p.name for p in built.parent.iterdir()] == [qemu.PLUGIN_NAME]  # no temporary file left behind


@pytest.mark.parametrize("tool, package", [("gcc", "gcc"), ("qemu-aarch64", "qemu-user")])
def test_missing_tool_names_its_debian_package(tmp_path, monkeypatch, tool, package):
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path))  # no plugin built yet: gcc is needed
    real_which = tools.shutil.which
    monkeypatch.setattr(tools.shutil, "which", lambda name: None if name == tool else real_which(name))
    with pytest.raises(ToolchainError, match=f"apt-get install -y {package}") as e:
        qemu.run_user(["/bin/true"], cpu="cortex-a72", count=True)
    assert len(str(e.value).splitlines()) == 1


# -- the exact CPU ---------------------------------------------------------------------------

def test_every_aarch64_target_names_its_exact_qemu_cpu():
    """The CPU qemu emulates is the one the library is compiled for (the tvm_target's mcpu)."""
    from edgepack.backends.tvm.lower import tvm_target

    arm = {name: t for name, t in load_targets().items() if t.compiler.arch == "aarch64" and t.backend == "tvm"}
    assert {"rpi4", "rpi5", "arm64-a53"} <= set(arm)
    expected = {"rpi4": "cortex-a72", "rpi5": "cortex-a76", "arm64-a53": "cortex-a53"}
    for name, target in arm.items():
        assert tvm_runner.qemu_cpu(target.to_json()) == tvm_target(target).attrs["mcpu"]
        if name in expected:
            assert tvm_runner.qemu_cpu(target.to_json()) == expected[name]
    rpi5 = tvm_target(get_target("rpi5"))
    assert rpi5.attrs["feature.has_dotprod"] and get_target("rpi5").rpc.key == "rpi5"
    assert not tvm_target(get_target("rpi4")).attrs["feature.has_dotprod"]


def _sdot_library(folder, resolution: int, classes: int, mcpu: str = "cortex-a72"):
    """A tiny Relax library with the runner's signature (int8 (1,3,R,R) -> int8 (1,classes)) whose one
    kernel is SDOT (llvm.aarch64.neon.sdot), compiled for ``mcpu`` + dotprod: what an rpi4 target with
    "+dotprod" in its tvm_target produces. The generic route would not emit SDOT by itself."""
    import tvm
    from tvm.support.cc import cross_compiler

    script = textwrap.dedent(f"""
        from tvm.script import ir as I, relax as R, tirx as T

        @I.ir_module
        class Module:
            @T.prim_func
            def sdot(x: T.Buffer((1, 3, {resolution}, {resolution}), "int8"), y: T.Buffer((1, {classes}), "int8")):
                T.func_attr({{"global_symbol": "sdot", "tirx.noalias": True}})
                flat = T.decl_buffer(({3 * resolution * resolution},), "int8", data=x.data)
                acc = T.alloc_buffer((4,), "int32")
                v = flat.vload([0], "int8x16")
                acc[T.ramp(0, 1, 4)] = T.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.sdot.v4i32.v16i8",
                                                               T.broadcast(T.int32(0), 4), v, v)
                for i in range({classes}):
                    y[0, i] = T.Cast("int8", acc[i % 4])

            @R.function
            def main(x: R.Tensor((1, 3, {resolution}, {resolution}), "int8")) -> R.Tensor((1, {classes}), "int8"):
                cls = Module
                with R.dataflow():
                    y = R.call_tir(cls.sdot, (x,), R.Tensor((1, {classes}), "int8"))
                    R.output(y)
                return y
        """)
    path = folder / f"sdot_module_{resolution}_{classes}.py"  # TVMScript parses from a source file
    path.write_text(script)
    namespace = {"__file__": str(path)}
    exec(compile(script, str(path), "exec"), namespace)
    tgt = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": mcpu, "mattr": ["+neon", "+dotprod"]})
    ex = tvm.compile(namespace["Module"], target=tgt)
    ex.export_library(str(folder / "model.so"), fcompile=cross_compiler("aarch64-linux-gnu-g++"))
    return ex


def _sdot_expected(x: np.ndarray, classes: int) -> np.ndarray:
    v = x.reshape(len(x), -1)[:, :16].astype(np.int32)
    acc = (v * v).reshape(len(x), 4, 4).sum(axis=2)
    return acc[:, np.arange(classes) % 4].astype(np.int8)


@pytest.mark.slow
def test_dotprod_library_is_refused_on_a_cortex_a72(tmp_path, monkeypatch):
    """Bench's runner on an rpi4 ('cortex-a72') artifact whose library uses SDOT: SIGILL, one-line
    DeviceError naming the CPU. Under qemu's default `-cpu max` SDOT would run, so this fails unless the
    exact CPU is passed. The same library runs on a cortex-a76 (rpi5) with the right result."""
    _sdot_library(tmp_path, 8, 4)
    x = np.arange(-96, 96, dtype=np.int8).reshape(1, 3, 8, 8)
    manifest = {"backend_info": {"library": "model.so", "arch": "aarch64"}, "plan": {}, "model": {"classes": 4},
                "target": {"name": "rpi4", "run": {"qemu_cpu": "cortex-a72"}}}
    with pytest.raises(DeviceError) as e:
        Runner(tmp_path, manifest).run_int8(x)
    message = str(e.value)
    assert "SIGILL" in message and "-cpu cortex-a72" in message and "+dotprod" in message
    assert len(message.splitlines()) == 1
    rpi5 = {**manifest, "target": {"name": "rpi5", "run": {"qemu_cpu": "cortex-a76"}}}
    assert np.array_equal(Runner(tmp_path, rpi5).run_int8(x), _sdot_expected(x, 4))


def test_artifact_without_a_qemu_cpu_is_refused(tmp_path):
    manifest = {"backend_info": {"library": "model.so", "arch": "aarch64"}, "plan": {}, "model": {"classes": 4},
                "target": {"name": "old-board", "run": {"emulator": "qemu-aarch64"}}}
    with pytest.raises(ArtifactError, match="records no qemu CPU.*recompile"):
        Runner(tmp_path, manifest)


@pytest.mark.slow
def test_rpi4_compile_refuses_a_dotprod_library(tmp_path, monkeypatch, capsys):
    """An rpi4 target whose tvm_target adds +dotprod, and whose library uses SDOT: the compile runs the
    golden images under qemu-aarch64 -cpu cortex-a72, which has no SDOT: exit 2, one line naming the CPU,
    and no artifact."""
    import dataclasses

    import importlib

    from edgepack import compiler

    lower = importlib.import_module("edgepack.backends.tvm.lower")  # the module (the package re-exports its function)
    rpi4 = get_target("rpi4")
    spec = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon", "+dotprod"], "num-cores": 4}
    dotprod = dataclasses.replace(rpi4, compiler=dataclasses.replace(rpi4.compiler, tvm_target=spec))
    monkeypatch.setattr(compiler, "get_target", lambda name, target_dirs=(): dotprod)
    monkeypatch.setenv("EDGEPACK_TVM_INT8_KERNELS", "generic")
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    monkeypatch.setattr(lower, "build_library", lambda mod, target, tgt: (_sdot_library(lib_dir, 32, 10), "SDOT test module"))
    out = tmp_path / "rpi4-dotprod"
    code, _, err = run_cli(capsys, "compile", "--target", "rpi4", "--alpha", "0.25", "--resolution", "32",
                           "--eval-size", "8", "--calib-size", "32", "-o", str(out))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "SIGILL" in err and "cortex-a72" in err
    assert not out.exists()


# -- compile-time verification and bench's cost figure on an rpi4 artifact -------------------

@pytest.fixture(scope="module")
def rpi4_artifact(tmp_path_factory):
    return edgepack.compile(target="rpi4", output=str(tmp_path_factory.mktemp("arm") / "rpi4"), **RPI4_SMALL)


@pytest.mark.slow
def test_compile_verifies_the_cross_compiled_library_under_qemu(tmp_path, monkeypatch):
    """The golden images run under qemu-aarch64 -cpu cortex-a72 with 1 and 4 TVM threads; a reference
    output that the library does not reproduce stops the compile (VerificationError, exit 1)."""
    from edgepack.errors import VerificationError
    from edgepack.plan import reference

    calls = []
    real = tvm_runner.run_on_qemu

    def spy(library, arch, cpu, batch, classes, **kw):
        calls.append((cpu, kw.get("threads"), len(batch)))
        return real(library, arch, cpu, batch, classes, **kw)

    # the name lower's verification calls (the package's `lower` attribute is the function, hence sys.modules)
    monkeypatch.setattr(sys.modules["edgepack.backends.tvm.lower"], "run_on_qemu", spy)
    edgepack.compile(target="rpi4", output=str(tmp_path / "ok"), **RPI4_SMALL)
    assert calls == [("cortex-a72", 1, 8), ("cortex-a72", 4, 8)]

    real_run = reference.run

    def off_by_one(plan, x):  # the recorded golden output no longer matches what the library computes
        y = real_run(plan, x).copy()
        y[0, 0] = y[0, 0] + 1 if y[0, 0] < 127 else y[0, 0] - 1
        return y

    monkeypatch.setattr(reference, "run", off_by_one)
    from edgepack.interop import litert  # model.tflite is checked against the same reference first; this test is about
    monkeypatch.setattr(litert, "verify", lambda *args: {"images": 0, "values": 0, "values_differing": 0, "max_abs_diff": 0})  # qemu
    with pytest.raises(VerificationError, match="cortex-a72 with 1 thread differs from the reference on 1 values"):
        edgepack.compile(target="rpi4", output=str(tmp_path / "bad"), **RPI4_SMALL)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_rpi4_bench_reports_instructions_per_inference(rpi4_artifact, tmp_path, capsys):
    out_json, junit, baseline = tmp_path / "r.json", tmp_path / "r.xml", tmp_path / "base.json"
    code, out, err = run_cli(capsys, "bench", str(rpi4_artifact), "--json", str(out_json), "--junit", str(junit),
                             "--update-baseline", str(baseline))
    assert code == 0, out + err
    cost = json.loads(out_json.read_text())["cost"]
    assert isinstance(cost[INSTR], int) and cost[INSTR] > 100_000
    assert 0 < cost["vector_share"] < 1 and cost["qemu_cpu"] == "cortex-a72"
    assert cost["method"] == "qemu TCG plugin, (3 images - 1 image) / 2, 1 thread"
    assert f"cost: {cost_label(INSTR)} = {cost[INSTR]:,}\n" in out and "latency: not measured" in out
    assert f'<property name="cost.{INSTR}" value="{cost[INSTR]}"/>' in junit.read_text()
    assert json.loads(baseline.read_text())["cost"][INSTR] == cost[INSTR]

    # the count is reproducible: a second bench gives the same number and passes the baseline
    code, out, _ = run_cli(capsys, "bench", str(rpi4_artifact), "--baseline", str(baseline), "--json", str(out_json))
    assert code == 0 and "no regression" in out, out
    assert json.loads(out_json.read_text())["cost"][INSTR] == cost[INSTR]

    # a baseline 10% cheaper: this artifact now does 11% more work per inference -> exit 1 naming the cost check
    tighter = json.loads(baseline.read_text())
    tighter["cost"][INSTR] = int(cost[INSTR] * 0.9)
    baseline.write_text(json.dumps(tighter))
    code, out, _ = run_cli(capsys, "bench", str(rpi4_artifact), "--baseline", str(baseline), "--junit", str(junit))
    assert code == 1, out
    assert f"1 regression(s): cost {INSTR}" in out and "increase <= 0.5%" in out
    assert f'name="cost {INSTR}"><failure' in junit.read_text()


@pytest.mark.slow
def test_sweep_plots_instructions_when_there_is_no_latency(rpi4_artifact, tmp_path):
    from edgepack.benchmark import sweep

    row = sweep._bench({"alpha": 0.25, "resolution": 32, "count": 1}, str(rpi4_artifact))
    assert row["latency_median_ms"] is None and row["cost"] > 100_000
    cost = Runner(rpi4_artifact, json.loads((rpi4_artifact / "manifest.json").read_text())).cost()
    assert row["cost"] == cost[INSTR]
    paths = sweep.plot_sweep([row, {**row, "alpha": 0.5, "cost": row["cost"] * 3}], tmp_path, "rpi4")
    assert [p.name for p in paths] == ["accuracy_vs_macs.png", "accuracy_vs_latency.png"]


@pytest.mark.slow
def test_instruction_count_does_not_depend_on_the_artifact_path_or_the_environment(rpi4_artifact, tmp_path, monkeypatch):
    """The guest's initial stack holds argv and the environment; both used to shift the count by ~0.2%."""
    import shutil

    def cost(folder):
        return Runner(folder, json.loads((folder / "manifest.json").read_text())).cost()[INSTR]

    first = cost(rpi4_artifact)
    moved = shutil.copytree(rpi4_artifact, tmp_path / "a-much-longer-folder-name-than-before" / "x")
    monkeypatch.setenv("EDGEPACK_TEST_PADDING", "y" * 37)
    assert cost(moved) == first
