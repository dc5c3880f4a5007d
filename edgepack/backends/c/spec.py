"""What a target file says about the C backend, read once into typed values with their defaults
(``BuildSpec.from_target(target)`` at compile, ``BuildSpec.from_json(manifest["target"])`` at bench),
and the names of what the build produces.

  [compiler]  kernels = "fast" | "portable" | "helium" (fast + MVE kernels, Armv8.1-M), compare_kernels, cflags
  [toolchain] kind = "cortex-m" | "host", cc, size, debian_packages, arch_flags, ldflags,
              flash_origin/flash_length/ram_origin/ram_length (cortex-m linker script; rodata_origin/rodata_length
              optionally put the constants in a region of their own),
              cross_cc, cross_debian_packages, cross_arch_flags, cross_ldflags (host: aarch64; CrossSpec)
  [run]       device, emulator, machine, emulator_args, debian_package, instructions_per_tick,
              systick_hz, timeout_s, image_timeout_s, cross_emulator, cross_debian_package  (RunSpec)
  [budget]    flash_bytes, ram_bytes  (BudgetSpec)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edgepack.errors import TargetError
from edgepack.targets import Target, target_from_json

KINDS = ("cortex-m", "host")
# the Cortex-M linker script's regions: code, data, and optionally the constants (.rodata) apart from the code
MEMORY_KEYS = ("flash_origin", "flash_length", "ram_origin", "ram_length", "rodata_origin", "rodata_length")
DEFAULT_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wpedantic",
                  "-ffunction-sections", "-fdata-sections")
FIRMWARE = "bin/firmware.elf"
HOST_EXE, HOST_LIB, CROSS_EXE = "bin/edgepack_run", "bin/libedgepack_model.so", "bin/edgepack_run_aarch64"
CROSS_DEVICE = "qemu-aarch64"  # c-host's second device: the static aarch64 build under qemu-user


@dataclass(frozen=True)
class RunSpec:
    """[run] for the C backend: the one place its defaults live."""
    device: str = "native"  # the first device (bench's default); Cortex-M: the QEMU machine's name
    emulator: str = "qemu-system-arm"  # Cortex-M: the qemu-system and its Debian package
    debian_package: str = "qemu-system-arm"
    machine: str | None = None
    emulator_args: tuple[str, ...] = ()
    systick_hz: int = 25_000_000
    instructions_per_tick: float | None = None  # may be fractional (mps3-an547: 31.25); counts are rounded
    timeout_s: float = 120.0  # a compile's device run: timeout_s + image_timeout_s per image
    image_timeout_s: float = 30.0
    cross_emulator: str = "qemu-aarch64"  # c-host's aarch64 build under qemu-user, and its Debian package
    cross_debian_package: str = "qemu-user"

    def timeout(self, images: int) -> float:
        """Seconds a compile's run of ``images`` images may last."""
        return float(self.timeout_s) + images * float(self.image_timeout_s)


@dataclass(frozen=True)
class BudgetSpec:
    """[budget]: memory the model may use; None = no limit."""
    flash_bytes: int | None = None
    ram_bytes: int | None = None

    def to_json(self) -> dict:
        """The limits the file set (what the manifest's footprint records)."""
        return {k: v for k, v in (("flash_bytes", self.flash_bytes), ("ram_bytes", self.ram_bytes)) if v is not None}


def _set(table) -> dict:
    """The keys a target table sets (None = left to the spec's default)."""
    return {k: v for k, v in vars(table).items() if v is not None}


