"""QAT's safety net: the compile keeps PTQ's plan instead of QAT's only when its int8 accuracy on the calibration
split is strictly higher; a tie keeps QAT's (edgepack.frontends.qat_fallback)."""
import numpy as np

from edgepack.data import Dataset
from edgepack.frontends.qat_fallback import choose, describe, int8_accuracy
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


def test_a_tie_keeps_qat():
    plan = random_plan(0)
    keep_qat, record = choose(plan, plan, labelled_by(random_plan(2)))
    assert keep_qat and record["qat_calibration_accuracy"] == record["ptq_calibration_accuracy"] < 1.0
