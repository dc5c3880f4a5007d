"""fp32 vs int8 accuracy per alpha on the digits eval split: PTQ per-channel, PTQ per-tensor, QAT.

int8 figures are the numpy integer reference running the plan (what every integer backend
reproduces bit for bit).
    python benchmarks/accuracy_table.py [--model mobilenet_v1|mobilenet_v2] [--resolution 128] [--alpha 1 0.75 0.5 0.25] [--qat-epochs 1]
"""
from __future__ import annotations

import argparse
import time

from edgepack.data import load_digits_split
from edgepack.evaluate import accuracy, torch_logits
from edgepack.fold import fold
from edgepack.model.weights import pretrained
from edgepack.plan import reference
from edgepack.frontends.pt2e_plan import build_plan
from edgepack.quantize.ptq import quantize_ptq
from edgepack.quantize.qat import quantize_qat
from edgepack.quantize.quantizer import WeightGranularity


def int8_accuracy(converted, shape, data) -> float:
    plan = build_plan(converted, shape)
    return accuracy(reference.run_batched(plan, plan.input_q.quantize(data.images)), data.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenet_v1", help="mobilenet_v1 (default) or mobilenet_v2 (shipped weights)")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--alpha", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.25])
    ap.add_argument("--qat-epochs", type=int, default=1)
    args = ap.parse_args()
    r = args.resolution
    shape = (3, r, r)
    data = {s: load_digits_split(s, r) for s in ("train", "calibration", "eval")}
    print(f"{args.model}: digits eval split ({len(data['eval'])} images), resolution {r}, calibration {len(data['calibration'])} images")
    print("| alpha | fp32 | PTQ per-channel | PTQ per-tensor | QAT per-channel | QAT time s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for alpha in args.alpha:
        model = pretrained(alpha, r, model=args.model)
        folded = fold(model)
        fp32 = accuracy(torch_logits(folded, data["eval"].images), data["eval"].labels)
        pc = int8_accuracy(quantize_ptq(folded, data["calibration"], shape), shape, data["eval"])
        pt = int8_accuracy(quantize_ptq(folded, data["calibration"], shape, WeightGranularity.PER_TENSOR), shape, data["eval"])
        t = time.perf_counter()
        qat, _ = quantize_qat(model, data["train"], data["calibration"], shape, epochs=args.qat_epochs)
        qat_acc, qat_s = int8_accuracy(qat, shape, data["eval"]), time.perf_counter() - t
        print(f"| {alpha:g} | {fp32:.2%} | {pc:.2%} | {pt:.2%} | {qat_acc:.2%} | {qat_s:.0f} |", flush=True)


if __name__ == "__main__":
    main()
