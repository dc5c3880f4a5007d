"""The QAT recipe's pieces on a tiny conv-BN-ReLU model: CLE moved onto the unfolded model keeps its function,
BatchNorm statistics and observer scales stop moving once frozen, the LR decays, the kept epoch is the best one
on the calibration split."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

from edgepack.data import Dataset
from edgepack.quantize.equalize import equalize, find_pairs
from edgepack.quantize.qat import (equalize_unfolded, freeze_batchnorm_stats, freeze_observers,
                                   learning_rates, prepare_qat_graph, quantize_qat)
from edgepack.quantize.quantizer import WeightGranularity

SHAPE = (3, 16, 16)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    )
    with torch.no_grad():  # unequal channel ranges (what CLE is for) and non-trivial running statistics
        for bn in (m[1], m[4], m[7]):
            bn.weight.copy_(torch.logspace(-2, 1, bn.num_features))
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def data(n: int = 64, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(rng.standard_normal((n, *SHAPE)).astype(np.float32), rng.integers(0, 4, n).astype(np.int64), "random")


def train_steps(prepared, d: Dataset, steps: int = 2) -> None:
    opt = torch.optim.SGD(prepared.parameters(), lr=1e-2, momentum=0.9)
    x, y = torch.from_numpy(d.images), torch.from_numpy(d.labels)
    for i in range(steps):
        loss = F.cross_entropy(prepared(x[i * 16:(i + 1) * 16]), y[i * 16:(i + 1) * 16])
        opt.zero_grad()
        loss.backward()
        opt.step()


def buffers(prepared, word: str) -> dict:
    return {n: b.clone() for n, b in prepared.named_buffers() if word in n}


def test_equalized_unfolded_model_computes_the_same_function():
    model, d = tiny_model(), data()
    eq, record = equalize_unfolded(model, d.images)
    assert record["applied"] and record["pairs"] == 2
    x = torch.from_numpy(d.images)
    with torch.no_grad():
        assert torch.allclose(eq(x), model(x), atol=1e-4)
        eq.train(), model.train()
        assert torch.allclose(eq(x), model(x), atol=1e-4)  # batch statistics too
    assert not torch.equal(eq[1].weight, model[1].weight)  # it did scale something


def test_equalized_unfolded_model_folds_to_the_compiles_equalized_weights():
    model, d = tiny_model(), data()
    folded = fuse(copy.deepcopy(model), inplace=True)
    scales: list = []
    expected, _ = equalize(folded, d.images, absorb_bias=False, scales=scales)
    got = fuse(equalize_unfolded(model, d.images)[0].eval(), inplace=True)
    for name in ("0", "3", "6"):
        assert torch.allclose(dict(got.named_modules())[name].weight, dict(expected.named_modules())[name].weight,
                              rtol=1e-4, atol=1e-6)
    assert [(pair.first, pair.second) for pair, _ in scales] == [(p.first, p.second) for p in find_pairs(folded)]


@pytest.mark.slow  # torch.export + prepare_qat_pt2e: 15 s on a loaded 2-core machine
@pytest.mark.parametrize("granularity, buffer, freeze", [
    (WeightGranularity.PER_CHANNEL, "running_mean", freeze_batchnorm_stats),  # BatchNorm statistics
    (WeightGranularity.PER_TENSOR, "scale", freeze_observers),  # observer scales
], ids=["batchnorm statistics", "observer scales"])
def test_what_the_recipe_freezes_stops_moving(granularity, buffer, freeze):
    d = data()
    prepared = prepare_qat_graph(tiny_model().train(), d, torch.from_numpy(d.images[:2]), granularity, 16)
    start = buffers(prepared, buffer)
    assert start
    train_steps(prepared, d)
    moved = buffers(prepared, buffer)
    assert any(not torch.equal(start[n], moved[n]) for n in start)
    freeze(prepared)
    train_steps(prepared, d)
    assert all(torch.equal(moved[n], b) for n, b in buffers(prepared, buffer).items())


@pytest.mark.slow  # torch.export + prepare_qat_pt2e
def test_batchnorm_freeze_switches_every_batchnorm():
    d = data()
    prepared = prepare_qat_graph(tiny_model().train(), d, torch.from_numpy(d.images[:2]), WeightGranularity.PER_CHANNEL, 16)
    assert freeze_batchnorm_stats(prepared) == 3


def test_learning_rate_decays_from_base_towards_zero():
    rates = learning_rates(1e-3, 100)
    assert rates[0] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert rates[-1] < 1e-5


@pytest.mark.slow  # export, prepare and convert of a whole QAT run: minutes on a loaded 2-core machine
def test_qat_keeps_the_epoch_best_on_the_calibration_split():
    record: dict = {}
    quantize_qat(tiny_model(), data(64, 1), data(32, 2), SHAPE, epochs=3, batch=16, record=record)
    scores = record["calibration_accuracy_by_epoch"]
    losses = record["calibration_loss_by_epoch"]
    assert len(scores) == len(losses) == 4  # epoch 0 (before training) and each epoch
    kept = record["kept_epoch"]
    assert scores[kept] == max(scores)
    assert losses[kept] == min(loss for a, loss in zip(scores, losses) if a == max(scores))  # accuracy ties: the loss
    assert record["equalization"]["applied"]
    assert (record["batchnorm_frozen_after_epoch"], record["observers_frozen_after_epoch"]) == (1, 2)


@pytest.mark.slow  # torch.export + prepare_qat_pt2e + prepare_pt2e
def test_activation_ranges_start_at_ptqs_and_do_not_move():
    """QAT starts from PTQ's model: its activation ranges are PTQ's histogram ranges on the calibration set (with
    BatchNorm's running statistics, as the folded model computes), and training leaves them where they are."""
    from torchao.quantization.pt2e import observer as obs
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from edgepack.fold import fold
    from edgepack.frontends.pt2e_plan import build_plan
    from edgepack.quantize.ptq import quantize_ptq

    d, model = data(), tiny_model()
    running_mean = model[1].running_mean.clone()
    prepared = prepare_qat_graph(copy.deepcopy(model).train(), d, torch.from_numpy(d.images[:2]),
                                 WeightGranularity.PER_CHANNEL, 32)  # PTQ's batch: the histograms merge alike
    activations = [m for m in prepared.modules()
                   if isinstance(m, FakeQuantize) and isinstance(m.activation_post_process, obs.HistogramObserver)]
    assert len(activations) >= 4  # at least the input and each conv-bn-relu's output
    start = [m.scale.clone() for m in activations]
    bn_means = [b for n, b in prepared.named_buffers() if "running_mean" in n]
    assert any(torch.equal(b, running_mean) for b in bn_means)  # calibration did not touch the statistics
    train_steps(prepared, d)
    assert all(torch.equal(a, m.scale) for a, m in zip(start, activations))
    qat_plan = build_plan(convert_pt2e(copy.deepcopy(prepared)), SHAPE)
    ptq_plan = build_plan(quantize_ptq(fold(model), d, SHAPE), SHAPE)
    for qat_layer, ptq_layer in zip(qat_plan.layers, ptq_plan.layers):
        if qat_layer.kind != "fc":  # the fc's output is not an activation of this model's convs
            assert qat_layer.output_q.scale == pytest.approx(ptq_layer.output_q.scale, rel=1e-4)
            assert qat_layer.output_q.zero_point == ptq_layer.output_q.zero_point
