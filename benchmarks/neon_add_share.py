"""What the residual adds cost in an rpi4 artifact (issue 13): qemu-aarch64 -cpu cortex-a72 instructions per
inference of its plan on the NEON kernels, as built and with every add kernel replaced by a no-op; the
difference is the adds' share, the most that fusing them into the projection convs' epilogue could save.
    edgepack compile --model mobilenet_v2 --alpha 0.35 --resolution 96 --checkpoint V2.pt --target rpi4 -o /tmp/v2
    python benchmarks/neon_add_share.py /tmp/v2
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from edgepack.backends.tvm import aarch64_neon
from edgepack.backends.tvm.runner import run_on_qemu
from edgepack.backends.tvm.lower import tvm_target
from edgepack.plan.plan import Plan
from edgepack.targets import get_target


def instructions_per_inference(library: Path, image: np.ndarray, classes: int) -> float:
    """As bench's cost figure: (run of 3 images - run of 1 image) / 2, one thread."""
    one, three = (run_on_qemu(library, "aarch64", "cortex-a72", np.repeat(image, n, 0), classes, threads=1, count=True)[1]
                  for n in (1, 3))
    return (three.instructions - one.instructions) / 2


def no_op_add(m: int, c: int, layer):
    from tvm.script import tirx as T

    @T.prim_func
    def add(a: T.Buffer((m, c), "int8"), b: T.Buffer((m, c), "int8"), out: T.Buffer((m, c), "int8")):
        T.evaluate(0)

    return add


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", type=Path, help="an rpi4 artifact of a residual model")
    args = ap.parse_args()
    from tvm.support.cc import cross_compiler

    plan = Plan.load(args.artifact)
    image = np.load(args.artifact / "golden_input.npy")[:1].astype(np.int8)
    classes, tgt = plan.layers[-1].output_shape[0], tvm_target(get_target("rpi4"))
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, add_func in (("with adds", aarch64_neon.add_func), ("adds as no-ops", no_op_add)):
            aarch64_neon.add_func = add_func
            library = Path(tmp) / f"{len(counts)}.so"
            aarch64_neon.build(plan, tgt).export_library(str(library), fcompile=cross_compiler("aarch64-linux-gnu-g++"))
            counts[name] = instructions_per_inference(library, image, classes)
    adds = [layer for layer in plan.layers if layer.kind == "add"]
    padded = sum(aarch64_neon.pad16(layer.output_shape[0]) * int(np.prod(layer.output_shape[1:])) for layer in adds)
    share = counts["with adds"] - counts["adds as no-ops"]
    print(f"instructions per inference: {counts['with adds']:.0f} with adds, {counts['adds as no-ops']:.0f} without; "
          f"{len(adds)} adds cost {share:.0f} ({100 * share / counts['with adds']:.2f}%), "
          f"{share / padded:.2f} per (channel-padded) element")


if __name__ == "__main__":
    main()
