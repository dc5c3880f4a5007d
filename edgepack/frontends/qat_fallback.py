"""QAT's safety net: a QAT compile also makes the PTQ plan (the same cross-layer equalization, PTQ's histogram
calibration) and keeps QAT's plan only when it is strictly more accurate on the CALIBRATION split, measured on the
int8 reference (what every device runs bit for bit), not on torch's fake-quant graph.

Why: on the digits at 224, QAT's best epoch can tie PTQ on the 180 calibration images and still score 5 eval
images lower (MobileNetV2 0.35); a tie is no evidence that fine-tuning helped, so the plan that needs no training
wins it. The eval images stay out of the choice, as in --calibration-method auto (frontends.calibration_search).
"""
from __future__ import annotations

from edgepack.data import Dataset
from edgepack.evaluate import accuracy
from edgepack.plan import reference
from edgepack.plan.plan import Plan

RULE = "QAT's plan kept only when its int8 accuracy on the calibration split beats PTQ's (a tie keeps PTQ)"


def int8_accuracy(plan: Plan, data: Dataset) -> float:
    """Top-1 accuracy of the int8 reference running ``plan`` on ``data``."""
    return accuracy(reference.run_batched(plan, plan.input_q.quantize(data.images)), data.labels)


def choose(qat_plan: Plan, ptq_plan: Plan, calibration: Dataset) -> tuple[bool, dict]:
    """(keep QAT's plan?, the manifest's record of the comparison)."""
    qat, ptq = int8_accuracy(qat_plan, calibration), int8_accuracy(ptq_plan, calibration)
    keep_qat = qat > ptq
    return keep_qat, {"kept": "qat" if keep_qat else "ptq", "qat_calibration_accuracy": round(qat, 4),
                      "ptq_calibration_accuracy": round(ptq, 4), "images": len(calibration), "rule": RULE}


def describe(record: dict) -> str:
    """The compile's one log line about the choice."""
    figures = (f"int8 on {record['images']} calibration images: QAT {record['qat_calibration_accuracy']:.1%}, "
               f"PTQ {record['ptq_calibration_accuracy']:.1%}")
    if record["kept"] == "qat":
        return f"QAT kept ({figures})"
    return f"QAT did not beat PTQ, so the artifact holds PTQ's plan ({figures}; the manifest's quantization.qat_fallback)"