@dataclass(frozen=True)
class CrossSpec:
    """[toolchain] cross_*: c-host's second build, a static aarch64 program run under qemu-user."""
    cc: str
    debian_packages: str  # default: the package named like cc
    arch_flags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()

    @classmethod
    def from_toolchain(cls, tc, name: str) -> "CrossSpec | None":
        """The cross build a [toolchain] table describes; None when it sets no cross_* key."""
        keys = {k[len("cross_"):]: v for k, v in _set(tc).items() if k.startswith("cross_")}
        if not keys:
            return None
        if "cc" not in keys:
            raise TargetError(f"target {name}: [toolchain] sets {', '.join('cross_' + k for k in keys)} but no "
                              "cross_cc: add cross_cc = \"<aarch64 C compiler>\" or remove them")
        return cls(cc=keys["cc"], debian_packages=keys.get("debian_packages", keys["cc"]),
                   arch_flags=tuple(keys.get("arch_flags", ())), ldflags=tuple(keys.get("ldflags", ())))


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
    cross: CrossSpec | None = None  # None: no second (aarch64) build
    run: RunSpec = field(default_factory=RunSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)

    @classmethod
    def from_json(cls, data, where: str = "the artifact's manifest: target") -> "BuildSpec":
        """The spec of a target as a manifest records it (Target.to_json()), checked as strictly as a file."""
        return cls.from_target(target_from_json(data, where))

    @classmethod
    def from_target(cls, target: Target) -> "BuildSpec":
        """The spec of ``target``, as the compile reads it."""
        comp, tc, name = target.compiler, target.toolchain, target.name
        if tc.kind not in KINDS:
            raise TargetError(f"target {name}: [toolchain] kind must be one of {', '.join(KINDS)}, got {tc.kind!r}")
        kernels = comp.kernels or "portable"
        if tc.cc is None:
            raise TargetError(f"target {name}: [toolchain] needs cc = \"<C compiler>\"")
        memory = {k: v for k, v in _set(tc).items() if k in MEMORY_KEYS}
        if tc.kind == "cortex-m" and len(set(memory) & set(MEMORY_KEYS[:4])) != 4:
            raise TargetError(f"target {name}: a cortex-m [toolchain] needs flash_origin, flash_length, ram_origin, ram_length")
        if len(set(memory) & {"rodata_origin", "rodata_length"}) == 1:
            raise TargetError(f"target {name}: [toolchain] sets one of rodata_origin / rodata_length: set both (a region "
                              "for the constants) or neither (constants in flash)")
        return cls(
            target=name, kind=tc.kind, kernels=kernels, compare_kernels=bool(comp.compare_kernels),
            cc=tc.cc, size=tc.size or "size", packages=tc.debian_packages or tc.cc,
            cflags=tuple(comp.cflags or DEFAULT_CFLAGS), arch_flags=tuple(tc.arch_flags or ()),
            ldflags=tuple(tc.ldflags or ()), memory=memory, cross=CrossSpec.from_toolchain(tc, name),
            run=RunSpec(**_set(target.run)), budget=BudgetSpec(**_set(target.budget)),
        )

    @property
    def defines(self) -> tuple[str, ...]:
        return ("-DEDGEPACK_PROFILE",) + (("-DEDGEPACK_CORTEX_M",) if self.kind == "cortex-m" else ())

    def sources(self, kernels: str) -> list[str]:
        srcs = ["model.c", "kernels.c"] + (["kernels_fast.c"] if kernels in ("fast", "helium") else []) \
            + (["kernels_helium.c"] if kernels == "helium" else []) + ["edgepack_main.c"]
        return srcs + (["startup_cortexm.c"] if self.kind == "cortex-m" else [])

    def headers(self) -> list[str]:
        return ["model.h", "kernels.h"] + (["cortexm.ld"] if self.kind == "cortex-m" else [])

    def devices(self) -> list[str]:
        return [self.run.device] + ([CROSS_DEVICE] if self.kind == "host" and self.cross else [])

    def emulator(self) -> tuple[str, str]:
        """The Cortex-M emulator (qemu-system) and its Debian package."""
        return self.run.emulator, self.run.debian_package

    def cross_emulator(self) -> tuple[str, str]:
        """c-host's qemu-user for the aarch64 build, and its Debian package."""
        return self.run.cross_emulator, self.run.cross_debian_package

    def binaries(self) -> dict[str, str]:
        """Device -> the artifact-relative program that runs on it."""
        if self.kind == "cortex-m":
            return {self.devices()[0]: FIRMWARE}
        return {"native": HOST_EXE, **({CROSS_DEVICE: CROSS_EXE} if self.cross else {})}
