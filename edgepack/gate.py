"""The accuracy gate: is the int8 model close enough to the fp32 model it was quantized from?

Compile measures it on its eval images: with labels, the accuracy drop in points (fp32 accuracy minus the int8
reference's); without labels, the int8 top-1 agreement with the fp32 model in percent (the logits' SQNR is
recorded beside it). The limit is the one given (``--max-accuracy-drop`` / ``--min-fp32-agreement``, or the
API's ``max_accuracy_drop`` / ``min_fp32_agreement``), else the target file's ``[accuracy_gate]``, else the
defaults below.

Statistical tolerance: a figure past its limit fails only when more than TOLERANCE_IMAGES eval images make
the difference. On 16 eval images one image is 6.25 points: it says nothing about the quantization, so a
small eval set is never failed by one image, and the limit itself is not weakened for larger ones.

Plain numbers in, a JSON record out (the manifest's ``metrics.accuracy_gate``): no torch here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_ACCURACY_DROP = 1.0  # points
DEFAULT_MIN_FP32_AGREEMENT = 97.0  # percent
TOLERANCE_IMAGES = 1  # a difference of at most this many eval images never fails
TOLERANCE_NOTE = f"a difference of at most {TOLERANCE_IMAGES} eval image never fails"


@dataclass(frozen=True)
class Limit:
    value: float
    origin: str  # where the limit came from, as the message says it


def limits(max_drop: float | None, min_agreement: float | None, table, target_name: str) -> tuple[Limit, Limit]:
    """The (drop, agreement) limits: given (flag or API argument), else the target's [accuracy_gate] ``table``
    (edgepack.targets.AccuracyGate), else the defaults."""
    def pick(given, from_file, default, flag):
        if given is not None:
            return Limit(float(given), flag)
        if from_file is not None:
            return Limit(float(from_file), f"target {target_name} [accuracy_gate]")
        return Limit(default, "edgepack's default")
    return (pick(max_drop, table.max_accuracy_drop_points, DEFAULT_MAX_ACCURACY_DROP, "--max-accuracy-drop"),
            pick(min_agreement, table.min_fp32_agreement_percent, DEFAULT_MIN_FP32_AGREEMENT, "--min-fp32-agreement"))


def not_applicable(reason: str) -> dict:
    """The record of a compile the gate does not judge (no fp32 model, or no int8 model)."""
    return {"applies": False, "reason": reason}


def judge(fp32_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray | None, drop_limit: Limit,
          agreement_limit: Limit, sqnr_db: float | None = None) -> dict:
    """The gate's record for int8 logits against fp32 logits on the same eval images: the accuracy drop when
    ``labels`` are given, else the top-1 agreement, judged against its limit with the one-image tolerance."""
    fp32_top, int8_top = np.argmax(fp32_logits, axis=1), np.argmax(int8_logits, axis=1)
    images = len(fp32_top)
    agreeing = int(np.count_nonzero(fp32_top == int8_top))
    record = {"applies": True, "images": images, "fp32_agreement_percent": 100 * agreeing / images,
              "sqnr_db": sqnr_db, "tolerance": TOLERANCE_NOTE}
    if labels is not None:
        fp32_right, int8_right = (int(np.count_nonzero(top == labels)) for top in (fp32_top, int8_top))
        record.update(measure="accuracy_drop_points", fp32_accuracy=fp32_right / images,
                      int8_accuracy=int8_right / images, images_apart=fp32_right - int8_right,
                      value=100 * (fp32_right - int8_right) / images, limit=drop_limit.value,
                      limit_origin=drop_limit.origin)
    else:
        record.update(measure="fp32_agreement_percent", images_apart=images - agreeing,
                      value=record["fp32_agreement_percent"], limit=agreement_limit.value,
                      limit_origin=agreement_limit.origin)
    return {**record, "passed": verdict(record)}


def verdict(record: dict) -> bool:
    """Whether the record's figure passes: within its limit, or apart from fp32 by at most TOLERANCE_IMAGES."""
    if record["images_apart"] <= TOLERANCE_IMAGES:
        return True
    if record["measure"] == "accuracy_drop_points":
        return bool(record["value"] <= record["limit"] + 1e-9)
    return bool(record["value"] >= record["limit"] - 1e-9)


def with_device_accuracy(record: dict, accuracy: float, images: int) -> dict:
    """The compile's drop record judged again with a device's int8 accuracy on the same labelled eval images
    (bench: a float runtime's int8 is not bit-exact with the reference); other records as they are."""
    if record.get("measure") != "accuracy_drop_points" or images != record["images"]:
        return record
    fp32_right, int8_right = round(record["fp32_accuracy"] * images), round(accuracy * images)
    again = {**record, "int8_accuracy": int8_right / images, "images_apart": fp32_right - int8_right,
             "value": 100 * (fp32_right - int8_right) / images}
    return {**again, "passed": verdict(again)}


def describe(record: dict) -> str:
    """The figure against its limit, in words: what the log line, the error and bench's check say."""
    if not record["applies"]:
        return f"not applied ({record['reason']})"
    n, apart, limit = record["images"], record["images_apart"], f"{record['limit']:g}"
    if record["measure"] == "accuracy_drop_points":
        return (f"int8 accuracy {record['int8_accuracy']:.2%} vs fp32 {record['fp32_accuracy']:.2%} on {n} eval "
                f"images: a drop of {record['value']:.2f} points ({apart} image{'s' * (abs(apart) != 1)}), "
                f"limit {limit} point{'s' * (record['limit'] != 1)} ({record['limit_origin']})")
    sqnr = "" if record.get("sqnr_db") is None else f", SQNR {record['sqnr_db']:.1f} dB"
    return (f"int8 top-1 agreement with fp32 {record['value']:.2f}% on {n} unlabelled eval images ({apart} "
            f"differ{'s' * (apart == 1)}{sqnr}), limit {limit}% ({record['limit_origin']})")
