"""Every command README.md and docs/*.md (ci.md, backends.md) show in a shell block is RUN, in order per
file, in a temporary working folder (so `-o artifacts/X` then `bench artifacts/X` chain, and
`--update-baseline benchmarks/baselines/X.json` writes the temporary folder's file that a later `--baseline`
reads, never the repository's). A command that exits non-zero fails the test naming FILE:LINE, the command
and its stderr.

Sizes: with EDGEPACK_DOCS_SHORT=1 (the default here; EDGEPACK_DOCS_SHORT=0 runs the documented sizes, hours)
the test rewrites the documented words of the commands that build a model; the product has no test switch:

| command | flag | short value | added when absent |
|---|---|---|---|
| compile, sweep, tune | `--alpha` (any list) | 0.5 (shipped weights for mobilenet_v1 and _v2) | yes |
| compile, sweep, tune | `--resolution` (any list) | 32 (the smallest legal) | yes |
| compile, sweep | `--eval-size`, `--calib-size` | 8 | yes |
| tune (listed in NOT_RUN) | `--trials` | 2 | no |

`--alpha` stays as documented in a command that passes `--checkpoint` (the checkpoint fixes the width).

Every other command runs verbatim (bench and debug read the 8 eval / calibration images the compile kept).
Always, size switch or not: `python`/`python3` is this interpreter; an absolute `/tmp/X` output is moved
into the temporary folder; the RPC tracker and server listen on 127.0.0.1 (`TRACKER`, `ci-host` and
`0.0.0.0` become 127.0.0.1, `--host 127.0.0.1` added), the tracker on a free port instead of 9190
(`--port-end` added); tuning records go to a temporary EDGEPACK_TUNING_DIR. A python block that opens with
`# NAME.py` is written to NAME.py first (README's mynet.py), and `v2.pt` (a user's MobileNetV2 0.35
checkpoint) is written from the shipped weights. A command identical (after the rewrite) to one that ran
earlier in the same doc is not run twice. NOT_RUN lists what cannot run here, with the reason; a command
that is neither run nor listed fails the fast test below.

Measured 2026-12-07 on the 2-core machine while other test suites ran (load average about 10): README.md 18.5
min (its rpi4 compile alone 241 s; 32 s on a quieter machine), docs/ci.md 4.1 min, docs/backends.md 34 s.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.doc_commands import DOCS, REPO, fenced_commands, python_file_blocks, simple_commands_with_env

RUN_DOCS = [str(d.relative_to(REPO)) for d in DOCS if fenced_commands(d.read_text())]  # README, docs/ci.md, ...
SHORT = os.environ.get("EDGEPACK_DOCS_SHORT", "1") != "0"
SHORT_VALUES = {"--alpha": "0.5", "--resolution": "32", "--eval-size": "8", "--calib-size": "8", "--trials": "2"}
SHORT_FLAGS = {"compile": ("--alpha", "--resolution", "--eval-size", "--calib-size"),
               "sweep": ("--alpha", "--resolution", "--eval-size", "--calib-size"),
               "tune": ("--alpha", "--resolution", "--trials")}
NOT_RUN = [  # (pattern on the command's words, why it cannot run inside this test)
    (r"bash scripts/setup\.sh", "installs Debian packages as root: CI ran it before the tests"),
    (r"python3? -m pytest", "the test suite itself: running it from one of its tests recurses"),
    (r"make flash", "flashes the reader's own firmware onto a board"),
    (r"pip ", "installs packages into the environment the tests run in"),
    (r"(\w+=\w+ )?bash scripts/ci_gate\.sh .*--update-baseline", "rewrites the repository's committed "
     "benchmarks/baselines/x86-tvm-0.25-64-*.json (the script cd's to the repository); .ci/run runs "
     "scripts/ci_gate.sh, the gating form, on every CI run"),
    (r"edgepack tune ", "MetaSchedule takes minutes even at --trials 2 (over 10 min on this 2-core machine): the "
     "same command, on mobilenet_v2 0.35-32, runs in tests/e2e/test_tvm_backend.py::test_tune_mobilenet_v2_then_"
     "a_generic_compile_uses_the_records_bit_exact, which also compiles from its records"),
    (r"edgepack bench .*--rpc ", "the rpi4 artifact's aarch64 library loads only on an aarch64 board's server; "
     "the tracker and server commands run here, and an x86 artifact over loopback RPC is scripts/ci_gate.sh"),
]
RPC = re.compile(r"python3? -m tvm\.exec\.(rpc_tracker|rpc_server)\b")


def steps(doc: str) -> list[tuple[str, dict, list[str], str | None]]:
    """(where, env, words, reason not run or None) for every simple command of ``doc``'s shell blocks."""
    out = []
    for number, line in fenced_commands((REPO / doc).read_text()):
        for env, words in simple_commands_with_env(line):
            text = " ".join([*(f"{k}={v}" for k, v in env.items()), *words])
            reason = next((why for pattern, why in NOT_RUN if re.match(pattern, text)), None)
            out.append((f"{doc}:{number}", env, words, reason))
    return out


def runnable(words: list[str]) -> bool:
    return words[0] == "edgepack" or bool(RPC.match(" ".join(words)))


