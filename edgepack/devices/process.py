"""The one process runner for device programs, and what a stop signal must end.

Why a session of its own: a device program (or the emulator running it) may start children; killing
the whole process group is the only way to be sure none of them outlives the run. Why a registry: the
stop-signal handler (edgepack.cli.main) exits at once with os._exit, so nothing in a ``finally`` runs;
it calls :func:`abandon`, which kills what is still running and removes the run folders.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import DeviceTimeout

RUN_PREFIX = "edgepack-run-"
STOP_GRACE_S = 10.0  # how long adopted workers get to clean up after SIGTERM before SIGKILL

_GROUPS: dict[int, subprocess.Popen] = {}  # running device programs, each the leader of its own process group
_ADOPTED: dict[int, tuple] = {}  # other children to stop with edgepack (sweep's workers): pid -> (owner pid, psutil.Process)
_FOLDERS: set[Path] = set()  # run folders in use
_STARTING = {"active": False, "signal": None}  # a program is starting: a stop signal waits until its group is registered


@dataclass
class Finished:
    returncode: int
    stdout: str | bytes
    stderr: str | bytes


def run(cmd: list, *, timeout: float | None, what: str, fix: str, cwd=None, env: dict | None = None,
        input: bytes | str | None = None, text: bool = True) -> Finished:
    """Run ``cmd`` in its own session with stdout/stderr captured, for at most ``timeout`` seconds.

    On timeout, an error or an exception (KeyboardInterrupt included) the whole process group is
    killed; a timeout raises DeviceTimeout "``what`` did not finish within N s ...: ``fix``". A non-zero
    exit is returned, not raised. OSError (the program cannot start) is left to the caller, who knows
    the fix."""
    with _registering():
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, start_new_session=True, text=text,
                                errors="replace" if text else None,  # a crashing program may print any bytes
                                stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _GROUPS[proc.pid] = proc
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _end(proc)
        raise DeviceTimeout(f"{what} did not finish within {timeout:g} s (it hangs, or needs more time): {fix}") from None
    except BaseException:
        _end(proc)
        raise
    finally:
        _GROUPS.pop(proc.pid, None)
    return Finished(proc.returncode, out, err)


def run_tool(cmd: list, cwd=None) -> Finished:
    """A toolchain command (compiler, linker, ``size``, ``--version``) with its output captured: no time
    limit (a build is not a device run), but in its own session like any program, so a stop signal ends it."""
    return run(cmd, timeout=None, what=str(cmd[0]), fix="", cwd=cwd)


def start(cmd: list, *, quiet: bool = True) -> subprocess.Popen:
    """A program left running in the background (a local TVM RPC tracker or server) in its own session,
    registered so that a stop signal ends its group; ``quiet`` discards its output. End it with :func:`stop`."""
    sink = subprocess.DEVNULL if quiet else None
    with _registering():
        proc = subprocess.Popen([str(c) for c in cmd], stdout=sink, stderr=sink, start_new_session=True)
        _GROUPS[proc.pid] = proc
    return proc


def defer_signal(signum: int) -> bool:
    """True (and the signal is re-sent once the group is registered) while a program is being started:
    a stop handled between Popen and the registry would leave that program's group running."""
    if _STARTING["active"]:
        _STARTING["signal"] = signum
        return True
    return False


@contextlib.contextmanager
def _registering():
    """Start a program and register its group with stop signals held back (see :func:`defer_signal`)."""
    _STARTING["active"] = True
    try:
        yield
    finally:
        _STARTING["active"] = False
        signum, _STARTING["signal"] = _STARTING["signal"], None
        if signum is not None:
            os.kill(os.getpid(), signum)  # the group is registered: now stop as asked


def stop(proc: subprocess.Popen, wait: float = 10.0) -> None:
    """Kill a started program's whole group (TVM's server workers outlive a SIGTERM to their parent) and reap it."""
    _kill_group(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=wait)
    _GROUPS.pop(proc.pid, None)


def pause(proc: subprocess.Popen) -> None:
    """SIGSTOP a started program's group: it stays alive (sockets open, connections accepted) but answers nothing."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGSTOP)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _end(proc: subprocess.Popen) -> None:
    """Kill the group (the leader is not reaped yet, so its id still names the group) and reap it."""
    _kill_group(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)  # a child that left the group may still hold the pipes: do not wait on it


@contextlib.contextmanager
def run_folder(prefix: str = RUN_PREFIX):
    """A temporary folder for one run (its input and output files), removed in every case."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    _FOLDERS.add(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _FOLDERS.discard(folder)


def adopt(pid: int) -> None:
    """Stop child ``pid`` (a worker process of this one) with edgepack: SIGTERM, then SIGKILL after a grace time.
    Held as a psutil.Process, which knows its start time: a pid reused by another program is never signalled."""
    import psutil

    with contextlib.suppress(psutil.Error):
        _ADOPTED[pid] = (os.getpid(), psutil.Process(pid))


def release(pids) -> None:
    """The workers ``pids`` have ended: forget them."""
    for pid in pids:
        _ADOPTED.pop(pid, None)


def abandon() -> None:
    """Kill every running device program's process group, stop adopted workers and remove the run
    folders: what a stop signal's handler calls before it exits. Safe to call more than once."""
    for pid in list(_GROUPS):
        _kill_group(pid)
    _stop_adopted()
    for folder in list(_FOLDERS):
        shutil.rmtree(folder, ignore_errors=True)


def _stop_adopted() -> None:
    """SIGTERM the workers this process adopted (a forked worker inherits the table but owns none of
    it), wait for them to clean up and exit, SIGKILL the rest."""
    import psutil

    mine = {pid: proc for pid, (owner, proc) in _ADOPTED.items() if owner == os.getpid()}
    procs = []
    for proc in mine.values():
        with contextlib.suppress(psutil.Error):
            proc.terminate()  # checks the start time first: NoSuchProcess if the pid now names another process
            procs.append(proc)
    _, alive = psutil.wait_procs(procs, timeout=STOP_GRACE_S)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    release(mine)
