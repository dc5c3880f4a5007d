"""scripts/setup.sh's own command lines, run as it runs them (with the step swapped for a wrong one, so nothing is
fetched): the TVM runtime step must not trip runpy's "found in sys.modules" warning (the tvm package imports
toolchain first, so `python -m ...toolchain` ran a second copy of the module)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

SETUP = Path(__file__).resolve().parents[2] / "scripts" / "setup.sh"


def test_setup_runs_the_tvm_runtime_fetch_without_a_runpy_warning():
    line = next(ln for ln in SETUP.read_text().splitlines() if "tvm.toolchain" in ln and not ln.startswith("#"))
    command = line.replace(">/dev/null", "").replace("fetch", "no-such-step")
    assert command != line.replace(">/dev/null", "")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "error"}, cwd=SETUP.parents[1])
    assert done.returncode == 1 and "Warning" not in done.stderr
    assert done.stderr.strip().startswith("usage:")
