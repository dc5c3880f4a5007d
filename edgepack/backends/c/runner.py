"""Runner for bench: streams int8 images through the artifact's binary on its device."""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from edgepack.backends import runner
from edgepack.backends.c import firmware
from edgepack.backends.c.firmware import BuildSpec
from edgepack.errors import ArtifactError, ConfigError
from edgepack.validate import check_timeout

DEFAULT_TIMEOUT_S = 120.0  # bench --timeout's default


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
        self.spec = BuildSpec.from_target(manifest["target"])
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
            from edgepack.plan.plan import Plan
            self._plan = Plan.load(self.folder)
        return self._plan

    def run_int8(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.int8 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"run_int8 needs int8 (N, {', '.join(map(str, self.input_shape))}), got {x.dtype} {x.shape}")
        outputs = []
        for start in range(0, len(x), self.IMAGES_PER_RUN):
            result = firmware.run_images(self.spec, self.binary, x[start:start + self.IMAGES_PER_RUN], self.output_size,
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
        lib_path = self.folder / firmware.HOST_LIB
        if self._lib is None:
            self._lib = ctypes.CDLL(str(lib_path.absolute()))
            self._lib.edgepack_invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            self._lib.edgepack_invoke.restype = ctypes.c_int
        x = np.ascontiguousarray(self.plan.input_q.quantize(image[None])[0])
        out = np.zeros(self.output_size, np.int8)
        fn, xp, op = self._lib.edgepack_invoke, x.ctypes.data, out.ctypes.data
        self._keep = (x, out)
        return lambda: fn(xp, op)

    def cost(self) -> dict:
        m = self.manifest
        fp, mem, compiled = m.get("footprint", {}), m.get("memory_plan", {}), m.get("cost", {})
        report = {"kernels": m["backend_info"].get("kernels")}
        if self.ticks:
            ipt = self.spec.run.get("instructions_per_tick")
            first = self.ticks[0]
            report.update(systick_ticks_per_inference=first, systick_ticks_min=min(self.ticks),
                          systick_ticks_max=max(self.ticks),
                          approx_instructions_per_inference=first * ipt if ipt else None,
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
