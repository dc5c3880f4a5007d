"""lower(): int8 plan -> generated C project, built binaries, checked on the golden input.

Inside the compiler's temporary artifact folder this writes
  c/model.c, c/model.h           generated from the plan (const weights, static arena, layer calls)
  c/kernels.[ch], c/kernels_fast.c, c/edgepack_main.c (test harness), c/startup_cortexm.c,
  c/cortexm.ld, c/Makefile       the runtime and the build, as files the user can take away
  bin/firmware.elf               cortex-m targets
  bin/edgepack_run, bin/libedgepack_model.so, bin/edgepack_run_aarch64   c-host
then runs the golden images on the device (QEMU for Cortex-M, natively and under qemu-aarch64
for c-host) and refuses to produce an artifact unless the outputs equal the numpy reference
bit for bit and the footprint fits the target's [budget]. Any exception leaves nothing behind
(the compiler's atomic folder is deleted).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgepack import devices
from edgepack.backends.c import build as c_build
from edgepack.backends.c import codegen, elf
from edgepack.backends.c.memplan import fit_arena, plan_memory
from edgepack.backends.c.runner import callgrind_instructions, run_images
from edgepack.backends.c.spec import FIRMWARE, HOST_EXE, BuildSpec
from edgepack.backends.lowered import Lowered
from edgepack.errors import BudgetError, BuildError, UnsupportedModelError, VerificationError
from edgepack.targets import BUILTIN_DIR
from edgepack.validate import budget_file_fix


def _verify(result, want: np.ndarray, device: str, what: str) -> None:
    if result.outputs.shape != want.shape or not np.array_equal(result.outputs, want):
        diff = int(np.count_nonzero(result.outputs != want)) if result.outputs.shape == want.shape else "all"
        raise VerificationError(f"{device}: {what} output differs from the numpy int8 reference in {diff} values, "
                                "artifact refused: please report this edgepack C backend bug with the model")


def check_budget(spec: BuildSpec, flash: int, ram: int, detail: str, target_file: Path) -> None:
    over = []
    flash_max, ram_max = spec.budget.flash_bytes, spec.budget.ram_bytes
    if flash_max is not None and flash > flash_max:
        over.append(f"flash {flash:,} bytes > flash_bytes {flash_max:,} (by {flash - flash_max:,})")
    if ram_max is not None and ram > ram_max:
        over.append(f"RAM {ram:,} bytes > ram_bytes {ram_max:,} (by {ram - ram_max:,})")
    if over:
        raise BudgetError(f"the model does not fit target {spec.target}: {' and '.join(over)} [{detail}]: "
                          f"use a smaller --alpha or --resolution, or "
                          f"{budget_file_fix(target_file, target_file.parent == BUILTIN_DIR)}")


# What one interrupt can add to the stack at any instant of edgepack_invoke (Armv7-M ARM, B1.5.7): the exception
# entry pushes 8 words (R0-R3, R12, LR, PC, xPSR), 26 when the FPU context is live (S0-S15, FPSCR and a reserved
# word, stacked lazily but reserved on entry), aligned to 8 bytes (up to one padding word), then the handler runs
# on the same (main) stack. Only SysTick is enabled and faults end the run, so interrupts never nest.
EXCEPTION_FRAME_BYTES = {False: 8 * 4, True: 26 * 4}
FRAME_ALIGNMENT_BYTES = 4


def stack_margin(spec: BuildSpec, work: Path) -> dict:
    """The worst a SysTick interrupt adds to the measured high-water mark, from this build: whether the FPU
    context can be live (the compiler defines __ARM_FP, and startup_cortexm.c then enables the FPU) and the
    SysTick handler's own frame (gcc -fstack-usage of startup_cortexm.c with the firmware's flags)."""
    probe = devices.run_tool([spec.cc, *spec.arch_flags, "-dM", "-E", "-x", "c", os.devnull])
    fpu = re.search(r"^#define __ARM_FP ", probe.stdout, re.M) is not None
    su_dir = work / "stack-usage"
    su_dir.mkdir(exist_ok=True)
    cmd = [spec.cc, *spec.arch_flags, *spec.cflags, *spec.defines, "-fstack-usage", "-c", str(work / "startup_cortexm.c"),
           "-o", str(su_dir / "startup_cortexm.o")]
    proc = devices.run_tool(cmd, cwd=su_dir)
    su = su_dir / "startup_cortexm.su"
    found = re.search(r":SysTick_Handler\t(\d+)\t(\S+)", su.read_text()) if proc.returncode == 0 and su.is_file() else None
    if found is None or found.group(2) != "static":
        raise BuildError(f"cannot bound the SysTick handler's stack with {spec.cc} -fstack-usage "
                         f"({(proc.stderr or 'no static figure').strip()[:200]}): please report this edgepack bug")
    frame, handler = EXCEPTION_FRAME_BYTES[fpu], int(found.group(1))
    return {"exception_frame_bytes": frame, "alignment_bytes": FRAME_ALIGNMENT_BYTES, "systick_handler_bytes": handler,
            "fpu_context": fpu, "total_bytes": frame + FRAME_ALIGNMENT_BYTES + handler}


def _cost_section(spec: BuildSpec, result, kernels: str) -> dict:
    ipt = spec.run.instructions_per_tick
    ticks = result.ticks
    return {"kernels": kernels, "ticks_per_inference": ticks[0], "ticks_min": min(ticks), "ticks_max": max(ticks),
            "instructions_per_inference": round(ticks[0] * ipt) if ipt else None, "images": len(ticks)}


def _stack_figures(run, margin: dict | None, images: int) -> dict:
    """stack_bytes: the measured high-water mark plus the interrupt margin, a bound (None off Cortex-M)."""
    if margin is None:
        return {"stack_bytes": run.stack_bytes}
    return {"stack_bytes": run.stack_bytes + margin["total_bytes"], "stack_measured_bytes": run.stack_bytes,
            "stack_margin": margin,
            "stack_method": f"painted high-water mark below main's stack pointer over {images} golden images under QEMU, "
                            "plus the most a SysTick interrupt adds at any instant: its exception frame "
                            f"({margin['exception_frame_bytes']} B{', FPU context' if margin['fpu_context'] else ''}), "
                            f"{margin['alignment_bytes']} B of 8-byte alignment and SysTick_Handler's own frame "
                            f"({margin['systick_handler_bytes']} B, gcc -fstack-usage)"}


def _model_ram(library_ram: int, arena: int, stack: int | None) -> dict:
    """The model's own RAM (what a user's firmware adds for it): the arena, the rest of the model library's
    data + bss (its state), and on Cortex-M the stack bound of edgepack_invoke."""
    state = library_ram - arena
    return {"model_ram_bytes": library_ram + (stack or 0),
            "model_ram": {"arena_bytes": arena, "state_bytes": state, "stack_bytes": stack}}


def lower(build, folder: Path) -> Lowered:
    """Generate, build, measure, run on every device, check: one pass, in that order (a second one when the fast
    kernels' scratch is all that puts RAM over budget: those layers then run portable, see _fit_scratch)."""
    plan = build.plan
    if plan is None:
        raise UnsupportedModelError("the C backend runs the int8 plan: compile with --quant ptq or qat, not none")
    folder = Path(folder)
    spec = BuildSpec.from_target(build.target)
    cortex_m = spec.kind == "cortex-m"
    c_build.require_tools(spec)
    memory = plan_memory(plan, spec.kernels)
    golden_x, golden_y = build.golden_input, build.golden_output
    out_size = codegen.numel(plan.output_row_shape)
    with tempfile.TemporaryDirectory(prefix="edgepack-build-") as tmp:
        for attempt in range(2):
            step = _build_and_run(spec, build, folder, Path(tmp) / f"build{attempt}", memory)
            refit = None if attempt else _fit_scratch(spec, plan, memory, step)
            if refit is None:
                break
            memory = refit
        check_budget(spec, step["measured"]["flash"], step["ram"], step["detail"], build.target.path)
        sources, built, sizes, measured, main, margin, stack, ram = (
            step[k] for k in ("sources", "built", "sizes", "measured", "main", "margin", "stack", "ram"))
        cost = (_cortex_m_cost(spec, plan, main, Path(tmp), golden_x, golden_y, out_size) if cortex_m
                else _host_cost(spec, folder, golden_x))
    board = build.target.board
    if board.clock_mhz is not None and cost.get("instructions_per_inference"):  # the target file's [board]
        cost["estimate"] = board.estimate(cost["instructions_per_inference"])
    footprint = {
        "flash_bytes": measured["flash"], "ram_bytes": ram, **_stack_figures(main, margin, len(golden_x)),
        **_model_ram(sizes["model_library"]["ram"], memory.arena_bytes, stack if margin else None),
        **_footprint_notes(spec, plan, memory, sizes)}
    info = {**_backend_info(spec, plan, sources, built, out_size, len(golden_x)), **kernel_record(plan, spec.kernels, memory)}
    return Lowered(info, files=(*(f"c/{name}" for name in sources), *spec.binaries().values()),
                   sections={"memory_plan": memory.to_json(), "footprint": footprint, "cost": cost})


def kernel_record(plan, kernels: str, memory) -> dict:
    """backend_info's per-layer kernel choice (codegen.kernel_choices, with the RAM fallbacks of ``memory``) and
    its one-line summary, which bench prints on its device line."""
    rows = codegen.kernel_choices(plan, kernels, memory.portable_layers)
    return {"kernel_choices": rows, "fast_layers": codegen.kernel_summary(rows)}


def _fit_scratch(spec: BuildSpec, plan, memory, step: dict):
    """When a fast build is over the RAM budget (its flash within), the memory plan with the peak layers' scratch
    dropped (memplan.fit_arena) if that makes the arena smaller; None otherwise (the budget check then refuses)."""
    flash_max, ram_max, ram = spec.budget.flash_bytes, spec.budget.ram_bytes, step["ram"]
    if spec.kernels == "portable" or ram_max is None or ram <= ram_max or \
            (flash_max is not None and step["measured"]["flash"] > flash_max):
        return None
    fitted = fit_arena(plan, spec.kernels, memory.arena_bytes - (ram - ram_max))
    return fitted if fitted.arena_bytes < memory.arena_bytes else None


def _build_and_run(spec: BuildSpec, build, folder: Path, work: Path, memory) -> dict:
    """One build of ``memory``'s plan into ``folder``, its footprint, and (when its static RAM fits the budget) the
    golden runs and the stack bound; ``ram`` is what the budget check compares, ``detail`` how it was counted."""
    plan, cortex_m = build.plan, spec.kind == "cortex-m"
    for sub in ("c", "bin"):  # a second attempt replaces the first one's sources and binaries
        shutil.rmtree(folder / sub, ignore_errors=True)
    sources, built = c_build.make(spec, folder, work, spec.kernels, codegen.generate(plan, spec.kernels, memory))
    sizes = elf.footprint(spec.size, folder / FIRMWARE if cortex_m else None, built.objects)
    measured = sizes["firmware" if cortex_m else "model_library"]
    step = {"sources": sources, "built": built, "sizes": sizes, "measured": measured, "ram": measured["ram"],
            "detail": "before counting the stack"}
    flash_max, ram_max = spec.budget.flash_bytes, spec.budget.ram_bytes
    if (flash_max is not None and measured["flash"] > flash_max) or (ram_max is not None and measured["ram"] > ram_max):
        return step  # constants and static RAM alone are already over budget: nothing to run
    main = _golden_runs(spec, folder, build.golden_input, build.golden_output, codegen.numel(plan.output_row_shape))
    margin = stack_margin(spec, built.work) if cortex_m else None
    stack = (main.stack_bytes or 0) + (margin["total_bytes"] if margin else 0)
    return {**step, "main": main, "margin": margin, "stack": stack, "ram": measured["ram"] + stack,
            "detail": f"data + bss {measured['ram']:,} + stack {stack:,}"}


def _golden_runs(spec: BuildSpec, folder: Path, golden_x, golden_y, out_size: int):
    """The golden images through every device's program, each bit-exact or refused; the first device's run."""
    runs = {}
    for device, binary in spec.binaries().items():
        result = run_images(spec, folder / binary, golden_x, out_size, device)
        _verify(result, golden_y, device, f"golden ({len(golden_x)} images)")
        runs[device] = result
    return runs[spec.devices()[0]]


def _cortex_m_cost(spec: BuildSpec, plan, main, tmp: Path, golden_x, golden_y, out_size: int) -> dict:
    """SysTick ticks of the golden run; with compare_kernels, the other kernel set built and run beside it."""
    r = spec.run
    cost = {"metric": "systick_ticks",
            "source": f"{r.emulator} -M {r.machine} -icount shift=0: SysTick on "
                      f"the processor clock ({r.systick_hz:,} Hz) while 1 instruction = 1 ns, "
                      f"so 1 tick = {r.instructions_per_tick} instructions; deterministic",
            **_cost_section(spec, main, spec.kernels), "per_layer_ticks": main.layer_ticks}
    if not spec.compare_kernels:
        return cost
    other = "portable" if spec.kernels != "portable" else "fast"  # helium: compared with portable too
    other_mem = plan_memory(plan, other)
    odir = tmp / f"{other}-src"
    c_build.write_sources(odir, spec, other, codegen.generate(plan, other, other_mem))
    obuilt = c_build.build(spec, odir, tmp / other, other)
    device = spec.devices()[0]
    ores = run_images(spec, obuilt.files[FIRMWARE], golden_x[:1], out_size, device)
    _verify(ores, golden_y[:1], device, f"golden ({other} kernels)")
    osizes = elf.footprint(spec.size, obuilt.files[FIRMWARE], obuilt.objects)
    cost[other] = {**_cost_section(spec, ores, other), "per_layer_ticks": ores.layer_ticks,
                   "flash_bytes": osizes["firmware"]["flash"], "arena_bytes": other_mem.arena_bytes}
    fast_ticks = main.ticks[0] if spec.kernels != "portable" else ores.ticks[0]
    portable_ticks = ores.ticks[0] if spec.kernels != "portable" else main.ticks[0]
    cost["speedup_fast_vs_portable"] = round(portable_ticks / fast_ticks, 3)
    return cost


def _host_cost(spec: BuildSpec, folder: Path, golden_x) -> dict:
    instr = callgrind_instructions(folder / HOST_EXE, golden_x)
    return {"metric": "callgrind_instructions" if instr is not None else None,
            "source": "valgrind --tool=callgrind --toggle-collect=edgepack_invoke (native build)"
                      if instr is not None else "valgrind not installed: no deterministic cost figure",
            "kernels": spec.kernels, "instructions_per_inference": instr}


def _footprint_notes(spec: BuildSpec, plan, memory, sizes: dict) -> dict:
    """The rest of the footprint: the memory plan's figures, constants, what was measured and how RAM counts."""
    per_layer = codegen.weight_bytes(plan)
    cortex_m = spec.kind == "cortex-m"
    return {
        "arena_bytes": memory.arena_bytes, "naive_arena_bytes": memory.naive_bytes,
        "constants_bytes": sum(r["total_bytes"] for r in per_layer),
        "measured_on": "firmware ELF (model + test harness + newlib)" if cortex_m else "model library objects",
        "ram_counts": "harness total: firmware data + bss (the arena, the harness's image buffers, newlib's state) + "
                      "stack_bytes; model_ram_bytes is the model's own share" if cortex_m
                      else "data + bss of the model library objects",
        "budget": spec.budget.to_json(), **sizes, "per_layer": per_layer,
    }


def _backend_info(spec: BuildSpec, plan, sources: list[str], built, out_size: int, images: int) -> dict:
    names = spec.devices()
    return {
        "runtime": "edgepack generated C (int8, static arena)",
        "kernels": spec.kernels,
        "toolchain_kind": spec.kind,
        "compiler": c_build.tool_version(spec.cc),
        "cflags": list(spec.cflags + spec.defines), "arch_flags": list(spec.arch_flags), "ldflags": list(spec.ldflags),
        "sources": [f"c/{name}" for name in sources],
        "binaries": spec.binaries(),
        "devices": names,
        "build_commands": built.commands,
        "input_shape": [int(d) for d in plan.input_shape],
        "output_size": out_size,
        "golden_check": {d: f"bit-exact on {images} golden images" for d in names},
    }
