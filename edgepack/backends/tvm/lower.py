"""Lower an edgepack build to a TVM shared library (model.so) for the target's CPU."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgepack.backends.lowered import Lowered
from edgepack.backends.tvm import scheduled
from edgepack.backends.tvm.runner import run_on_qemu
from edgepack.backends.tvm.relax_int8 import plan_to_relax
from edgepack.backends.tvm.spec import TvmSpec
from edgepack.backends.tvm.toolchain import CACHE, require
from edgepack.errors import TargetError, ToolchainError, VerificationError
from edgepack.targets import Target

LIBRARY = "model.so"


def tvm_target(target: Target):
    import tvm
    from tvm.target import codegen

    spec = TvmSpec.from_target(target).tvm_target
    if isinstance(spec, str):
        return tvm.target.Target(spec)
    if not isinstance(spec, dict):
        raise ToolchainError(f"target {target.name}: [compiler] tvm_target must be a TVM tag or a table")
    spec = dict(spec)
    if spec.get("mcpu") == "host":
        spec["mcpu"] = codegen.llvm_get_system_cpu()
    return tvm.target.Target(spec)


def database_dir(target: Target) -> Path:
    """Where a target's MetaSchedule records live: <cache>/tuning/<target>/, outside the installed package
    (EDGEPACK_TUNING_DIR overrides the root, e.g. a folder your CI keeps)."""
    return Path(os.environ.get("EDGEPACK_TUNING_DIR", CACHE / "tuning")) / target.name


def tuning_database(target: Target) -> Path | None:
    """The records a compile picks up, if the target has been tuned."""
    path = database_dir(target)
    return path if (path / "database_tuning_record.json").exists() else None


def relax_module(build):
    """int8: the plan as integer Relax; fp32 (--quant none): torch.export -> from_exported_program."""
    from tvm import relax

    if build.plan is not None:
        return plan_to_relax(build.plan), "int8 plan -> Relax: conv2d(int8, int8) with int32 accumulation, integer requantization"
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    example = torch.zeros((1,) + tuple(build.config.input_shape))
    ep = torch.export.export(build.folded.eval(), (example,))
    mod = from_exported_program(ep, keep_params_as_input=False, unwrap_unit_return_tuple=True)
    mod = relax.transform.FoldBatchnormToConv2D()(mod)
    return relax.transform.FoldConstant()(mod), "fp32 folded model -> Relax via from_exported_program"


def build_library(mod, target: Target, tvm_tgt):
    import tvm
    from tvm import relax

    db_path = tuning_database(target)
    if db_path is None:
        return tvm.compile(mod, target=tvm_tgt, relax_pipeline=relax.get_default_pipeline(tvm_tgt)), "default Relax pipeline (untuned)"
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.JSONDatabase(work_dir=str(db_path))
    ex = ms.relax_integration.compile_relax(db, mod, tvm_tgt, params=None)
    return ex, f"MetaSchedule records for {db_path.name} ({len(db)} records)"


# hand-scheduled int8 kernel sets, tried in order by "auto": name -> module (supported(), build(), SCHEDULES)
KERNEL_SETS = {"vnni": "x86_vnni", "neon": "aarch64_neon"}


def int8_kernels(target: Target, plan, tvm_tgt) -> str:
    """The int8 kernels of a compile: "vnni" (x86 AVX512-VNNI) or "neon" (AArch64) where the CPU and the
    plan allow them, else "generic" (the Relax route that MetaSchedule records speed up).

    A target file can pin it: [compiler] int8_kernels = "auto" (default) | "generic" | "vnni" | "neon";
    the environment variable EDGEPACK_TVM_INT8_KERNELS overrides it (benchmarks compare them).
    """
    import importlib

    choice = os.environ.get("EDGEPACK_TVM_INT8_KERNELS") or TvmSpec.from_target(target).int8_kernels
    if choice not in ("auto", "generic", *KERNEL_SETS):
        raise ToolchainError(f"target {target.name}: int8_kernels must be auto, generic, {' or '.join(KERNEL_SETS)}, "
                             f"not {choice!r} (check [compiler] int8_kernels and EDGEPACK_TVM_INT8_KERNELS)")
    if plan is None or choice == "generic":
        return "generic"
    for name, module in KERNEL_SETS.items():
        if choice in ("auto", name) and importlib.import_module(f"edgepack.backends.tvm.{module}").supported(plan, tvm_tgt):
            return name
    if choice != "auto":
        raise ToolchainError(f"target {target.name} asks for {choice} int8 kernels but {tvm_tgt} lacks the CPU features "
                             "(or the plan has no conv, pointwise or depthwise layer they take): set int8_kernels = \"auto\"")
    return "generic"


CPU_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512vnni", "avxvnni", "neon", "dotprod", "i8mm")


def cpu_features(tvm_tgt) -> list[str]:
    """The SIMD features the library was compiled for (those that decide int8 speed): bench baselines record them."""
    from tvm.target import codegen

    if tvm_tgt.kind.name != "llvm":
        return []
    return [f for f in CPU_FEATURES if codegen.target_has_features(f, tvm_tgt)]


def lower(build, folder: Path) -> Lowered:
    """The plan (or the fp32 model) -> model.so for the target's CPU, run on the golden images before it ships."""
    import tvm
    import tvm_ffi

    target = build.target
    spec = TvmSpec.from_target(target)
    arch = spec.arch
    tvm_tgt = tvm_target(target)
    kernels = int8_kernels(target, build.plan, tvm_tgt)
    if kernels in KERNEL_SETS:
        import importlib

        kernel_set = importlib.import_module(f"edgepack.backends.tvm.{KERNEL_SETS[kernels]}")
        lowering = ("int8 plan -> hand-scheduled TIR: NHWC activations, conv as an int8 GEMM with int32 accumulation, "
                    "integer requantization; layers the kernels do not take: their generic Relax lowering, same module")
        ex, schedules = kernel_set.build(build.plan, tvm_tgt), kernel_set.SCHEDULES
    else:
        mod, lowering = relax_module(build)
        ex, schedules = build_library(mod, target, tvm_tgt)
    cross = spec.cross_compiler
    if spec.cross:
        if not cross:
            raise ToolchainError(f"target {target.name} builds for {arch} but names no [compiler] cross_compiler")
        from tvm.support.cc import cross_compiler

        require(cross, f"g++-{arch}-linux-gnu".replace("_", "-"))
        ex.export_library(str(folder / LIBRARY), fcompile=cross_compiler(cross))
        _verify_under_qemu(build, folder, spec)
    else:
        ex.export_library(str(folder / LIBRARY))
        _verify_on_host(build, folder)
    return Lowered({
        "runtime": "tvm", "tvm_version": tvm.__version__, "tvm_ffi_version": tvm_ffi.__version__,
        "tvm_target": str(tvm_tgt), "arch": arch, "library": LIBRARY, "cross_compiler": cross,
        "lowering": lowering, "schedules": schedules, "dtype": "int8" if build.plan is not None else "float32",
        "kernels": kernels, "cpu_features": cpu_features(tvm_tgt), **layer_routes(build.plan, kernels),
        "input_shape": [1, *(build.plan.input_shape if build.plan is not None else build.config.input_shape)],
    }, files=(LIBRARY,))


