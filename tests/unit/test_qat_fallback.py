"""QAT's safety net: the compile ships QAT's plan only when it gets at least MIN_GAIN_IMAGES more calibration
images right than PTQ's, on the int8 reference; else PTQ's (edgepack.frontends.qat_fallback)."""
import numpy as np

from edgepack.data import Dataset
from edgepack.frontends.qat_fallback import MIN_GAIN_IMAGES, choose, describe, int8_accuracy
from edgepack.plan import reference
from tests.conformance.plans import random_plan


def labelled_by(plan, n: int = 48) -> Dataset:
    """Float images labelled by ``plan``'s own top-1 class: that plan scores 100%, any other plan less."""
    images = np.random.default_rng(7).uniform(-1, 1, (n, *plan.input_shape)).astype(np.float32)
    labels = reference.run_batched(plan, plan.input_q.quantize(images)).argmax(1)
    return Dataset(images, labels, "random, labelled by a plan")


def test_the_more_accurate_plan_is_kept_on_either_side():
    better, worse = random_plan(0), random_plan(2)
    data = labelled_by(better)
    assert int8_accuracy(better, data) == 1.0 > int8_accuracy(worse, data)
    keep_qat, record = choose(better, worse, data)
    assert keep_qat and record["kept"] == "qat" and record["qat_calibration_accuracy"] == 1.0
    keep_qat, record = choose(worse, better, data)
    assert not keep_qat and record["kept"] == "ptq" and record["ptq_calibration_accuracy"] == 1.0
    assert record["images"] == len(data)
    assert "PTQ's plan" in describe(record)


def predictions(plan, images):
    return reference.run_batched(plan, plan.input_q.quantize(images)).argmax(1)


def test_a_tie_keeps_ptq_and_a_win_ships_qat():
    plan, other = random_plan(0), random_plan(2)
    images = labelled_by(plan).images
    mine, theirs = predictions(plan, images), predictions(other, images)
    assert (mine != theirs).all()
    for gain in range(MIN_GAIN_IMAGES + 2):  # `plan` right on 10 + gain images, `other` on the other 10
        labels = np.concatenate([mine[:10 + gain], theirs[10 + gain:20 + gain]])
        keep_qat, record = choose(plan, other, Dataset(images[:20 + gain], labels, "labels split between two plans"))
        assert record["gain_images"] == gain
        assert keep_qat == (gain >= MIN_GAIN_IMAGES)
