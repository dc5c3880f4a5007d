"""LiteRT against edgepack's int8 reference on the whole digits eval split, per alpha (issue 14).

For each width: the shipped weights, BatchNorm folded, PTQ per-channel on the calibration split, the plan,
its model.tflite (edgepack/interop/tflite_export.py). Then every eval image runs through edgepack's numpy
reference, LiteRT's reference kernels (BUILTIN_REF) and LiteRT's default CPU path (XNNPACK, which requantizes
in float). The reference kernels must agree bit for bit; for XNNPACK the table counts the int8 logits that
differ, by how much, and the images whose top-1 changes.
    python benchmarks/tflite_agreement.py [--model mobilenet_v2] [--resolution 224] [--alpha 1 0.75 0.5 0.25] [--images N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from edgepack.data import load_digits_split
from edgepack.fold import fold
from edgepack.interop import litert
from edgepack.interop.tflite_export import plan_to_tflite
from edgepack.model.weights import pretrained
from edgepack.plan import reference
from edgepack.frontends.pt2e_plan import build_plan
from edgepack.quantize.ptq import quantize_ptq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenet_v1", help="mobilenet_v1 (default) or mobilenet_v2 (shipped weights)")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--alpha", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    ap.add_argument("--images", type=int, default=None, help="first N eval images (default: the whole split)")
    args = ap.parse_args()
    r, shape = args.resolution, (3, args.resolution, args.resolution)
    calibration, evaluation = load_digits_split("calibration", r), load_digits_split("eval", r).take(args.images)
    print(f"{args.model}, digits eval split: {len(evaluation)} images at {r}x{r}; LiteRT {litert.version()}")
    print("| alpha | images | reference kernels: values differing | XNNPACK: values differing | of values "
          "| max abs diff | top-1 changed | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for alpha in args.alpha:
        t = time.perf_counter()
        plan = build_plan(quantize_ptq(fold(pretrained(alpha, r, model=args.model)), calibration, shape), shape)
        model = plan_to_tflite(plan)
        x = plan.input_q.quantize(evaluation.images)
        want = reference.run_batched(plan, x)
        ref = litert.run_reference(model, x)
        xnn = litert.run_xnnpack(model, x)
        diff = np.abs(xnn.astype(np.int32) - want.astype(np.int32))
        top1 = int((xnn.argmax(1) != want.argmax(1)).sum())
        print(f"| {alpha:g} | {len(x)} | {int((ref != want).sum())} | {int((diff > 0).sum())} | {want.size} "
              f"| {int(diff.max())} | {top1} | {time.perf_counter() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
