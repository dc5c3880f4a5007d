"""fp32 vs int8 accuracy per shipped width on the digits eval split: PTQ without and with cross-layer
equalization (CLE), and QAT (the recipe of edgepack.quantize.qat), at one weight granularity.

PTQ columns come from ``edgepack.frontends.torch.to_plan``, the compile's own fold -> (equalize) -> PTQ -> plan
(histogram activation calibration, no bias correction: the compile's defaults). int8 figures are the numpy
integer reference running the plan (what every integer backend reproduces bit for bit). QAT keeps the epoch
best on the calibration split (never the eval split); the table says which, and which plan a QAT compile keeps
(edgepack.frontends.qat_fallback: QAT's only when strictly better than PTQ+CLE's on the calibration split).
    python benchmarks/accuracy_table.py [--model mobilenet_v1|mobilenet_v2] [--resolution 96] [--alpha 1 0.5]
        [--weight-granularity per-channel|per-tensor] [--qat-epochs 4] [--lr 1e-3] [--seed 0]
"""
from __future__ import annotations

import argparse
import time

from edgepack.config import CompileConfig
from edgepack.data import load_digits_split
from edgepack.evaluate import accuracy, torch_logits
from edgepack.fold import fold
from edgepack.frontends import qat_fallback
from edgepack.frontends.pt2e_plan import build_plan
from edgepack.frontends.torch import to_plan
from edgepack.model.builtin import shipped_alphas
from edgepack.model.weights import pretrained
from edgepack.quantize.qat import DEFAULT_EPOCHS, DEFAULT_LR, quantize_qat
from edgepack.quantize.quantizer import WeightGranularity


def ptq_plan(model, data, args, equalize: bool):
    config = CompileConfig(alpha=args.alpha_now, resolution=args.resolution, architecture=args.model,
                           weight_granularity=args.weight_granularity, equalize=equalize)
    return to_plan(model, data["calibration"], config)


def row(alpha: float, data, args) -> str:
    args.alpha_now = alpha
    shape = (3, args.resolution, args.resolution)
    model = pretrained(alpha, args.resolution, model=args.model)
    fp32 = accuracy(torch_logits(fold(model), data["eval"].images), data["eval"].labels)
    cle_plan = ptq_plan(model, data, args, True)
    plain = qat_fallback.int8_accuracy(ptq_plan(model, data, args, False), data["eval"])
    cle = qat_fallback.int8_accuracy(cle_plan, data["eval"])
    t, record = time.perf_counter(), {}
    qat, _ = quantize_qat(model, data["train"], data["calibration"], shape, epochs=args.qat_epochs,
                          granularity=WeightGranularity(args.weight_granularity), lr=args.lr, seed=args.seed,
                          record=record)
    qat_plan, qat_s = build_plan(qat, shape), time.perf_counter() - t
    qat_acc = qat_fallback.int8_accuracy(qat_plan, data["eval"])
    keep_qat, choice = qat_fallback.choose(qat_plan, cle_plan, data["calibration"])  # what the compile keeps
    kept = (f"QAT {qat_acc:.2%}" if keep_qat else f"PTQ {cle:.2%}") + (
        f" ({choice['qat_calibration_accuracy']:.1%} vs {choice['ptq_calibration_accuracy']:.1%})")
    calib = " ".join(f"{a:.1%}" for a in record["calibration_accuracy_by_epoch"])
    return (f"| {alpha:g} | {fp32:.2%} | {plain:.2%} | {cle:.2%} | {qat_acc:.2%} | {qat_acc - max(plain, cle):+.2%} "
            f"| {record['kept_epoch']} ({calib}) | {kept} | {qat_s:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenet_v1", help="mobilenet_v1 (default) or mobilenet_v2 (shipped weights)")
    ap.add_argument("--resolution", type=int, default=96)
    ap.add_argument("--alpha", type=float, nargs="+", default=None, help="default: every shipped width")
    ap.add_argument("--weight-granularity", default="per-channel", choices=["per-channel", "per-tensor"])
    ap.add_argument("--qat-epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--lr", type=float, default=DEFAULT_LR, help="QAT base learning rate (cosine decay)")
    ap.add_argument("--seed", type=int, default=0, help="QAT shuffling and initialisation")
    args = ap.parse_args()
    r = args.resolution
    data = {s: load_digits_split(s, r) for s in ("train", "calibration", "eval")}
    print(f"{args.model}, {args.weight_granularity} weights, resolution {r}: digits eval split ({len(data['eval'])} "
          f"images), calibration {len(data['calibration'])}, QAT train {len(data['train'])} images, "
          f"{args.qat_epochs} epochs, lr {args.lr:g}, seed {args.seed}")
    print("| alpha | fp32 | PTQ (no CLE) | PTQ+CLE | QAT | QAT - best PTQ | QAT kept epoch (calibration acc. by epoch) "
          "| compile --quant qat keeps (int8 calibration acc. QAT vs PTQ) | QAT time s |")
    print("|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for alpha in args.alpha or sorted(shipped_alphas(args.model)):
        print(row(alpha, data, args), flush=True)


if __name__ == "__main__":
    main()
