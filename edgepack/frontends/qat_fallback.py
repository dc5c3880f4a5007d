"""QAT's safety net: a QAT compile also makes the PTQ plan (the same cross-layer equalization, PTQ's histogram
calibration) and ships QAT's plan only when it gets more CALIBRATION images right, measured on the int8
reference (what every device runs bit for bit), not on torch's fake-quant graph; else PTQ's.

Why: on the digits, PTQ with CLE is already within about a point of fp32 on every shipped width, and QAT models
that tied PTQ on the 180 calibration images scored up to 5 of 360 eval images lower (MobileNetV2 0.35-224:
96.94% vs 98.33%; 0.75-96: 97.50% vs 97.78%). A tie is no evidence that fine-tuning helped, so the plan that
needs no training keeps it. The eval images stay out of the choice, as in --calibration-method auto
(frontends.calibration_search).
"""
from __future__ import annotations

from edgepack.data import Dataset
from edgepack.evaluate import accuracy
from edgepack.plan import reference
from edgepack.plan.plan import Plan

MIN_GAIN_IMAGES = 1  # QAT must win: a tie is no evidence that fine-tuning helped
RULE = "QAT's plan kept only when it gets more calibration images right than PTQ's (int8 reference); else PTQ's"


def int8_accuracy(plan: Plan, data: Dataset) -> float:
    """Top-1 accuracy of the int8 reference running ``plan`` on labelled ``data``."""
    return accuracy(reference.run_batched(plan, plan.input_q.quantize(data.images)), data.labels)


def choose(qat_plan: Plan, ptq_plan: Plan, calibration: Dataset) -> tuple[bool, dict]:
    """(keep QAT's plan?, the manifest's record of the comparison)."""
    qat, ptq = int8_accuracy(qat_plan, calibration), int8_accuracy(ptq_plan, calibration)
    gain = round((qat - ptq) * len(calibration))
    keep_qat = gain >= MIN_GAIN_IMAGES
    return keep_qat, {"kept": "qat" if keep_qat else "ptq", "qat_calibration_accuracy": round(qat, 4),
                      "ptq_calibration_accuracy": round(ptq, 4), "gain_images": gain, "images": len(calibration),
                      "rule": RULE}


def describe(record: dict) -> str:
    """The compile's one log line about the choice."""
    figures = (f"int8 on {record['images']} calibration images: QAT {record['qat_calibration_accuracy']:.1%}, "
               f"PTQ {record['ptq_calibration_accuracy']:.1%}")
    if record["kept"] == "qat":
        return f"QAT kept ({figures})"
    return f"QAT did not beat PTQ, so the artifact holds PTQ's plan ({figures}; the manifest's quantization.qat_fallback)"
