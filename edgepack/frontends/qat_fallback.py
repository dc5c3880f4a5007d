"""QAT's safety net: a QAT compile also makes the PTQ plan (the same cross-layer equalization, PTQ's histogram
calibration) and keeps it instead of QAT's when it is strictly more accurate on the CALIBRATION split, measured
on the int8 reference (what every device runs bit for bit), not on torch's fake-quant graph.

Why: QAT starts from PTQ's model (edgepack.quantize.qat) and keeps its best epoch on the same split, so QAT's plan
falls below PTQ's there only if the fake-quant graph and the int8 plan part ways; the net catches that without
second-guessing a tie (the user asked for QAT). The eval images stay out of the choice, as in
--calibration-method auto (frontends.calibration_search).
"""
from __future__ import annotations

from edgepack.data import Dataset
from edgepack.evaluate import accuracy
from edgepack.plan import reference
from edgepack.plan.plan import Plan

RULE = "QAT's plan kept unless PTQ's is strictly more accurate on the calibration split (int8 reference; a tie keeps QAT)"


def int8_accuracy(plan: Plan, data: Dataset) -> float:
    """Top-1 accuracy of the int8 reference running ``plan`` on labelled ``data``."""
    return accuracy(reference.run_batched(plan, plan.input_q.quantize(data.images)), data.labels)


def choose(qat_plan: Plan, ptq_plan: Plan, calibration: Dataset) -> tuple[bool, dict]:
    """(keep QAT's plan?, the manifest's record of the comparison)."""
    qat, ptq = int8_accuracy(qat_plan, calibration), int8_accuracy(ptq_plan, calibration)
    keep_qat = qat >= ptq
    return keep_qat, {"kept": "qat" if keep_qat else "ptq", "qat_calibration_accuracy": round(qat, 4),
                      "ptq_calibration_accuracy": round(ptq, 4), "images": len(calibration), "rule": RULE}


def describe(record: dict) -> str:
    """The compile's one log line about the choice."""
    figures = (f"int8 on {record['images']} calibration images: QAT {record['qat_calibration_accuracy']:.1%}, "
               f"PTQ {record['ptq_calibration_accuracy']:.1%}")
    if record["kept"] == "qat":
        return f"QAT kept ({figures})"
    return f"QAT fell below PTQ, so the artifact holds PTQ's plan ({figures}; the manifest's quantization.qat_fallback)"
