"""What a target file says about the C backend, read once (``BuildSpec.from_target``), and the names of
what the build produces.

  [compiler]  kernels = "fast" | "portable", compare_kernels, cflags
  [toolchain] kind = "cortex-m" | "host", cc, size, debian_packages, arch_flags, ldflags,
              flash_origin/flash_length/ram_origin/ram_length (cortex-m linker script),
              cross_cc, cross_size, cross_debian_packages, cross_arch_flags, cross_ldflags (host: aarch64)
  [run]       device, emulator, machine, emulator_args, debian_package, instructions_per_tick,
              systick_hz, timeout_s, image_timeout_s, cross_emulator, cross_debian_package
  [budget]    flash_bytes, ram_bytes
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edgepack.errors import TargetError

KINDS = ("cortex-m", "host")
DEFAULT_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wpedantic",
                  "-ffunction-sections", "-fdata-sections")
FIRMWARE = "bin/firmware.elf"
HOST_EXE, HOST_LIB, CROSS_EXE = "bin/edgepack_run", "bin/libedgepack_model.so", "bin/edgepack_run_aarch64"
CROSS_DEVICE = "qemu-aarch64"  # c-host's second device: the static aarch64 build under qemu-user


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
        return [self.run.get("device", "native")] + ([CROSS_DEVICE] if self.kind == "host" and self.cross else [])

    def emulator(self) -> tuple[str, str]:
        """The Cortex-M emulator (qemu-system) and its Debian package."""
        return self.run.get("emulator", "qemu-system-arm"), self.run.get("debian_package", "qemu-system-arm")

    def cross_emulator(self) -> tuple[str, str]:
        """c-host's qemu-user for the aarch64 build, and its Debian package."""
        return self.run.get("cross_emulator", "qemu-aarch64"), self.run.get("cross_debian_package", "qemu-user")

    def binaries(self) -> dict[str, str]:
        """Device -> the artifact-relative program that runs on it."""
        if self.kind == "cortex-m":
            return {self.devices()[0]: FIRMWARE}
        return {"native": HOST_EXE, **({CROSS_DEVICE: CROSS_EXE} if self.cross else {})}
