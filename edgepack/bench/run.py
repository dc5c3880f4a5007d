"""bench: verify an artifact, then check golden outputs, eval accuracy, fidelity and latency on its device."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepack.artifact import verify
from edgepack.backends import backend_module
from edgepack.bench.measure import latency_stats
from edgepack.data import load_dataset
from edgepack.evaluate import accuracy, agreement, max_abs_diff, sqnr_db
from edgepack.plan import reference
from edgepack.plan.plan import Plan

MIN_AGREEMENT = 0.99


@dataclass
class Check:
    name: str
    passed: bool
    value: object
    expected: str

    def to_json(self) -> dict:
        return {"name": self.name, "passed": self.passed, "value": self.value, "expected": self.expected}


def eval_set(manifest: dict, eval_size: int | None):
    model, ev = manifest["model"], manifest["eval"]
    spec = ev.get("spec")
    n = ev["images"] if eval_size is None else min(eval_size, ev["images"])
    return load_dataset(spec, "eval", model["resolution"], model["classes"]).take(n)


def bench_artifact(artifact, eval_size: int | None = None, count: int = 50, warmup: int = 5) -> dict:
    folder = Path(artifact)
    manifest = verify(folder)
    backend = backend_module(manifest["backend"])
    runner = backend.Runner(folder, manifest)
    checks: list[Check] = []
    golden_x, golden_y = np.load(folder / "golden_input.npy"), np.load(folder / "golden_output.npy")
    plan = Plan.load(folder) if manifest.get("plan") else None
    data = eval_set(manifest, eval_size)
    report: dict = {"artifact": str(folder), "target": manifest["target"]["name"], "backend": manifest["backend"],
                    "device": getattr(runner, "device", "host"), "eval_images": len(data)}

    if plan is not None:
        ref_golden = reference.run(plan, golden_x)
        checks.append(Check("golden: reference == recorded output", bool(np.array_equal(ref_golden, golden_y)),
                            int(np.count_nonzero(ref_golden != golden_y)), "0 differing values"))
        ref = plan.output_q.dequantize(reference.run_batched(plan, plan.input_q.quantize(data.images)))
    else:
        ref = None
    logits = runner.logits(data.images)
    acc = accuracy(logits, data.labels)
    report["accuracy"] = acc
    expected_acc = manifest["metrics"].get("int8_onnxruntime_accuracy" if plan else "fp32_accuracy")
    if eval_size is None and expected_acc is not None:
        checks.append(Check("accuracy equals compile-time figure", abs(acc - expected_acc) < 1e-9, acc, f"{expected_acc:.4f}"))
    if ref is not None:
        agree = agreement(logits, ref)
        report["fidelity"] = {"top1_agreement_vs_reference": agree, "max_abs_logit_diff_vs_reference": max_abs_diff(logits, ref)}
        checks.append(Check("top-1 agreement with reference", agree >= MIN_AGREEMENT, agree, f">= {MIN_AGREEMENT}"))
    from edgepack.evaluate import torch_logits  # fidelity against the fp32 model the artifact came from
    fp32_acc = manifest["metrics"]["fp32_accuracy"]
    report["fp32_accuracy_at_compile"] = fp32_acc
    if plan is not None:
        report["fidelity"]["sqnr_db_vs_fp32_at_compile"] = manifest["metrics"]["int8_vs_fp32"]["sqnr_db"]
    report["latency"] = latency_stats(runner.time_one(data.images[0]), warmup=warmup, count=count)
    report["checks"] = [c.to_json() for c in checks]
    report["passed"] = all(c.passed for c in checks)
    return report


def format_report(r: dict) -> str:
    lines = [f"artifact {r['artifact']}  target {r['target']}  backend {r['backend']}  device {r['device']}",
             f"accuracy {r['accuracy']:.2%} on {r['eval_images']} eval images (fp32 at compile {r['fp32_accuracy_at_compile']:.2%})"]
    if "fidelity" in r:
        f = r["fidelity"]
        lines.append(f"fidelity: top-1 agreement with int8 reference {f['top1_agreement_vs_reference']:.2%}, "
                     f"max |logit diff| {f['max_abs_logit_diff_vs_reference']:.4g}")
    lat = r["latency"]
    lines.append(f"latency (batch 1, {lat['count']} runs): median {lat['median_ms']:.3f} ms  mean {lat['mean_ms']:.3f}  "
                 f"min {lat['min_ms']:.3f}  max {lat['max_ms']:.3f}  p90 {lat['p90_ms']:.3f}  "
                 f"throughput {lat['throughput_fps']:.1f} fps  first {lat['first_inference_ms']:.2f} ms")
    for c in r["checks"]:
        lines.append(f"  [{'PASS' if c['passed'] else 'FAIL'}] {c['name']}: {c['value']} (expected {c['expected']})")
    lines.append("result: " + ("PASS" if r["passed"] else "FAIL"))
    return "\n".join(lines)
