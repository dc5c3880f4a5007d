"""Reach: which converter-made int8 .tflite models `edgepack compile` accepts for a target (issue 21).

Builds the models of tests/converter_models.py (TensorFlow's TFLiteConverter, full-integer, one small Keras
model per feature), runs `edgepack compile --model FILE.tflite --target T` on each as a user would, and
prints one row per model: accepted or refused (exit 2, a one-line reason) or failed (any other exit: a bug),
the first line of stderr, and the compile's wall time. Ends with "N of M accepted".
    python benchmarks/reach.py [--target c-host] [--models DIR] [--eval-size 16]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/converter_models.py
from tests import converter_models  # noqa: E402

REFUSED = 2  # edgepack's exit code for bad input (edgepack.errors): the model is outside what it runs


def try_compile(source: Path, target: str, output: Path, eval_size: int) -> tuple[str, str, float]:
    """(outcome, first stderr line, seconds) of one `edgepack compile` in its own process."""
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "edgepack.cli.main", "compile", "--model", str(source), "--target",
                        target, "--eval-size", str(eval_size), "-o", str(output)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=1800)
    seconds = time.monotonic() - start
    first = next(iter(r.stderr.splitlines()), "")
    outcome = "accepted" if r.returncode == 0 else "refused" if r.returncode == REFUSED else f"failed ({r.returncode})"
    return outcome, first.removeprefix("edgepack compile: error: "), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="c-host", help="target name (see `edgepack targets`; default c-host)")
    ap.add_argument("--models", type=Path, help="folder for the .tflite files (default: a new temporary folder); "
                    "files already there are reused")
    ap.add_argument("--eval-size", type=int, default=16, help="eval images per compile (default 16)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgepack-reach-") as scratch:
        start = time.monotonic()
        models = converter_models.build(args.models or Path(scratch) / "models")
        print(f"built {len(models)} converter models in {time.monotonic() - start:.1f} s; target {args.target}\n")
        print("| model | feature | outcome | first reason | compile s |")
        print("|---|---|---|---|---:|")
        accepted = 0
        for name, source in models.items():
            outcome, reason, seconds = try_compile(source, args.target, Path(scratch) / "out" / name, args.eval_size)
            accepted += outcome == "accepted"
            reason = reason.replace(str(source), source.name) if outcome != "accepted" else "-"
            print(f"| {name} | {converter_models.MODELS[name]} | {outcome} | {reason} | {seconds:.1f} |", flush=True)
    print(f"\n{accepted} of {len(models)} accepted for {args.target}")


if __name__ == "__main__":
    main()
