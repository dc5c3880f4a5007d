"""Where a program runs: this host, or an emulator whose command line wraps the program's (qemu-user,
qemu-system booting it as its kernel, valgrind). A runner chooses its Device once; every run then takes
the same path: a fresh run folder holding the input files, the program started there with a time
limit, the output files read back, the folder removed (edgepack.devices.process)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgepack.devices.process import RUN_PREFIX, run, run_folder


@dataclass(frozen=True)
class Ran:
    """One finished run: exit status, captured text, the output files it wrote (None: not written) and the
    run folder it ran in (already removed; named in messages)."""

    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, bytes | None]
    folder: Path


@dataclass(frozen=True)
class Device:
    """``prefix``: the emulator and its options, written before the program (empty: this host).
    ``passes_args``: False when the program is booted, not started (qemu-system -kernel): it gets no argv
    and reaches its files through semihosting in the run folder. The program inherits this process's
    environment."""

    name: str
    prefix: tuple[str, ...] = ()
    passes_args: bool = True

    def command(self, program, args=()) -> list[str]:
        return [*self.prefix, str(program), *(map(str, args) if self.passes_args else ())]

    def run(self, program, args=(), *, inputs: dict[str, bytes] | None = None, outputs=(), timeout: float | None,
            what: str, fix: str, folder_prefix: str = RUN_PREFIX) -> Ran:
        """Run ``program`` with ``args`` in a new run folder holding ``inputs`` (name -> bytes) and read back
        ``outputs`` (names). ``program`` must be an absolute path: the run starts in the run folder.
        A timeout raises DeviceTimeout (what/fix, see process.run); OSError (cannot start) is the caller's."""
        with run_folder(folder_prefix) as folder:
            for name, data in (inputs or {}).items():
                (folder / name).write_bytes(data)
            done = run(self.command(program, args), timeout=timeout, what=what, fix=fix, cwd=folder)
            found = {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in outputs}
        return Ran(done.returncode, done.stdout, done.stderr, found, folder)


NATIVE = Device("native")


def emulated(name: str, emulator: str, *options: str, boots: bool = False) -> Device:
    """A program under ``emulator`` (a full path, see tools.require) with ``options`` before the program:
    qemu-user (``boots=False``: the program gets its arguments) or qemu-system (``boots=True``: the
    program is the ``-kernel`` image, see Device.passes_args)."""
    return Device(name, (emulator, *options, *(("-kernel",) if boots else ())), passes_args=not boots)
