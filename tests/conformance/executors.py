"""Each executor as one function: (plan, int8 inputs (N, C, H, W)) -> its int8 outputs (N, classes), and the
check each runs before any work (it must refuse an op kind it lacks by name).

The C executor is built here with the host gcc into a shared library called through ctypes: the generated
model.c and the shipped runtime (kernels.c, and kernels_fast.c for the fast set, which on a host compiles
its C emulations of the DSP intrinsics) with the c-host target's warnings-as-errors flags. That keeps this
tier to one gcc run per plan and kernel set, with no firmware, no runner process and no emulator.
"""
from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np

from edgepack.backends.c import codegen
from edgepack.backends.c.memplan import plan_memory
from edgepack.plan.plan import Plan

RUNTIME = Path(codegen.__file__).parent / "runtime"
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wpedantic")  # the c-host target's (targets/c-host.toml)


def check_c(plan: Plan) -> None:
    codegen.check_supported(plan)


def run_c(plan: Plan, x: np.ndarray, kernels: str, work: Path) -> np.ndarray:
    """The generated C with the ``kernels`` set ("portable" or "fast"), one image per edgepack_invoke call."""
    work.mkdir(parents=True, exist_ok=True)
    for name, text in codegen.generate(plan, kernels, plan_memory(plan, kernels)).items():
        (work / name).write_text(text)
    sources = [str(work / "model.c"), str(RUNTIME / "kernels.c")] + ([str(RUNTIME / "kernels_fast.c")] if kernels == "fast" else [])
    lib = work / "libmodel.so"
    subprocess.run(["gcc", *CFLAGS, "-fPIC", "-shared", f"-I{RUNTIME}", f"-I{work}", *sources, "-o", str(lib)],
                   check=True, capture_output=True, text=True)
    model = ctypes.CDLL(str(lib))
    out = np.zeros((len(x), codegen.numel(plan.output_row_shape)), np.int8)
    for image, row in zip(np.ascontiguousarray(x), out):
        assert model.edgepack_invoke(image.ctypes.data_as(ctypes.c_void_p), row.ctypes.data_as(ctypes.c_void_p)) == 0
    return out


def _host_tvm_target():
    from edgepack.backends.tvm.lower import tvm_target
    from edgepack.targets import get_target

    return tvm_target(get_target("x86-tvm"))


def _run_vm(executable, x: np.ndarray) -> np.ndarray:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    return np.concatenate([vm["main"](tvm.runtime.tensor(image[None])).numpy() for image in x])


def check_tvm_generic(plan: Plan) -> None:
    from edgepack.backends.tvm.relax_int8 import plan_to_relax

    plan_to_relax(plan)


def run_tvm_generic(plan: Plan, x: np.ndarray) -> np.ndarray:
    """The generic Relax lowering (relax_int8) built with TVM's default pipeline for this x86 host."""
    import tvm
    from tvm import relax

    from edgepack.backends.tvm.relax_int8 import plan_to_relax

    tgt = _host_tvm_target()
    return _run_vm(tvm.compile(plan_to_relax(plan), target=tgt, relax_pipeline=relax.get_default_pipeline(tgt)), x)


def host_has_vnni() -> bool:
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    return "avx512_vnni" in flags.split()


def check_vnni(plan: Plan) -> None:
    """The hand-scheduled sets run a layer of a kind they lack through its generic lowering, in the same
    module; a kind neither lowers is refused by name (building the module is the check: no compile)."""
    from edgepack.backends.tvm import x86_vnni

    x86_vnni.plan_to_relax_vnni(plan)


def run_vnni(plan: Plan, x: np.ndarray) -> np.ndarray:
    from edgepack.backends.tvm import x86_vnni

    tgt = _host_tvm_target()
    assert x86_vnni.supported(plan, tgt), "the conformance plans are conv ... pool ... fc shaped"
    return _run_vm(x86_vnni.build(plan, tgt), x)


def run_neon(plan: Plan, x: np.ndarray, work: Path, cpu: str = "cortex-a72") -> np.ndarray:
    """The AArch64 NEON set (rpi4's Cortex-A72) cross-compiled with the rpi4 target's g++ and run under
    qemu-aarch64 with that CPU, one thread; the layers it lacks run their generic lowering in its module."""
    import tvm
    from tvm.support.cc import cross_compiler

    from edgepack.backends.tvm import aarch64_neon
    from edgepack.backends.tvm.runner import run_on_qemu

    tgt = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": cpu, "mattr": ["+neon"], "num-cores": 4})
    assert aarch64_neon.supported(plan, tgt), "the plan has no conv, pointwise or depthwise layer the NEON set takes"
    work.mkdir(parents=True, exist_ok=True)
    lib = work / "model-neon.so"
    aarch64_neon.build(plan, tgt).export_library(str(lib), fcompile=cross_compiler("aarch64-linux-gnu-g++"))
    out, _ = run_on_qemu(lib, "aarch64", cpu, x, codegen.numel(plan.output_row_shape), threads=1)
    return np.asarray(out)


def check_tflite(plan: Plan) -> None:
    from edgepack.interop.tflite_export import plan_to_tflite

    plan_to_tflite(plan)


def run_tflite(plan: Plan, x: np.ndarray) -> np.ndarray:
    """The .tflite export under LiteRT's reference kernels (BUILTIN_REF), one NHWC image at a time; several
    outputs are flattened (a map as the plan's C, H, W) and concatenated in the file's output order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgepack.interop.tflite_export import plan_to_tflite

    it = Interpreter(model_content=plan_to_tflite(plan), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     num_threads=1)
    it.allocate_tensors()
    inp, outs = it.get_input_details()[0], it.get_output_details()
    logits = []
    for image in x:
        it.set_tensor(inp["index"], np.ascontiguousarray(image.transpose(1, 2, 0)[None]))
        it.invoke()
        got = [it.get_tensor(out["index"])[0].copy() for out in outs]
        if len(got) == 1:
            logits.append(got[0])
        else:
            logits.append(np.concatenate([(g.transpose(2, 0, 1) if g.ndim == 3 else g).reshape(-1) for g in got]))
    return np.array(logits)


def assert_bit_exact(run, plan: Plan, x: np.ndarray, work: Path) -> np.ndarray:
    """``run(plan, x, work)`` (one of the executors above) equals the numpy reference in every output;
    returns the reference's outputs for a test's further checks."""
    from edgepack.plan import reference

    want = reference.run(plan, x)
    got = np.asarray(run(plan, x, work)).reshape(want.shape)
    assert int((got != want).sum()) == 0, f"{int((got != want).sum())} of {want.size} outputs differ"
    return want
