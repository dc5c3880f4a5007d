"""Running the C test program: the device it runs on (chosen from the target: this host, qemu-user or
qemu-system; valgrind for the cost figure), the harness's protocol (input.bin in, output.bin out,
"EDGEPACK ..." lines on stdout) and the Runner bench streams images through."""
from __future__ import annotations

import ctypes
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack import devices
from edgepack.backends import runner
from edgepack.backends.c.spec import CROSS_DEVICE, HOST_LIB, BuildSpec
from edgepack.errors import ArtifactError, ConfigError, DeviceError
from edgepack.plan.plan import Plan
from edgepack.validate import check_timeout

DEFAULT_TIMEOUT_S = 120.0  # bench --timeout's default
HARNESS_FILES = ["input.bin", "output.bin"]  # edgepack_main.c's arguments (Cortex-M: the names it opens by semihosting)


def device_for(spec: BuildSpec, device: str) -> devices.Device:
    """Where the test program of ``spec`` runs: Cortex-M firmware boots under the target's qemu-system
    machine, c-host's aarch64 build runs under qemu-user, the native build on this host."""
    if spec.kind == "cortex-m":
        return devices.emulated(device, devices.require(*spec.emulator()), "-M", spec.run.machine,
                                *spec.run.emulator_args, boots=True)
    if device == CROSS_DEVICE:
        return devices.emulated(device, devices.require(*spec.cross_emulator()))
    return devices.Device(device)


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
    on = device_for(spec, device)
    if timeout is None:
        timeout = spec.run.timeout(n)
        fix = fix or f"the firmware hangs or crashed, or raise [run] timeout_s of target {spec.target}"
    what = f"the {spec.target} {device} test program on {n} image{'s' if n != 1 else ''}"
    try:
        ran = on.run(binary, HARNESS_FILES, inputs={"input.bin": x.tobytes()}, outputs=["output.bin"],
                     timeout=timeout, what=what, fix=fix or "pass a larger --timeout")
    except OSError as e:
        raise DeviceError(f"{device}: cannot start {on.command(binary)[0]} ({e.strerror}): recompile the artifact on this machine")
    if ran.returncode != 0:
        tail = " | ".join((ran.stdout + ran.stderr).strip().splitlines()[-5:])
        raise DeviceError(f"{device}: the test program exited with status {ran.returncode}: {tail}")
    if ran.outputs["output.bin"] is None:
        raise DeviceError(f"{what} exited 0 but wrote no output.bin in its run folder {ran.folder}: "
                          "recompile the artifact with this edgepack")
    outputs = np.frombuffer(ran.outputs["output.bin"], dtype=np.int8).copy()
    if outputs.size != n * output_size:
        raise DeviceError(f"{device}: expected {n} x {output_size} output values, got {outputs.size}")
    return _harness_result(outputs.reshape(n, output_size), ran.stdout)


def _harness_result(outputs: np.ndarray, stdout: str) -> RunResult:
    """The harness's figures: SysTick ticks per image and per layer, the stack high-water mark."""
    ticks = [int(m.group(1)) for m in re.finditer(r"^EDGEPACK image \d+ ticks (\d+)$", stdout, re.M)]
    layers = [int(m.group(1)) for m in re.finditer(r"^EDGEPACK layer \d+ ticks (\d+)$", stdout, re.M)]
    stack = re.search(r"^EDGEPACK stack (\d+)$", stdout, re.M)
    return RunResult(outputs, ticks, layers, int(stack.group(1)) if stack else None, stdout)


