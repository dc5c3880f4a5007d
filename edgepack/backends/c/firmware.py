"""Build and run the generated C: toolchain lookup, compile + link, size reports, device runs.

Everything a target file says about the C backend is read here (``BuildSpec.from_target``):
  [compiler]  kernels = "fast" | "portable", compare_kernels, cflags
  [toolchain] kind = "cortex-m" | "host", cc, size, debian_packages, arch_flags, ldflags,
              flash_origin/flash_length/ram_origin/ram_length (cortex-m linker script),
              cross_cc, cross_size, cross_debian_packages, cross_arch_flags, cross_ldflags (host: aarch64)
  [run]       device, emulator, machine, emulator_args, debian_package, instructions_per_tick,
              systick_hz, timeout_s, image_timeout_s, cross_emulator, cross_debian_package
  [budget]    flash_bytes, ram_bytes
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from edgepack import devices
from edgepack.devices import find_tool
from edgepack.errors import BuildError, DeviceError, TargetError, ToolchainError

KINDS = ("cortex-m", "host")
RUNTIME = ("kernels.h", "kernels.c", "kernels_fast.c", "edgepack_main.c", "startup_cortexm.c")
DEFAULT_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wpedantic",
                  "-ffunction-sections", "-fdata-sections")
FIRMWARE = "bin/firmware.elf"
HOST_EXE, HOST_LIB, CROSS_EXE = "bin/edgepack_run", "bin/libedgepack_model.so", "bin/edgepack_run_aarch64"


@dataclass(frozen=True)
class BuildSpec:
    target: str
    kind: str
    kernels: str
    compare_kernels: bool
    cc: str
    size: str
    packages: str
    cflags: tuple[str, ...]
    arch_flags: tuple[str, ...]
    ldflags: tuple[str, ...]
    memory: dict = field(default_factory=dict)
    cross: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)

    @classmethod
    def from_target(cls, t: dict) -> "BuildSpec":
        """``t`` is Target.to_json() (also what the manifest records)."""
        comp, tc, run = t.get("compiler", {}), t.get("toolchain", {}), t.get("run", {})
        name = t.get("name", "?")
        kind = tc.get("kind")
        if kind not in KINDS:
            raise TargetError(f"target {name}: [toolchain] kind must be one of {', '.join(KINDS)}, got {kind!r}")
        kernels = comp.get("kernels", "portable")
        if kernels not in ("portable", "fast"):
            raise TargetError(f"target {name}: [compiler] kernels must be 'portable' or 'fast', got {kernels!r}")
        if not isinstance(tc.get("cc"), str):
            raise TargetError(f"target {name}: [toolchain] needs cc = \"<C compiler>\"")
        for key in ("flash_bytes", "ram_bytes"):
            value = t.get("budget", {}).get(key)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise TargetError(f"target {name}: [budget] {key} must be a positive integer of bytes, got {value!r}")
        memory = {k: tc[k] for k in ("flash_origin", "flash_length", "ram_origin", "ram_length") if k in tc}
        if kind == "cortex-m" and len(memory) != 4:
            raise TargetError(f"target {name}: a cortex-m [toolchain] needs flash_origin, flash_length, ram_origin, ram_length")
        cross = {k[len("cross_"):]: v for k, v in tc.items() if k.startswith("cross_")}
        return cls(
            target=name, kind=kind, kernels=kernels, compare_kernels=bool(comp.get("compare_kernels", False)),
            cc=tc["cc"], size=tc.get("size", "size"), packages=tc.get("debian_packages", tc["cc"]),
            cflags=tuple(comp.get("cflags", DEFAULT_CFLAGS)), arch_flags=tuple(tc.get("arch_flags", ())),
            ldflags=tuple(tc.get("ldflags", ())), memory=memory, cross=cross, run=dict(run),
            budget=dict(t.get("budget", {})),
        )

    @property
    def defines(self) -> tuple[str, ...]:
        return ("-DEDGEPACK_PROFILE",) + (("-DEDGEPACK_CORTEX_M",) if self.kind == "cortex-m" else ())

    def sources(self, kernels: str) -> list[str]:
        srcs = ["model.c", "kernels.c"] + (["kernels_fast.c"] if kernels == "fast" else []) + ["edgepack_main.c"]
        return srcs + (["startup_cortexm.c"] if self.kind == "cortex-m" else [])

    def headers(self) -> list[str]:
        return ["model.h", "kernels.h"] + (["cortexm.ld"] if self.kind == "cortex-m" else [])

    def devices(self) -> list[str]:
        return [self.run.get("device", "native")] + (["qemu-aarch64"] if self.kind == "host" and self.cross else [])


# ---------------------------------------------------------------- tools

def require_tools(spec: BuildSpec, run: bool = True) -> None:
    """Fail before any work if a compiler, the C library or an emulator is missing."""
    find_tool(spec.cc, spec.packages)
    find_tool(spec.size, spec.packages)
    if spec.kind == "cortex-m":
        specs = subprocess.run([spec.cc, "-print-file-name=rdimon.specs"], capture_output=True, text=True).stdout.strip()
        if not Path(specs).is_file():
            raise ToolchainError(f"{spec.cc} has no newlib semihosting C library (rdimon.specs): on Debian/Ubuntu run "
                                 "`apt-get install libnewlib-arm-none-eabi`")
        if run:
            find_tool(spec.run.get("emulator", "qemu-system-arm"), spec.run.get("debian_package", "qemu-system-arm"))
    elif spec.cross:
        find_tool(spec.cross["cc"], spec.cross.get("debian_packages", spec.cross["cc"]))
        if run:
            find_tool(spec.run.get("cross_emulator", "qemu-aarch64"), spec.run.get("cross_debian_package", "qemu-user"))


def tool_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else tool


# ---------------------------------------------------------------- sources

def runtime_text(name: str) -> str:
    return resources.files("edgepack.backends.c").joinpath("runtime", name).read_text()


def linker_script(spec: BuildSpec) -> str:
    text = runtime_text("cortexm.ld.in")
    for key, value in spec.memory.items():
        text = text.replace(f"@{key.upper()}@", f"0x{int(value):08X}")
    return text


def write_sources(cdir: Path, spec: BuildSpec, kernels: str, generated: dict[str, str]) -> list[str]:
    """model.c/.h, the runtime files the build uses, the linker script and a Makefile; returns names."""
    cdir.mkdir(parents=True, exist_ok=True)
    files = dict(generated)
    for name in spec.sources(kernels) + spec.headers():
        if name in RUNTIME:
            files[name] = runtime_text(name)
    if spec.kind == "cortex-m":
        files["cortexm.ld"] = linker_script(spec)
    files["Makefile"] = makefile(spec, kernels)
    for name, text in sorted(files.items()):
        (cdir / name).write_text(text)
    return sorted(files)


def makefile(spec: BuildSpec, kernels: str) -> str:
    srcs = " ".join(spec.sources(kernels))
    cflags = " ".join(spec.cflags + spec.defines)
    lines = [
        f"# Generated by edgepack for target {spec.target}: the build `edgepack compile` ran (see manifest.json).",
        f"CC = {spec.cc}", f"ARCH = {' '.join(spec.arch_flags)}", f"CFLAGS = {cflags}",
        f"LDFLAGS = {' '.join(spec.ldflags + (('-T', 'cortexm.ld') if spec.kind == 'cortex-m' else ()))}",
        f"SRCS = {srcs}", "OBJS = $(SRCS:.c=.o)", "",
    ]
    if spec.kind == "cortex-m":
        r = spec.run
        lines += [
            "firmware.elf: $(OBJS) cortexm.ld", "\t$(CC) $(ARCH) $(OBJS) $(LDFLAGS) -o $@", "",
            "%.o: %.c model.h kernels.h", "\t$(CC) $(ARCH) $(CFLAGS) -c $< -o $@", "",
            "# reads input.bin (N int8 images) and writes output.bin in the current folder",
            "run: firmware.elf",
            f"\t{r.get('emulator', 'qemu-system-arm')} -M {r.get('machine')} {' '.join(r.get('emulator_args', []))} -kernel firmware.elf",
        ]
    else:
        lines += [
            "edgepack_run: $(OBJS)", "\t$(CC) $(ARCH) $(OBJS) $(LDFLAGS) -o $@", "",
            "%.o: %.c model.h kernels.h", "\t$(CC) $(ARCH) $(CFLAGS) -fPIC -c $< -o $@", "",
        ]
        if spec.cross:
            lines += ["edgepack_run_aarch64: $(SRCS) model.h kernels.h",
                      f"\t{spec.cross['cc']} {' '.join(spec.cross.get('arch_flags', []))} $(CFLAGS) $(SRCS) "
                      f"{' '.join(spec.cross.get('ldflags', []))} -o $@"]
    lines += ["", "clean:", "\trm -f *.o firmware.elf edgepack_run edgepack_run_aarch64", ".PHONY: run clean", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- build

def _run_tool(cmd: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        tail = " | ".join(msg[:12])
        raise BuildError(f"{what} failed ({' '.join(cmd[:1])} exit {proc.returncode}): {tail}")


@dataclass
class Built:
    files: dict[str, Path]  # artifact-relative name -> built file (in the build folder)
    objects: dict[str, Path]  # source -> object of the model library (model.c, kernels*.c)
    commands: list[str]


def build(spec: BuildSpec, cdir: Path, work: Path, kernels: str, shared_library: bool = True) -> Built:
    """Compile the sources in ``cdir`` inside ``work`` (relative names: reproducible binaries).
    Host builds also make the shared library for in-process timing unless ``shared_library`` is False."""
    work.mkdir(parents=True, exist_ok=True)
    for p in cdir.iterdir():
        shutil.copy2(p, work / p.name)
    srcs = spec.sources(kernels)
    commands: list[str] = []
    objects: dict[str, Path] = {}
    pic = ("-fPIC",) if spec.kind == "host" else ()
    for src in srcs:
        obj = src[:-2] + ".o"
        cmd = [spec.cc, *spec.arch_flags, *spec.cflags, *spec.defines, *pic, "-c", src, "-o", obj]
        _run_tool(cmd, work, f"compiling {src} for {spec.target}")
        commands.append(" ".join(cmd))
        objects[src] = work / obj
    files: dict[str, Path] = {}
    objs = [src[:-2] + ".o" for src in srcs]

    def step(cmd: list[str], what: str, name: str, output: str) -> None:
        _run_tool(cmd, work, what)
        commands.append(" ".join(cmd))
        files[name] = work / output

    if spec.kind == "cortex-m":
        step([spec.cc, *spec.arch_flags, *objs, *spec.ldflags, "-T", "cortexm.ld", "-o", "firmware.elf"],
             f"linking the {spec.target} firmware", FIRMWARE, "firmware.elf")
    else:
        step([spec.cc, *spec.arch_flags, *objs, *spec.ldflags, "-o", "edgepack_run"],
             "linking the host test program", HOST_EXE, "edgepack_run")
        if shared_library:  # the library alone (no profiling hook) for in-process timing through ctypes
            lib_srcs = [s for s in srcs if s != "edgepack_main.c"]
            step([spec.cc, *spec.arch_flags, *spec.cflags, "-fPIC", "-shared", *lib_srcs, "-o", "libedgepack_model.so"],
                 "building the host shared library", HOST_LIB, "libedgepack_model.so")
        if spec.cross:
            step([spec.cross["cc"], *spec.cross.get("arch_flags", []), *spec.cflags, *spec.defines, *srcs,
                  *spec.cross.get("ldflags", []), "-o", "edgepack_run_aarch64"],
                 "cross-compiling the aarch64 test program", CROSS_EXE, "edgepack_run_aarch64")
    lib = {s: o for s, o in objects.items() if s in ("model.c", "kernels.c", "kernels_fast.c")}
    return Built(files, lib, commands)


# ---------------------------------------------------------------- sizes

_IGNORED = (".comment", ".ARM.attributes", ".note", ".debug", ".group", ".symtab", ".strtab", ".shstrtab",
            ".rel", ".stack", ".heap")


def section_sizes(size_tool: str, path: Path) -> dict[str, int]:
    """``size -A`` (System V format): section name -> bytes."""
    out = subprocess.run([size_tool, "-A", str(path)], capture_output=True, text=True, check=True).stdout
    sections: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = sections.get(parts[0], 0) + int(parts[1])
    return sections


def classify(sections: dict[str, int]) -> dict[str, int]:
    """text / rodata / data / bss bytes of allocated sections."""
    out = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for name, size in sections.items():
        if name.startswith(_IGNORED):
            continue
        if name.startswith((".text", ".isr_vector", ".init", ".fini", ".plt")) and not name.startswith((".init_array", ".fini_array")):
            out["text"] += size
        elif name.startswith((".rodata", ".data.rel.ro", ".ARM.ex", ".eh_frame", ".init_array", ".fini_array",
                              ".preinit_array", ".gcc_except_table")):
            out["rodata"] += size
        elif name.startswith((".data", ".got", ".tdata")):
            out["data"] += size
        elif name.startswith((".bss", ".tbss", "COMMON")):
            out["bss"] += size
    return out


def footprint(size_tool: str, elf: Path | None, objects: dict[str, Path]) -> dict:
    def split(parts: dict[str, int]) -> dict:
        return {**parts, "flash": parts["text"] + parts["rodata"] + parts["data"], "ram": parts["data"] + parts["bss"]}
    model = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    per_object = {}
    for src, obj in sorted(objects.items()):
        parts = classify(section_sizes(size_tool, obj))
        per_object[src] = split(parts)
        for k in model:
            model[k] += parts[k]
    result = {"tool": Path(size_tool).name, "model_library": {**split(model), "objects": per_object}}
    if elf is not None:
        result["firmware"] = split(classify(section_sizes(size_tool, elf)))
    return result


# ---------------------------------------------------------------- run

@dataclass
class RunResult:
    outputs: np.ndarray
    ticks: list[int]
    layer_ticks: list[int]
    stack_bytes: int | None
    stdout: str


def run_images(spec: BuildSpec, binary: Path, x: np.ndarray, output_size: int, device: str,
               timeout: float | None = None, fix: str | None = None) -> RunResult:
    """Stream int8 images (N, ...) through the test program on ``device``; outputs (N, output_size).

    ``timeout``: seconds the run may take (bench's --timeout); None takes the target file's
    [run] timeout_s + image_timeout_s per image (compile's own runs). ``fix``: what the timeout
    message tells the user to do."""
    binary = Path(binary).resolve()  # the program runs in a temporary folder: a relative path would miss it
    x = np.ascontiguousarray(x, dtype=np.int8)
    n = int(x.shape[0])
    r = spec.run
    if spec.kind == "cortex-m":
        qemu = find_tool(r.get("emulator", "qemu-system-arm"), r.get("debian_package", "qemu-system-arm"))
        cmd = [qemu, "-M", r["machine"], *r.get("emulator_args", []), "-kernel", str(binary)]
    elif device == "qemu-aarch64":
        qemu = find_tool(r.get("cross_emulator", "qemu-aarch64"), r.get("cross_debian_package", "qemu-user"))
        cmd = [qemu, str(binary), "input.bin", "output.bin"]
    else:
        cmd = [str(binary), "input.bin", "output.bin"]
    if timeout is None:
        timeout = float(r.get("timeout_s", 120)) + n * float(r.get("image_timeout_s", 30))
        fix = fix or f"the firmware hangs or crashed, or raise [run] timeout_s of target {spec.target}"
    what = f"the {spec.target} {device} test program on {n} image{'s' if n != 1 else ''}"
    with devices.run_folder() as tmp:
        x.tofile(tmp / "input.bin")
        try:
            proc = devices.run(cmd, timeout=timeout, what=what, fix=fix or "pass a larger --timeout", cwd=tmp)
        except OSError as e:
            raise DeviceError(f"{device}: cannot start {cmd[0]} ({e.strerror}): recompile the artifact on this machine")
        out_path = tmp / "output.bin"
        if proc.returncode != 0:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise DeviceError(f"{device}: the test program exited with status {proc.returncode}: {tail}")
        if not out_path.is_file():
            raise DeviceError(f"{what} exited 0 but wrote no output.bin in its run folder {tmp}: "
                              "recompile the artifact with this edgepack")
        outputs = np.fromfile(out_path, dtype=np.int8)
    if outputs.size != n * output_size:
        raise DeviceError(f"{device}: expected {n} x {output_size} output values, got {outputs.size}")
    ticks = [int(m.group(1)) for m in re.finditer(r"^EDGEPACK image \d+ ticks (\d+)$", proc.stdout, re.M)]
    layers = [int(m.group(1)) for m in re.finditer(r"^EDGEPACK layer \d+ ticks (\d+)$", proc.stdout, re.M)]
    stack = re.search(r"^EDGEPACK stack (\d+)$", proc.stdout, re.M)
    return RunResult(outputs.reshape(n, output_size), ticks, layers, int(stack.group(1)) if stack else None, proc.stdout)


def callgrind_instructions(binary: Path, x: np.ndarray) -> int | None:
    """Instructions of edgepack_invoke for one image under valgrind's callgrind (None without valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    binary = Path(binary).resolve()  # run from a temporary folder, like run_images
    with devices.run_folder("edgepack-cg-") as tmp:
        np.ascontiguousarray(x[:1], dtype=np.int8).tofile(tmp / "input.bin")
        cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=cg.out", "--toggle-collect=edgepack_invoke",
               str(binary), "input.bin", "output.bin"]
        proc = devices.run(cmd, timeout=600, what=f"callgrind on {binary.name}", fix="check valgrind", cwd=tmp)
        text = (tmp / "cg.out").read_text() if (tmp / "cg.out").is_file() else ""
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return int(m.group(1)) if proc.returncode == 0 and m else None
