"""PTQ and QAT on the digits eval split: int8 (numpy reference) within 1 point of fp32."""
import numpy as np
import pytest
import torch
from torch import nn

from edgepack.data import load_digits_split
from edgepack.evaluate import accuracy, torch_logits
from edgepack.fold import fold
from edgepack.model.weights import pretrained
from edgepack.plan import reference
from edgepack.frontends.pt2e_plan import build_plan
from edgepack.quantize.ptq import quantize_ptq
from edgepack.quantize.qat import guard_zero_batchnorm, quantize_qat
from edgepack.quantize.quantizer import WeightGranularity

ALPHA, RES = 0.25, 64
SHAPE = (3, RES, RES)


@pytest.fixture(scope="module")
def data():
    return {s: load_digits_split(s, RES) for s in ("train", "calibration", "eval")}


def int8_accuracy(converted, data):
    plan = build_plan(converted, SHAPE)
    out = reference.run_batched(plan, plan.input_q.quantize(data["eval"].images))
    return accuracy(out, data["eval"].labels), plan


def test_ptq_per_channel_within_one_point(data):
    model = pretrained(ALPHA, RES)
    folded = fold(model)
    fp32 = accuracy(torch_logits(folded, data["eval"].images), data["eval"].labels)
    int8, plan = int8_accuracy(quantize_ptq(folded, data["calibration"], SHAPE), data)
    assert fp32 >= 0.9
    assert int8 >= fp32 - 0.01
    assert all(len(np.unique(l.arrays["weight_scale"])) > 1 for l in plan.layers if l.kind == "depthwise")


def test_per_tensor_weights_share_one_scale(data):
    folded = fold(pretrained(ALPHA, RES))
    _, plan = int8_accuracy(quantize_ptq(folded, data["calibration"].take(32), SHAPE, WeightGranularity.PER_TENSOR), data)
    for layer in plan.layers:
        if "weight_scale" in layer.arrays:
            assert len(np.unique(layer.arrays["weight_scale"])) == 1


@pytest.mark.slow
def test_qat_within_one_point(data):
    model = pretrained(ALPHA, RES)
    fp32 = accuracy(torch_logits(fold(model), data["eval"].images), data["eval"].labels)
    converted, guarded = quantize_qat(model, data["train"], data["calibration"], SHAPE, epochs=1)
    int8, plan = int8_accuracy(converted, data)
    assert guarded == 0
    assert int8 >= fp32 - 0.01
    assert [l.kind for l in plan.layers][:3] == ["conv", "depthwise", "pointwise"]  # BN folded by convert


def test_zero_batchnorm_weight_is_guarded():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with torch.no_grad():
        m[1].weight[1] = 0
    assert guard_zero_batchnorm(m) == 1
    assert (m[1].weight != 0).all()


def test_to_plan_is_the_plan_the_torch_front_end_builds(data):
    """frontends.torch.to_plan(model, calibration, config): fold, equalize, PTQ and plan in one call, the same
    plan as the steps one by one; None for quant="none" (an fp32 compile has no plan)."""
    from edgepack.config import CompileConfig
    from edgepack.frontends.torch import to_plan

    model, calibration = pretrained(ALPHA, RES), data["calibration"].take(32)
    config = CompileConfig(alpha=ALPHA, resolution=RES)
    plan = to_plan(model, calibration, config)
    from edgepack.quantize.equalize import equalize

    equalized, _ = equalize(fold(model), calibration.images)
    steps = build_plan(quantize_ptq(equalized, calibration, SHAPE), SHAPE)
    assert [(l.kind, l.output_q) for l in plan.layers] == [(l.kind, l.output_q) for l in steps.layers]
    assert all(np.array_equal(l.arrays["weight"], s.arrays["weight"]) for l, s in zip(plan.layers, steps.layers)
               if "weight" in l.arrays)
    assert to_plan(model, calibration, CompileConfig(alpha=ALPHA, resolution=RES, quant="none")) is None


@pytest.mark.slow  # a whole QAT compile (one epoch at 32x32)
def test_qat_compile_holds_the_plan_its_fallback_record_names(tmp_path):
    """A QAT compile makes PTQ's plan too and ships it unless QAT's wins on the calibration split: the plan in
    the artifact scores, on those images, the figure the manifest gives for the side it says it kept."""
    import json

    import edgepack
    from edgepack.frontends.qat_fallback import MIN_GAIN_IMAGES, int8_accuracy
    from edgepack.plan.plan import Plan

    out = tmp_path / "qat"
    edgepack.compile(target="host", quant="qat", alpha=0.25, resolution=32, qat_epochs=1, eval_size=16, calib_size=32,
                     output=str(out))
    quantization = json.loads((out / "manifest.json").read_text())["quantization"]
    record = quantization["qat_fallback"]
    kept = record["kept"]
    assert kept in ("qat", "ptq") and record["images"] == 32
    calibration = load_digits_split("calibration", 32).take(32)
    assert int8_accuracy(Plan.load(out), calibration) == pytest.approx(record[f"{kept}_calibration_accuracy"], abs=1e-4)
    assert (record["gain_images"] >= MIN_GAIN_IMAGES) == (kept == "qat")
    gain = (record["qat_calibration_accuracy"] - record["ptq_calibration_accuracy"]) * 32
    assert record["gain_images"] == pytest.approx(gain, abs=0.01)
    assert ("activation_calibration" in quantization) == (kept == "ptq")  # PTQ's record comes with its plan
