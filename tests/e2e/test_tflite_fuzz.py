""".tflite fuzzing: seeded mutations (bit flips, truncations, field edits through the tflite schema, see
tests/tflite_mutations.py) of a small model edgepack writes and of converter-style models. Each one is
imported, or refused with an EdgepackError of exit code 2 and a one-line message naming the file; never
another exception, never a hang. In process for the many (import, plan checks, LiteRT's load, one
reference inference, each bounded by an alarm), and a dozen through the real CLI as processes."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np
import pytest

from edgepack.errors import EdgepackError
from edgepack.interop.tflite_import import read_tflite
from edgepack.plan import reference
from tests.tflite_mutations import converter_like, mutations

pytestmark = pytest.mark.slow  # the mutated files are made from a compiled artifact's model.tflite

SMALL = ["--alpha", "0.25", "--resolution", "32", "--eval-size", "16", "--calib-size", "16"]
COUNTS = {"edgepack": 200, "converter": 200, "converter_float_io": 150}  # 550 in-process mutations
CASE_SECONDS = 10  # per in-process mutation; a CLI run gets 30 s
SEEDS = {"edgepack": 190, "converter": 191, "converter_float_io": 192}  # in process
CLI_SEEDS = {"edgepack": 200, "converter": 203, "converter_float_io": 202}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, bytes]:
    """model.tflite of a tiny c-host artifact (edgepack's exporter: PAD, int16 pool, CONV_2D classifier), and a
    converter-style MobileNet with int8 and with float32 interfaces (MEAN, RESHAPE, FULLY_CONNECTED, SOFTMAX)."""
    out = tmp_path_factory.mktemp("fuzz") / "art"
    r = subprocess.run([sys.executable, "-m", "edgepack.cli.main", "compile", "--target", "c-host", *SMALL, "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return {"edgepack": (out / "model.tflite").read_bytes(), "converter": converter_like(),
            "converter_float_io": converter_like(float_io=True)}


class _Timeout(BaseException):
    """Not an Exception: nothing under test can swallow it."""


@contextlib.contextmanager
def _deadline(seconds: int):
    def expire(signum, frame):
        raise _Timeout(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _outcome(path) -> str | None:
    """None when the file imports and its plan runs one image, or the refusal is a proper one; else what went wrong."""
    try:
        with _deadline(CASE_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("error")  # a RuntimeWarning (NaN, overflow) is a silent wrong result
            imported = read_tflite(path)
            x = np.random.default_rng(0).integers(-128, 128, (1, *imported.plan.input_shape)).astype(np.int8)
            logits = reference.run(imported.plan, x)
        if logits.shape != (1, imported.classes):
            return f"logits of shape {logits.shape} for {imported.classes} classes"
    except EdgepackError as e:
        message = str(e)
        if e.exit_code != 2 or "\n" in message or path.name not in message:
            return f"{type(e).__name__} exit {e.exit_code}: {message!r}"
    except (Exception, _Timeout) as e:
        frame = traceback.extract_tb(e.__traceback__)[-1]
        return f"{type(e).__name__} at {frame.filename}:{frame.lineno}: {e}"
    return None


@pytest.mark.parametrize("source", COUNTS)
def test_mutated_tflite_imports_or_is_refused_in_one_line(sources, source, tmp_path):
    failures, refused, started = [], 0, time.monotonic()
    for k, (what, data) in enumerate(mutations(sources[source], SEEDS[source], COUNTS[source])):
        path = tmp_path / f"{source}-{k}.tflite"
        path.write_bytes(data)
        wrong = _outcome(path)
        if wrong is not None:
            failures.append(f"{source} mutation {k} ({what}): {wrong}")
        try:
            read_tflite(path)
        except EdgepackError:
            refused += 1
        path.unlink()
    assert not failures, f"{len(failures)} of {COUNTS[source]} mutations:\n" + "\n".join(failures[:20])
    assert 0.2 < refused / COUNTS[source] < 0.9  # the mutations reach both outcomes: the test sees the checks work
    assert time.monotonic() - started < 60


CLI_MUTATIONS = 4  # per source: 12 compiles as a user would run them


@pytest.mark.parametrize("source", COUNTS)
def test_mutated_tflite_compile_exits_0_or_2(sources, source, tmp_path):
    """The whole compile (import, LiteRT's check, lowering, the C build) on mutated files: exit 0 with an
    artifact, or exit 2 with one stderr line and nothing written; within 30 s, never 3, never a signal."""
    codes = []
    for k, (what, data) in enumerate(mutations(sources[source], CLI_SEEDS[source], CLI_MUTATIONS)):
        model, out = tmp_path / f"m{k}.tflite", tmp_path / f"out{k}"
        model.write_bytes(data)
        r = subprocess.run([sys.executable, "-m", "edgepack.cli.main", "compile", "--model", str(model), "--target",
                            "c-host", "--eval-size", "8", "-o", str(out)], capture_output=True, text=True, timeout=30)
        codes.append(r.returncode)
        assert r.returncode in (0, 2), f"mutation {k} ({what}): exit {r.returncode}\n{r.stderr}"
        if r.returncode == 2:
            assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("edgepack compile: error: "), r.stderr
            assert not out.exists(), f"mutation {k} ({what}) left {out}"
        else:
            assert r.stderr == "" and (out / "manifest.json").is_file(), r.stderr
    assert set(codes) == {0, 2}, codes  # the sample reaches both outcomes
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("out")) == \
        [f"m{k}.tflite" for k in range(CLI_MUTATIONS)]  # no lock or partial folder left beside the outputs
