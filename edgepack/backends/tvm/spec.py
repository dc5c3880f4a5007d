"""What a target file says about the TVM backend, read once into typed values with their defaults
(``TvmSpec.from_target(target)`` at compile and tune, ``TvmSpec.from_json(manifest["target"])`` at bench).

  [compiler]  tvm_target (a TVM tag or a table), arch (default: this host's), cross_compiler,
              int8_kernels = "auto" (default) | "generic" | "vnni" | "neon"
  [run]       qemu_cpu: the board's exact CPU for every qemu-user run
  [rpc]       key: the device key boards of this target register with at a tracker
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgepack.backends.tvm.toolchain import HOST_ARCH
from edgepack.targets import Target


@dataclass(frozen=True)
class TvmSpec:
    name: str
    path: Path  # the target file (messages name it)
    tvm_target: str | dict | None = None
    arch: str = HOST_ARCH
    cross_compiler: str | None = None
    int8_kernels: str = "auto"
    qemu_cpu: str | None = None
    rpc_key: str | None = None

    @property
    def cross(self) -> bool:
        """Whether the library is built for another architecture than this host's."""
        return self.arch != HOST_ARCH

    @classmethod
    def from_target(cls, target: Target) -> "TvmSpec":
        comp = target.compiler
        return cls(name=target.name, path=target.path, tvm_target=comp.tvm_target, arch=comp.arch or HOST_ARCH,
                   cross_compiler=comp.cross_compiler, int8_kernels=comp.int8_kernels or "auto",
                   qemu_cpu=target.run.qemu_cpu, rpc_key=target.rpc.key)

    @classmethod
    def from_json(cls, data: dict) -> "TvmSpec":
        """The spec of the target a manifest records, reading only the keys a run needs: bench has already
        checked the whole target (manifest_schema), and artifacts of older edgepacks may lack tables."""
        def table(name: str) -> dict:
            value = data.get(name)
            return value if isinstance(value, dict) else {}

        def text(value) -> str | None:
            return value if isinstance(value, str) and value else None

        comp = table("compiler")
        return cls(name=str(data.get("name")), path=Path(f"{data.get('name')}.toml"), tvm_target=comp.get("tvm_target"),
                   arch=text(comp.get("arch")) or HOST_ARCH, cross_compiler=text(comp.get("cross_compiler")),
                   int8_kernels=text(comp.get("int8_kernels")) or "auto", qemu_cpu=text(table("run").get("qemu_cpu")),
                   rpc_key=text(table("rpc").get("key")))