def test_every_documented_command_is_run_or_listed_with_a_reason():
    """A new kind of command in a doc must be taught to the runner below or listed in NOT_RUN with why."""
    unknown = [f"{where}: `{shlex.join(words)}`" for doc in RUN_DOCS for where, _, words, reason in steps(doc)
               if reason is None and not runnable(words)]
    assert not unknown, "neither run nor listed in NOT_RUN:\n" + "\n".join(unknown)
    assert sum(runnable(w) and r is None for doc in RUN_DOCS for _, _, w, r in steps(doc)) >= 20


def short(words: list[str]) -> list[str]:
    """The SHORT_VALUES rewrite of one edgepack command (see the module docstring's table)."""
    flags = SHORT_FLAGS.get(words[1], ()) if SHORT and len(words) > 1 else ()
    flags = tuple(f for f in flags if not (f == "--alpha" and "--checkpoint" in words))  # its weights' width
    out, i = list(words), 2
    while i < len(out):
        if out[i] in flags and i + 1 < len(out):
            out[i + 1] = SHORT_VALUES[out[i]]
        i += 1
    return out + [w for f in flags if f not in out and f != "--trials" for w in (f, SHORT_VALUES[f])]


def in_folder(words: list[str], folder: Path) -> list[str]:
    """An absolute /tmp/ path (README's `-o /tmp/sweep`) moved into the test's folder."""
    return [str(folder / w[len("/tmp/"):]) if w.startswith("/tmp/") else w for w in words]


class Rpc:
    """The documented tracker and server commands, run for real on 127.0.0.1 with a free port."""

    def __init__(self):
        from edgepack.backends.tvm.rpc_local import free_port

        self.port, self.procs = free_port(), []

    def argv(self, words: list[str]) -> list[str]:
        text = " ".join(words).replace("0.0.0.0", "127.0.0.1")
        text = re.sub(r"\b(TRACKER|ci-host):9190\b", f"127.0.0.1:{self.port}", text).replace("9190", str(self.port))
        argv = [sys.executable, *text.split()[1:]] + ([] if "--host" in text else ["--host", "127.0.0.1"])
        return argv + (["--port-end", str(self.port + 1)] if "rpc_tracker" in text else [])  # default end: 9199

    def start(self, where: str, words: list[str]) -> None:
        from edgepack import devices
        from edgepack.backends.tvm.rpc_local import wait_port, wait_registered

        proc = devices.start(self.argv(words))
        self.procs.append(proc)
        if "rpc_tracker" in words[2]:
            wait_port(self.port, proc)
            return
        try:
            wait_registered("127.0.0.1", self.port, words[words.index("--key") + 1], [proc])
        except (RuntimeError, TimeoutError) as e:
            pytest.fail(f"{where}: {e}")

    def stop(self) -> None:
        from edgepack import devices

        for proc in reversed(self.procs):
            devices.stop(proc)


def write_inputs(doc: str, folder: Path) -> None:
    """The files the doc's commands read that a reader would have: its `# NAME.py` blocks, v2.pt."""
    for name, text in python_file_blocks((REPO / doc).read_text()).items():
        (folder / name).write_text(text)
    if "--checkpoint v2.pt" in (REPO / doc).read_text():
        import torch

        from edgepack.model.weights import pretrained

        torch.save(pretrained(0.35, 32, model="mobilenet_v2").state_dict(), folder / "v2.pt")


def run_edgepack(where: str, env: dict, argv: list[str], words: list[str], folder: Path) -> float:
    exe = shutil.which("edgepack")
    assert exe, "the edgepack command is not on PATH: pip install -e ."
    start = time.monotonic()
    p = subprocess.run([exe, *argv[1:]], cwd=folder, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=900, env={**os.environ, "EDGEPACK_TUNING_DIR": str(folder / "tuning"), **env})
    shown = "" if argv == words else f" (run as `{shlex.join(argv)}`)"
    assert p.returncode == 0, (f"{where}: `{shlex.join(words)}`{shown} exited {p.returncode}; stderr:\n"
                               f"{p.stderr[-4000:]}\nstdout (end):\n{p.stdout[-1500:]}")
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("doc", RUN_DOCS)
def test_every_documented_command_runs(doc, tmp_path):
    """Each doc's commands run in order; the log printed at the end says what ran (seconds) and what not, why."""
    write_inputs(doc, tmp_path)
    rpc, done, log = Rpc(), {}, []
    try:
        for where, env, words, reason in steps(doc):
            argv = in_folder(short(words), tmp_path) if words[0] == "edgepack" else words
            key = (tuple(argv), tuple(sorted(env.items())))
            shown = shlex.join([*(f"{k}={v}" for k, v in env.items()), *words])
            if reason or key in done:
                log.append(f"not run  {where}: {shown}: {reason or 'the same command ran at ' + done[key]}")
            elif words[0] == "edgepack":
                log.append(f"{run_edgepack(where, env, argv, words, tmp_path):6.1f} s  {where}: {shlex.join(argv)}")
            else:
                rpc.start(where, words)
                log.append(f"started  {where}: {shlex.join(rpc.argv(words))}")
            done.setdefault(key, where)
    finally:
        rpc.stop()
        print("\n".join(log))
