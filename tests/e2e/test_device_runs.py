"""Device program runs are bounded and cleaned up (edgepack.devices): bench --timeout bounds every run of
an artifact's device program, a stop signal ends the program's whole process group and removes its run
folder, a program that writes no output is named as such, and --key / --rpc are checked before any work.

Each CLI case runs as its own process with a private TMPDIR, so the run folders it leaves can be counted.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from edgepack import devices
from edgepack.artifact import write_manifest
from edgepack.errors import DeviceError, ToolchainError
from tests.cli import assert_one_line, edgepack as run_cli_process, tree

SMALL = ["--alpha", "0.25", "--resolution", "32", "--eval-size", "16", "--calib-size", "16"]


def edgepack(*argv, tmpdir: Path, timeout=120):
    """The CLI as a process with TMPDIR=tmpdir, so the run folders it leaves can be counted."""
    return run_cli_process(*argv, timeout=timeout, env={"TMPDIR": str(tmpdir)})


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def c_host(small_artifacts):
    return small_artifacts("c-host")


def with_program(c_host: Path, folder: Path, script: str) -> Path:
    """A copy of the artifact whose native test program is ``script`` (sh), with a rehashed manifest:
    what a hung or broken device program looks like to bench."""
    art = folder / "art"
    shutil.copytree(c_host, art)
    program = art / "bin" / "edgepack_run"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(0o755)
    write_manifest(art, json.loads((art / "manifest.json").read_text()))
    return art


# A program that hangs, with a child of its own; both write their pid where the test can read it.
HANG = 'echo $$ >> "{pids}"\nsleep 300 &\necho $! >> "{pids}"\nwait\n'


@pytest.mark.slow
def test_bench_timeout_bounds_a_hung_device_program(c_host, tmp_path):
    pids, tmp = tmp_path / "pids", tmp_path / "tmp"
    tmp.mkdir()
    art = with_program(c_host, tmp_path, HANG.format(pids=pids))
    before = tree(art)
    code, _, err, seconds = edgepack("bench", art, "--timeout", "5", "--eval-size", "1", tmpdir=tmp, timeout=60)
    assert_one_line(code, err, 2, "c-host native test program", "did not finish within 5 s", "--timeout")
    assert seconds < 25, seconds  # 5 s and Python's start-up, not 120 s + 30 s per image
    assert tree(art) == before
    assert list(tmp.iterdir()) == []  # the run folder is gone
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2 and not any(alive(p) for p in started)  # the program and its child were killed


@pytest.mark.slow
def test_sigterm_to_bench_ends_its_device_program_and_run_folder(c_host, tmp_path):
    pids, tmp = tmp_path / "pids", tmp_path / "tmp"
    tmp.mkdir()
    art = with_program(c_host, tmp_path, HANG.format(pids=pids))
    p = subprocess.Popen([sys.executable, "-m", "edgepack.cli.main", "bench", str(art), "--eval-size", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "TMPDIR": str(tmp), "EDGEPACK_PROGRESS": "auto"})
    deadline = time.monotonic() + 60
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    started = [int(x) for x in pids.read_text().split()]
    assert len(started) == 2 and all(alive(x) for x in started) and list(tmp.glob("edgepack-run-*"))
    p.send_signal(signal.SIGTERM)
    # bench ends at the signal, not at its device timeout (minutes): communicate raises TimeoutExpired otherwise
    _, err = p.communicate(timeout=30)
    assert_one_line(p.returncode, err, 143, "terminated")
    deadline = time.monotonic() + 10  # the killed group is reparented to init, which reaps it (slower on a busy host)
    while any(alive(x) for x in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(x) for x in started)
    assert list(tmp.iterdir()) == []


@pytest.mark.slow
def test_device_program_that_writes_no_output_is_named(c_host, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    art = with_program(c_host, tmp_path, "exit 0\n")
    code, _, err, _ = edgepack("bench", art, "--eval-size", "1", tmpdir=tmp)
    assert_one_line(code, err, 2, "wrote no output.bin in its run folder", "recompile")
    assert "expected" not in err
    assert list(tmp.iterdir()) == []


# ---------------------------------------------------------------- flags checked before any work

@pytest.mark.parametrize("argv, words", [
    (["bench", "no-such-artifact", "--key", "rpi4"], ("--key rpi4", "--rpc")),
    (["tune", "--target", "x86-tvm", "--rpc", "nohost"], ("nohost", "port")),
    (["tune", "--target", "x86-tvm", "--rpc", "host:notaport"], ("notaport", "1 to 65535")),
    (["tune", "--target", "x86-tvm", "--key", "rpi4"], ("--key rpi4", "--rpc")),
])
def test_rpc_flags_are_checked_before_any_work(argv, words, tmp_path):
    code, out, err, seconds = edgepack(*argv, tmpdir=tmp_path, timeout=60)
    assert_one_line(code, err, 2, *words)
    assert out == "" and seconds < 10  # no compile, no TVM import
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the runner itself

def test_run_kills_the_whole_group_on_timeout(tmp_path):
    pids = tmp_path / "pids"
    start = time.monotonic()
    with pytest.raises(DeviceError, match=r"^the sleeper did not finish within 0\.5 s .*: try again$"):
        devices.run(["sh", "-c", f'sleep 300 & echo $! > "{pids}"; sleep 301'], timeout=0.5, what="the sleeper",
                    fix="try again")
    assert time.monotonic() - start < 5
    time.sleep(0.2)
    assert not alive(int(pids.read_text()))


def test_abandon_kills_running_programs_and_removes_run_folders(tmp_path, monkeypatch):
    """What the stop-signal handler calls: here from a timer thread while a run is waiting."""
    import threading

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    pids = tmp_path / "pids"

    def stop_when_started():
        while not pids.exists() or not pids.read_text().strip():
            time.sleep(0.05)
        devices.abandon()

    stopper = threading.Thread(target=stop_when_started, daemon=True)
    stopper.start()
    with devices.run_folder() as folder:
        assert folder.parent == tmp_path and folder.name.startswith("edgepack-run-")
        result = devices.run(["sh", "-c", f'sleep 300 & echo $! > "{pids}"; wait'], timeout=60, what="x", fix="y")
        # abandon() kills first, then removes: on a loaded host the killed run can return before the removal ends
        stopper.join(timeout=30)
        assert not stopper.is_alive() and not folder.exists()  # removed by abandon() while the run was going
    assert result.returncode == -signal.SIGKILL
    time.sleep(0.2)
    assert not alive(int(pids.read_text()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pids"]


def _qemu_processes(program: Path) -> list:
    return [p for p in psutil.process_iter(["cmdline"]) if str(program) in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_qemu_user_runs_are_bounded_and_stopped_with_edgepack(tmp_path, monkeypatch):
    """edgepack.devices.qemu (the TVM backend's device runs) goes through the same runner: its timeout names the
    run, and abandon() (the stop-signal handler) ends a run in progress and removes its folder."""
    import threading

    from edgepack.devices import qemu

    if shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which(qemu.EMULATOR) is None:
        pytest.fail("the aarch64 cross compiler and qemu-user are installed by scripts/setup.sh")
    (tmp_path / "sleeper.c").write_text("#include <unistd.h>\nint main(void) { sleep(300); return 0; }\n")
    program = tmp_path / "sleeper"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O1", "-o", str(program), str(tmp_path / "sleeper.c")], check=True)
    runs = tmp_path / "tmp"
    runs.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(runs))

    start = time.monotonic()
    with pytest.raises(DeviceError, match=r"sleeper did not finish within 1 s .*longer timeout"):
        qemu.run_user([program], cpu="cortex-a72", timeout=1)
    assert time.monotonic() - start < 10 and list(runs.iterdir()) == []

    def stop_when_started():
        while not _qemu_processes(program):
            time.sleep(0.05)
        time.sleep(0.2)
        devices.abandon()

    threading.Thread(target=stop_when_started, daemon=True).start()
    start = time.monotonic()
    result = qemu.run_user([program], cpu="cortex-a72", timeout=60)
    assert result.returncode == -signal.SIGKILL and time.monotonic() - start < 10
    assert list(runs.iterdir()) == [] and not [p for p in _qemu_processes(program) if p.status() != psutil.STATUS_ZOMBIE]


# ---------------------------------------------------------------- one runner, one lookup, one cache folder

def test_only_the_devices_layer_starts_programs():
    """Every program edgepack starts goes through edgepack.devices (its time limits, process groups and
    stop-signal cleanup): no other module may call subprocess itself."""
    package = Path(devices.__file__).parent.parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if "subprocess" in p.read_text() and p.parent.name != "devices"]
    assert offenders == []


@pytest.mark.parametrize("how, words", [
    (devices.DEBIAN, "on Debian/Ubuntu run `apt-get install pkg-x`"),
    (devices.SETUP, "apt-get install -y pkg-x (or run scripts/setup.sh)"),
])
def test_missing_tool_is_one_line_naming_its_package(how, words):
    with pytest.raises(ToolchainError) as e:
        devices.require("edgepack-no-such-tool", "pkg-x", how)
    assert str(e.value) == f"edgepack-no-such-tool is not installed: {words}"


def test_cache_folder_follows_edgepack_cache_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPACK_CACHE", str(tmp_path))
    assert devices.cache_dir() == tmp_path
    monkeypatch.delenv("EDGEPACK_CACHE")
    assert devices.cache_dir() == Path.home() / ".cache" / "edgepack"


def test_device_run_passes_files_in_and_out_and_removes_its_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    script = tmp_path / "copy.sh"
    script.write_text('#!/bin/sh\ncat "$1" "$1" > "$2"\necho done\n')
    script.chmod(0o755)
    ran = devices.NATIVE.run(script, ["in.bin", "out.bin"], inputs={"in.bin": b"ab"}, outputs=["out.bin", "none.bin"],
                             timeout=30, what="copy", fix="-")
    assert (ran.returncode, ran.stdout, ran.outputs) == (0, "done\n", {"out.bin": b"abab", "none.bin": None})
    assert ran.folder.parent == tmp_path and not ran.folder.exists() and list(tmp_path.iterdir()) == [script]


def test_emulated_device_wraps_the_program_and_a_booted_one_gets_no_arguments():
    user = devices.emulated("qemu-aarch64", "/usr/bin/qemu-aarch64")
    system = devices.emulated("m4", "/usr/bin/qemu-system-arm", "-M", "mps2-an386", "-semihosting", boots=True)
    assert user.command("/a/prog", ["in", "out"]) == ["/usr/bin/qemu-aarch64", "/a/prog", "in", "out"]
    assert system.command("/a/fw.elf", ["in", "out"]) == ["/usr/bin/qemu-system-arm", "-M", "mps2-an386", "-semihosting",
                                                           "-kernel", "/a/fw.elf"]


def test_background_program_is_stopped_with_its_children_and_by_abandon(tmp_path):
    pids = tmp_path / "pids"
    for end in (devices.stop, lambda proc: (devices.abandon(), proc.wait(10))):
        pids.unlink(missing_ok=True)
        proc = devices.start(["sh", "-c", f'sleep 300 & echo $! > "{pids}"; wait'])
        deadline = time.monotonic() + 10
        while (not pids.exists() or not pids.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        end(proc)
        time.sleep(0.2)
        assert proc.returncode == -signal.SIGKILL and not alive(int(pids.read_text()))
        devices.stop(proc)  # stopping twice is harmless
