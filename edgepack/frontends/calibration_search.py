"""--calibration-method auto: a small search, as NNCF's accuracy control, over PTQ's activation calibration
methods (and per-channel vs per-tensor weights when the user did not fix them), judged on the CALIBRATION set
by the accuracy gate's own rule and limits (edgepack.gate): the first trial that passes is kept, else the best.
The eval images stay out of the choice, so the accuracy the compile reports on them is not selected for.

It stays cheap: one calibration pass per weight granularity feeds every method (edgepack.quantize.search), each
trial is a conversion and one run of torch's simulated int8 graph on the calibration images, and nothing is
lowered for the backend until the choice is made.
"""
from __future__ import annotations

from types import SimpleNamespace

from torch import nn

from edgepack import gate
from edgepack.config import CompileConfig, WeightGranularity
from edgepack.data import Dataset
from edgepack.evaluate import torch_logits
from edgepack.quantize import search
from edgepack.quantize.bias_correction import correct_biases

NO_TARGET_TABLE = SimpleNamespace(max_accuracy_drop_points=None, min_fp32_agreement_percent=None)


def granularities(config: CompileConfig) -> tuple[WeightGranularity, ...]:
    """The weight granularity the user gave, else per-channel first (the scheme's default), then per-tensor."""
    if getattr(config, "weight_granularity_given", True):
        return (config.weight_granularity,)
    return (WeightGranularity.PER_CHANNEL, WeightGranularity.PER_TENSOR)


def _score(record: dict) -> float:
    """Higher is better: the negated accuracy drop, or the fp32 agreement."""
    return -record["value"] if record["measure"] == "accuracy_drop_points" else record["value"]


def _trial(record: dict, granularity: WeightGranularity, method) -> dict:
    return {"method": method.value, "weights": granularity.value, "measure": record["measure"],
            "value": round(record["value"], 4), "passed": record["passed"]}


def search_calibration(config: CompileConfig, folded: nn.Module, calibration: Dataset, quantization: dict,
                       limits: tuple | None = None):
    """(converted graph, weight granularity) of the chosen trial; fills the manifest's quantization entry:
    ``calibration_search`` (every trial, the choice and why), ``activation_calibration`` (the chosen method,
    so debug and later readers see a real method) and ``bias_correction`` (for the chosen granularity)."""
    drop, agreement = limits or gate.limits(config.max_accuracy_drop, config.min_fp32_agreement, NO_TARGET_TABLE, "")
    fp32 = torch_logits(folded, calibration.images)
    trials, best = [], None
    for granularity in granularities(config):
        model, correction = (correct_biases(folded, calibration.images, granularity) if config.bias_correction
                             else (folded, {"applied": False}))
        prepared = search.calibrate(model, calibration, config.input_shape, granularity)
        for method in search.METHODS:
            converted = search.convert(prepared, method)
            record = gate.judge(fp32, torch_logits(converted, calibration.images), calibration.labels, drop, agreement)
            trials.append(_trial(record, granularity, method))
            if best is None or _score(record) > _score(best[3]):
                best = (converted, granularity, method, record, correction)
            if record["passed"]:
                best = (converted, granularity, method, record, correction)
                break
        if best[3]["passed"]:
            break
    converted, granularity, method, record, correction = best
    quantization["calibration_search"] = {
        "chosen": {"method": method.value, "weights": granularity.value}, "passed": record["passed"],
        "rule": "the first trial meeting the accuracy gate on the calibration images, else the best",
        "measure": record["measure"], "value": round(record["value"], 4), "limit": record["limit"],
        "limit_origin": record["limit_origin"], "images": record["images"], "trials": trials,
    }
    quantization["activation_calibration"] = method.value
    quantization["bias_correction"] = correction
    return converted, granularity


def describe(entry: dict) -> str:
    """The compile's log line: what the search chose, on what figure, after how many trials."""
    chosen, n = entry["chosen"], len(entry["trials"])
    what = ("an accuracy drop of {:.2f} points" if entry["measure"] == "accuracy_drop_points"
            else "a top-1 agreement with fp32 of {:.2f}%").format(entry["value"])
    verdict = "meets" if entry["passed"] else "is the best of the trials, but misses"
    return (f"calibration search: chose {chosen['method']} activation ranges, {chosen['weights']} weights: {what} "
            f"on {entry['images']} calibration images {verdict} the limit {entry['limit']:g} "
            f"({entry['limit_origin']}); {n} trial{'s' * (n != 1)}")
