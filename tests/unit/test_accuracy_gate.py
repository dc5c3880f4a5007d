"""The accuracy gate's decision (edgepack.gate): int8 against fp32 as a drop in points with labels, as
top-1 agreement without; the limit given, else the target file's, else the default; a difference of one eval
image never fails; and its limits refused as one line when they are not percentages."""
from __future__ import annotations

import numpy as np
import pytest

from edgepack.config import check_max_accuracy_drop, check_min_fp32_agreement
from edgepack.errors import ConfigError, TargetError
from edgepack import gate
from edgepack.targets import AccuracyGate, load_targets, parse_target

DROP, AGREEMENT = gate.Limit(1.0, "test drop"), gate.Limit(97.0, "test agreement")


def logits_of(classes: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """One-hot logits whose top-1 is ``classes``."""
    out = np.zeros((len(classes), n_classes), np.float32)
    out[np.arange(len(classes)), classes] = 1.0
    return out


def case(images: int, fp32_wrong: int, int8_wrong: int):
    """fp32 and int8 logits on ``images`` labelled images (labels 0), wrong on their first ``*_wrong`` images."""
    labels = np.zeros(images, np.int64)
    fp32, int8 = labels.copy(), labels.copy()
    fp32[:fp32_wrong], int8[:int8_wrong] = 1, 1
    return logits_of(fp32), logits_of(int8), labels


@pytest.mark.parametrize("images, int8_wrong, passed", [
    (16, 1, True),  # one image on 16 is 6.25 points: the tolerance, not the quantization
    (16, 2, False),  # two images: 12.5 points, over 1.0
    (360, 3, True),  # 0.83 points: within the limit
    (360, 4, False),  # 1.11 points: over it, and four images apart
    (100, 1, True),  # exactly 1.0 point: the limit is inclusive
])
def test_labelled_eval_data_judges_the_drop_in_points(images, int8_wrong, passed):
    record = gate.judge(*case(images, 0, int8_wrong), DROP, AGREEMENT)
    assert record["measure"] == "accuracy_drop_points" and record["passed"] is passed
    assert record["value"] == pytest.approx(100 * int8_wrong / images) and record["images_apart"] == int8_wrong
    assert record["limit"] == 1.0 and record["limit_origin"] == "test drop" and record["applies"]


def test_int8_better_than_fp32_passes_and_wrong_images_both_ways_count_net():
    assert gate.judge(*case(40, 5, 0), DROP, AGREEMENT)["value"] == pytest.approx(-12.5)
    assert gate.judge(*case(40, 5, 0), DROP, AGREEMENT)["passed"]
    record = gate.judge(*case(40, 5, 8), DROP, AGREEMENT)  # 3 images net: 7.5 points
    assert not record["passed"] and record["images_apart"] == 3


@pytest.mark.parametrize("images, differing, passed", [(16, 1, True), (16, 2, False), (200, 6, True), (200, 7, False)])
def test_unlabelled_eval_data_judges_top1_agreement_with_fp32(images, differing, passed):
    fp32, int8, _ = case(images, 0, differing)
    record = gate.judge(fp32, int8, None, DROP, AGREEMENT, sqnr_db=12.5)
    assert record["measure"] == "fp32_agreement_percent" and record["passed"] is passed
    assert record["value"] == pytest.approx(100 * (images - differing) / images) and record["sqnr_db"] == 12.5
    assert "SQNR 12.5 dB" in gate.describe(record) and f"{differing} differ" in gate.describe(record)


def test_limit_given_then_target_file_then_default():
    table = AccuracyGate(max_accuracy_drop_points=2.0, min_fp32_agreement_percent=90.0)
    assert gate.limits(0.5, 99.0, table, "host") == (gate.Limit(0.5, "--max-accuracy-drop"),
                                                     gate.Limit(99.0, "--min-fp32-agreement"))
    assert gate.limits(None, None, table, "host") == (gate.Limit(2.0, "target host [accuracy_gate]"),
                                                      gate.Limit(90.0, "target host [accuracy_gate]"))
    drop, agreement = gate.limits(None, None, AccuracyGate(), "mine")
    assert (drop.value, agreement.value) == (gate.DEFAULT_MAX_ACCURACY_DROP, gate.DEFAULT_MIN_FP32_AGREEMENT)


def test_builtin_targets_carry_the_default_limits():
    for target in load_targets().values():
        assert target.accuracy_gate == AccuracyGate(1.0, 97.0), target.name


def test_a_device_accuracy_is_judged_again_on_the_compile_eval_images():
    record = gate.judge(*case(100, 0, 0), DROP, AGREEMENT)
    assert gate.with_device_accuracy(record, 0.97, 100)["passed"] is False  # 3 images lost on the device
    assert gate.with_device_accuracy(record, 0.97, 100)["value"] == pytest.approx(3.0)
    assert gate.with_device_accuracy(record, 0.97, 50) is record  # other images: the compile's figure stands


def test_the_failure_text_names_figure_and_limit():
    text = gate.describe(gate.judge(*case(360, 0, 49), DROP, AGREEMENT))
    assert "int8 accuracy 86.39% vs fp32 100.00% on 360 eval images: a drop of 13.61 points (49 images)" in text
    assert "limit 1 point (test drop)" in text
    assert gate.describe(gate.not_applicable("an fp32 compile")) == "not applied (an fp32 compile)"


@pytest.mark.parametrize("check, value", [(check_max_accuracy_drop, v) for v in ("-1", "101", "nan", "inf", "x", True)]
                         + [(check_min_fp32_agreement, v) for v in ("0.97", "1", "100.5", "-3", "nan", False)])
def test_a_limit_outside_0_to_100_is_one_line(check, value):
    with pytest.raises(ConfigError) as e:
        check(value)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"--{check.__name__[6:].replace('_', '-')} ")


def test_limits_inside_0_to_100_are_numbers():
    assert check_max_accuracy_drop("0") == 0.0 and check_max_accuracy_drop(2) == 2.0
    assert check_min_fp32_agreement("0") == 0.0 and check_min_fp32_agreement("97.5") == 97.5


@pytest.mark.parametrize("text", ["max_accuracy_drop_points = -1", "max_accuracy_drop_points = 150",
                                  "min_fp32_agreement_percent = 0.97", 'min_fp32_agreement_percent = "97"'])
def test_a_target_file_limit_out_of_range_is_refused(tmp_path, text):
    path = tmp_path / "mine.toml"
    path.write_text(f'name = "mine"\ndescription = "d"\nbackend = "onnxruntime"\n[accuracy_gate]\n{text}\n')
    with pytest.raises(TargetError) as e:
        parse_target(path)
    assert str(e.value).startswith(f"target file {path}: [accuracy_gate] ")
