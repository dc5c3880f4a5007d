"""A stop signal that lands while a device program is being started (after Popen, before its process group is
registered) must still end that program: the handler waits for the registration, then kills the group."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent("""
    import os, signal, subprocess, sys
    from edgepack import devices
    from edgepack.cli import main
    from edgepack.devices import process

    real_popen = subprocess.Popen

    class StoppedWhileStarting(real_popen):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            open(sys.argv[1], "w").write(str(self.pid))
            os.kill(os.getpid(), signal.SIGTERM)  # the stop arrives before run() registers the group

    process.subprocess.Popen = StoppedWhileStarting
    signal.signal(signal.SIGTERM, main._on_stop)
    devices.run(["sleep", "300"], timeout=60, what="sleep", fix="")
    print("run() returned: the stop was lost", flush=True)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_a_stop_during_a_program_start_ends_that_program(tmp_path):
    pid_file = tmp_path / "pid"
    done = subprocess.run([sys.executable, "-c", CHILD, str(pid_file)], capture_output=True, text=True, timeout=120)
    pid = int(pid_file.read_text())
    try:
        assert done.returncode == 143, done.stdout + done.stderr
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the program started as the stop arrived is still running"
    finally:
        if _alive(pid):
            os.kill(pid, 9)
