"""qemu-user runs of aarch64 programs on the board's exact CPU, optionally counting the instructions
they execute with edgepack's own QEMU TCG plugin (edgepack/qemu_plugin/insn_count.c).

Why the exact CPU: qemu's default `-cpu max` has every extension (SDOT, I8MM, SVE...), so code built
for a CPU the board does not have would pass; with `-cpu cortex-a72` it dies with SIGILL instead.
Why instruction counts: qemu's wall-clock time says nothing about the board, the number of guest
instructions executed is deterministic and, with the vector share, a fair work figure.

    python3 -m edgepack.devices.qemu build    # builds the plugin with the host gcc (scripts/setup.sh)
"""
from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgepack.devices.mca import read_blocks
from edgepack.devices.process import run, run_folder, run_tool
from edgepack.devices.tools import SETUP, cache_dir, require
from edgepack.errors import ToolchainError

EMULATOR = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
PLUGIN_SOURCE = Path(__file__).parent.parent / "qemu_plugin" / "insn_count.c"
PLUGIN_NAME = "libinsn_count.so"
PACKAGES = {"gcc": "gcc", EMULATOR: "qemu-user", SYSROOT: "libc6-arm64-cross"}


def _require(tool: str) -> str:
    return require(tool, PACKAGES[tool], SETUP)


def plugin() -> Path:
    """The instruction-count plugin, built with the host gcc when missing or older than its source.

    Built under a temporary name and renamed, so concurrent builders never load a half-written file.
    """
    out = cache_dir() / "qemu-plugins" / PLUGIN_NAME
    if out.exists() and out.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
        return out
    gcc = _require("gcc")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{PLUGIN_NAME}.", dir=out.parent)
    except OSError as e:
        raise ToolchainError(f"cannot write the QEMU plugin into {out.parent} ({e.strerror or type(e).__name__}): "
                             "set EDGEPACK_CACHE to a writable folder") from None
    os.close(fd)
    try:
        r = run_tool([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o", tmp, str(PLUGIN_SOURCE)])
        if r.returncode:
            first = (r.stderr.strip().splitlines() or ["no output"])[0]
            raise ToolchainError(f"building the QEMU plugin {PLUGIN_SOURCE.name} with gcc failed ({first[:200]}): "
                                 "check the gcc installation (apt-get install -y gcc)")
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


@dataclass
class UserRun:
    """One finished qemu-user run. ``instructions`` / ``vector_instructions``: guest instructions
    executed (with ``count=True``; None otherwise or when the program died before exiting)."""

    returncode: int
    stdout: str
    stderr: str
    instructions: int | None = None
    vector_instructions: int | None = None
    blocks: dict | None = None  # with ``blocks=True``: {(address, guest bytes): executions} (edgepack.devices.mca)

    @property
    def vector_share(self) -> float | None:
        if not self.instructions or self.vector_instructions is None:
            return None
        return self.vector_instructions / self.instructions

    def failure(self, cpu: str) -> str | None:
        """Why the run failed, in a few words (None if it succeeded): the signal that killed it, or
        its first stderr line. A SIGILL names ``cpu``: the program used an instruction it lacks."""
        if self.returncode == 0:
            return None
        if self.returncode < 0:
            sig = signal.Signals(-self.returncode)
            if sig == signal.SIGILL:
                return f"died with SIGILL (illegal instruction): it uses an instruction the {cpu} does not have"
            return f"died with {sig.name}"
        lines = [line for line in (self.stderr or self.stdout).strip().splitlines() if line.strip()]
        return f"exit code {self.returncode}" + (f" ({lines[0].strip()[:200]})" if lines else "")


def _environment(extra: dict | None, inherit: bool) -> dict:
    """This process's environment (if ``inherit``) without QEMU_* variables (QEMU_CPU, QEMU_PLUGIN...
    would change the run behind its flags), plus ``extra``; a value None removes a variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QEMU_")} if inherit else {}
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def _read_counts(path: Path) -> tuple[int | None, int | None]:
    try:
        text = path.read_text()
    except OSError:
        return None, None
    found = dict(re.findall(r"^(instructions|vector_instructions) (\d+)$", text, re.M))
    if set(found) != {"instructions", "vector_instructions"}:
        return None, None
    return int(found["instructions"]), int(found["vector_instructions"])


def run_user(cmd: list[str], *, cpu: str, sysroot: str = SYSROOT, count: bool = False, blocks: bool = False,
             env: dict | None = None,
             timeout: float | None = None, cwd=None, stdin: bytes | None = None, inherit_env: bool = True,
             what: str | None = None, fix: str | None = None) -> UserRun:
    """Run ``cmd`` (an aarch64 program and its arguments) as `qemu-aarch64 -cpu CPU -L SYSROOT cmd`.

    ``cpu``: the board's exact CPU (e.g. cortex-a72), never `max`. ``count``: load the instruction-count
    plugin (exact for one guest thread: its counters are not atomic); ``blocks`` (with ``count``): also record each
    translation block's bytes and executions, for llvm-mca's estimate (edgepack.devices.mca). ``env``: variables set on top
    of this process's environment (None removes one); inherited QEMU_* variables are dropped; with
    ``inherit_env=False`` the guest gets ``env`` only.
    Counts depend on the guest's initial stack, which holds argv and the environment: runs compared
    with each other should pass the same environment and argv strings of the same lengths.
    A run that exceeds ``timeout`` seconds is killed with its process group (edgepack.devices): DeviceError
    "``what`` did not finish within N s ...: ``fix``". A non-zero exit is returned, not
    raised: ``UserRun.failure(cpu)`` says why in one line.
    """
    qemu = _require(EMULATOR)
    if not Path(sysroot).is_dir():
        raise ToolchainError(f"the aarch64 sysroot {sysroot} is missing: apt-get install -y "
                             f"{PACKAGES.get(sysroot, 'libc6-arm64-cross')} (or run scripts/setup.sh)")
    name = Path(str(cmd[0])).name
    with run_folder("edgepack-qemu-") as tmp:
        args = [qemu, "-cpu", cpu, "-L", str(sysroot)]
        counts = tmp / "counts"
        if count:  # QEMU option syntax: a literal comma is written twice
            args += ["-plugin", f"{str(plugin()).replace(',', ',,')},outfile={str(counts).replace(',', ',,')}"
                     + (f",blocks={str(tmp / 'blocks').replace(',', ',,')}" if blocks else "")]
        r = run(args + [str(c) for c in cmd], env=_environment(env, inherit_env), timeout=timeout, cwd=cwd,
                        input=stdin, text=False, what=what or f"{EMULATOR} -cpu {cpu} {name}",
                        fix=fix or "it hangs, or it needs a longer timeout")
        instructions, vector = _read_counts(counts) if count else (None, None)
        executed = read_blocks(tmp / "blocks") if count and blocks else None
    return UserRun(r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace"),
                   instructions, vector, executed)


def main(argv: list[str], prog: str = "edgepack.devices.qemu") -> None:
    """``build``: build the plugin now (scripts/setup.sh), print where it is."""
    if argv != ["build"]:
        sys.exit(f"usage: python3 -m {prog} build")
    try:
        print(plugin())
    except ToolchainError as e:
        sys.exit(f"edgepack: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