def layer_routes(plan, kernels: str) -> dict:
    """Which route ran each plan layer ({layer name: "scheduled" | "generic"}) and the bench line
    "N of M layers hand-scheduled"; nothing for fp32 builds."""
    if plan is None:
        return {}
    routes = scheduled.layer_routes(plan) if kernels in KERNEL_SETS else [scheduled.GENERIC] * len(plan.layers)
    return {"layer_routes": [{"layer": layer.name, "kind": layer.kind, "route": route}
                             for layer, route in zip(plan.layers, routes)],
            "hand_scheduled": scheduled.routes_summary(routes)}


def _verify_on_host(build, folder: Path) -> None:
    """A host-arch library is run right away on the golden input: int8 must equal the reference."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(folder / LIBRARY)), tvm.cpu())
    outs = np.concatenate([vm["main"](tvm.runtime.tensor(x[None])).numpy() for x in build.golden_input])
    if build.plan is not None and not np.array_equal(outs, build.golden_output):
        raise VerificationError(f"TVM int8 output differs from the reference on {int(np.sum(outs != build.golden_output))} values: "
                                "report this as an edgepack bug")
    if build.plan is None and np.abs(outs - build.golden_output).max() > 1e-4:
        raise VerificationError("TVM fp32 output differs from torch by more than 1e-4: report this as an edgepack bug")


VERIFY_THREADS = (1, 4)  # TVM_NUM_THREADS of the compile's qemu runs: single- and multi-threaded code alike


def _verify_under_qemu(build, folder: Path, spec: TvmSpec) -> None:
    """A cross-compiled library runs the golden images under qemu-user with the board's exact CPU (the
    runner bench uses), once per thread count; int8 must equal the reference bit for bit. An
    instruction the CPU lacks stops the compile (DeviceError) instead of passing under `-cpu max`."""
    cpu, arch = spec.qemu_cpu, spec.arch
    if cpu is None:
        raise TargetError(f"target {spec.name} builds for {arch} but names no [run] qemu_cpu (the board's exact CPU): "
                          f"add e.g. qemu_cpu = \"cortex-a72\" to {spec.path}")
    golden = np.ascontiguousarray(build.golden_input, np.int8 if build.plan is not None else np.float32)
    for threads in VERIFY_THREADS:
        outs, _ = run_on_qemu(folder / LIBRARY, arch, cpu, golden, build.golden_output.shape[-1], threads=threads,
                              timeout=120 + 10 * len(golden))
        where = f"under qemu-{arch} -cpu {cpu} with {threads} thread{'s' if threads > 1 else ''}"
        if build.plan is not None and not np.array_equal(outs, build.golden_output):
            raise VerificationError(f"TVM int8 output {where} differs from the reference on "
                                    f"{int(np.sum(outs != build.golden_output))} values: report this as an edgepack bug")
        if build.plan is None and np.abs(outs - build.golden_output).max() > 1e-4:
            raise VerificationError(f"TVM fp32 output {where} differs from torch by more than 1e-4: report this as an edgepack bug")