def callgrind_instructions(binary: Path, x: np.ndarray) -> int | None:
    """Instructions of edgepack_invoke for one image under valgrind's callgrind (None without valgrind)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    binary = Path(binary).resolve()  # run from a temporary folder, like run_images
    callgrind = devices.Device("callgrind", (valgrind, "--tool=callgrind", "--callgrind-out-file=cg.out",
                                             "--toggle-collect=edgepack_invoke"))
    ran = callgrind.run(binary, HARNESS_FILES, inputs={"input.bin": np.ascontiguousarray(x[:1], dtype=np.int8).tobytes()},
                        outputs=["cg.out"], timeout=600, what=f"callgrind on {binary.name}", fix="check valgrind",
                        folder_prefix="edgepack-cg-")
    text = (ran.outputs["cg.out"] or b"").decode()
    m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return int(m.group(1)) if ran.returncode == 0 and m else None


class Runner(runner.Runner):
    """``device``: for cortex-m targets the QEMU machine of the target file; for c-host "native"
    (default) or "qemu-aarch64" (the static aarch64 build under user-mode QEMU). Which devices an
    artifact has is in its manifest, so the value is checked here, not in OPTIONS."""

    OPTIONS = {"device": runner.Option("a device the artifact was built for (c-host: native or qemu-aarch64; "
                                       "cortex-m: its QEMU machine)"),
               "timeout": runner.Option("seconds one run of the test program may last, > 0", check_timeout)}
    IMAGES_PER_RUN = 16  # eval images go through the program in runs this long, each bounded by the timeout

    def __init__(self, folder: Path, manifest: dict, device: str | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        super().__init__(Path(folder), manifest)
        self.timeout = check_timeout(timeout)
        self.spec = BuildSpec.from_json(manifest["target"])
        info = manifest["backend_info"]
        binaries = info.get("binaries", {})
        self.device = device or info["devices"][0]
        if self.device not in binaries:
            raise ConfigError(f"device '{self.device}' is not available for {self.spec.target}: use one of {', '.join(binaries)}")
        self.binary = self.folder / binaries[self.device]
        if not self.binary.is_file():
            raise ArtifactError(f"{self.binary} is missing: recompile the artifact")
        self.input_shape = tuple(info["input_shape"])
        self.output_size = int(info["output_size"])
        self.ticks: list[int] = []
        self.layer_ticks: list[int] = []
        self.stack_bytes: int | None = None
        self._plan = None
        self._lib = None

    @property
    def plan(self):
        if self._plan is None:
            self._plan = Plan.load(self.folder)
        return self._plan

    def run_int8(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.int8 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"run_int8 needs int8 (N, {', '.join(map(str, self.input_shape))}), got {x.dtype} {x.shape}")
        outputs = []
        for start in range(0, len(x), self.IMAGES_PER_RUN):
            result = run_images(self.spec, self.binary, x[start:start + self.IMAGES_PER_RUN], self.output_size,
                                         self.device, timeout=self.timeout, fix="pass a larger --timeout")
            self.ticks += result.ticks
            self.layer_ticks = result.layer_ticks or self.layer_ticks
            if result.stack_bytes is not None:
                self.stack_bytes = max(self.stack_bytes or 0, result.stack_bytes)
            outputs.append(result.outputs)
        return np.concatenate(outputs) if outputs else np.zeros((0, self.output_size), np.int8)

    def time_one(self, image: np.ndarray):
        """Native c-host only: edgepack_invoke of the shared library, in process. Emulators: None."""
        if self.spec.kind != "host" or self.device != "native":
            return None
        lib_path = self.folder / HOST_LIB
        if self._lib is None:
            self._lib = ctypes.CDLL(str(lib_path.absolute()))
            self._lib.edgepack_invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            self._lib.edgepack_invoke.restype = ctypes.c_int
        x = np.ascontiguousarray(self.plan.input_q.quantize(image[None])[0])
        out = np.zeros(self.output_size, np.int8)
        fn, xp, op = self._lib.edgepack_invoke, x.ctypes.data, out.ctypes.data
        self._keep = (x, out)
        return lambda: fn(xp, op)

    def details(self) -> dict | None:
        """The kernel set and how many plan layers ran a fast kernel, with the portable ones and why (bench's device
        line), as lower.kernel_record recorded them; None for artifacts without that record."""
        info = self.manifest["backend_info"]
        if "fast_layers" not in info:
            return None
        return {"summary": f"kernels {info.get('kernels')}: {info['fast_layers']}", "kernel_choices": info["kernel_choices"]}

    def cost(self) -> dict:
        m = self.manifest
        fp, mem, compiled = m.get("footprint", {}), m.get("memory_plan", {}), m.get("cost", {})
        report = {"kernels": m["backend_info"].get("kernels")}
        if self.ticks:
            ipt = self.spec.run.instructions_per_tick
            first = self.ticks[0]
            report.update(systick_ticks_per_inference=first, systick_ticks_min=min(self.ticks),
                          systick_ticks_max=max(self.ticks),
                          approx_instructions_per_inference=round(first * ipt) if ipt else None,
                          same_as_compile=first == compiled.get("ticks_per_inference"))
        elif compiled.get("instructions_per_inference") is not None:
            report["callgrind_instructions_per_inference"] = compiled["instructions_per_inference"]
        for other in ("portable", "fast"):
            if isinstance(compiled.get(other), dict) and other != report["kernels"]:
                report[f"{other}_kernels_ticks_per_inference"] = compiled[other]["ticks_per_inference"]
        if "speedup_fast_vs_portable" in compiled:
            report["speedup_fast_vs_portable"] = compiled["speedup_fast_vs_portable"]
        # the stack figure is a bound: this run's high-water mark plus the interrupt margin compile recorded
        margin = (fp.get("stack_margin") or {}).get("total_bytes", 0)
        stack = fp.get("stack_bytes") if self.stack_bytes is None else max(self.stack_bytes + margin, fp.get("stack_bytes") or 0)
        report.update(flash_bytes=fp.get("flash_bytes"), ram_bytes=fp.get("ram_bytes"), model_ram_bytes=fp.get("model_ram_bytes"),
                      stack_bytes=stack, arena_bytes=mem.get("arena_bytes"), naive_arena_bytes=mem.get("naive_bytes"))
        return report
