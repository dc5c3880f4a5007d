"""Quantization-aware training with torchao PT2E: BatchNorm folding is simulated while training.

The unfolded model is exported in training mode; the quantizer annotates conv -> BatchNorm ->
ReLU chains, so ``prepare_qat_pt2e`` rewrites each into the fused conv-bn QAT pattern (weights
scaled by gamma/sigma before fake-quantization). ``convert_pt2e`` then folds BN for good.

The recipe (issue 24: one epoch at a fixed LR fell below PTQ): start from the cross-layer-equalized
model (the scales CLE picks on the folded model, moved onto conv weights and BatchNorm gamma/beta, so
the unfolded model computes the same function) and from PTQ's activation ranges: histogram observers see
the calibration set once with BatchNorm's running statistics (as PTQ's folded model does; calibrating in
train mode put the calibration batches into the running statistics and cost MobileNetV2 0.35-224 two
points), then stay fixed, as AIMET starts QAT from PTQ's encodings. Epoch 0 is then PTQ's model. SGD with
cosine LR decay over all steps; BatchNorm statistics frozen after the first epoch (the fused pattern then
uses the running statistics, as the folded int8 model will); weight observers frozen after the second.
After every epoch the fake-quant model is scored on the CALIBRATION split (never the eval split): accuracy,
then cross-entropy (a few hundred images often tie on accuracy); the best epoch is kept, epoch 0 included, so
QAT never returns a model worse on that split than its start.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgepack.data import Dataset
from edgepack.progress import progress
from edgepack.quantize.equalize import equalize
from edgepack.quantize.layers import remove_no_ops
from edgepack.quantize.ptq import check_calibration, export
from edgepack.quantize.quantizer import EdgepackQuantizer, WeightGranularity, check_graph_ops

ZERO_GAMMA = 1e-6
DEFAULT_EPOCHS = 4
DEFAULT_LR = 1e-3
FREEZE_BN_AFTER = 1  # epochs of batch statistics, then running statistics
FREEZE_OBSERVERS_AFTER = 2  # epochs of moving weight ranges, then fixed scales (activation ranges never move)
BATCHNORM_OPS = ("aten.batch_norm.default", "aten._native_batch_norm_legit.default", "aten.cudnn_batch_norm.default")


def guard_zero_batchnorm(model: nn.Module) -> int:
    """BatchNorm weights of exactly 0 make the QAT fold divide by zero (NaN scales): nudge them."""
    fixed = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                zero = m.weight == 0
                fixed += int(zero.sum())
                m.weight[zero] = ZERO_GAMMA
    return fixed


def _batchnorm_after(model: nn.Module) -> dict[str, str]:
    """conv name -> name of the BatchNorm2d that reads its output (as the fold pairs them)."""
    traced = torch.fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    pairs = {}
    for node in traced.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.BatchNorm2d):
            src = node.args[0]
            if isinstance(src, torch.fx.Node) and src.op == "call_module" and isinstance(modules[src.target], nn.Conv2d):
                pairs[src.target] = node.target
    return pairs


def _in_channel(conv: nn.Conv2d, s: torch.Tensor) -> torch.Tensor:
    """``s`` (one per input channel) shaped to multiply ``conv``'s weight along its input channels."""
    return s.view(-1, 1, 1, 1) if conv.groups > 1 else s.view(1, -1, 1, 1)


@torch.no_grad()
def equalize_unfolded(model: nn.Module, images: np.ndarray) -> tuple[nn.Module, dict]:
    """A copy of the unfolded ``model`` carrying the cross-layer equalization the compile applies to the folded
    one: A's BatchNorm gamma and beta (or A's own weight and bias) / s, B's conv input channels * s. Exact in
    train and eval mode (BatchNorm A's output scales by 1/s either way); high-bias absorption is left out (it
    would not survive batch statistics). Untraceable models are returned as they are."""
    from torch.fx.experimental.optimization import fuse

    try:
        bn_of = _batchnorm_after(model)
        folded = fuse(copy.deepcopy(model).eval(), inplace=True)
    except Exception as e:  # data-dependent control flow: no graph to find pairs in
        return model, {"applied": False, "reason": f"not traceable ({type(e).__name__})"}
    scales: list = []
    _, record = equalize(folded, images, absorb_bias=False, scales=scales)
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    for pair, s in scales:
        owner = modules[bn_of[pair.first]] if pair.first in bn_of else modules[pair.first]
        if isinstance(owner, nn.Conv2d):
            owner.weight.div_(s.view(-1, 1, 1, 1))
        else:
            owner.weight.div_(s)
        if owner.bias is not None:
            owner.bias.div_(s)
        second = modules[pair.second]
        second.weight.mul_(_in_channel(second, s))
    return model, record


def learning_rates(base: float, steps: int) -> list[float]:
    """The cosine decay the recipe follows: base at step 0 down towards 0 at the last step (never increasing)."""
    return [0.5 * base * (1 + math.cos(math.pi * i / steps)) for i in range(steps)]


def freeze_batchnorm_stats(prepared: torch.fx.GraphModule) -> int:
    """Switch every BatchNorm of an exported QAT graph to its running statistics (the PT2E QAT tutorial's
    training=False rewrite): no more updates, and the fused conv-bn computes what the folded int8 model will.
    Returns the number of BatchNorm nodes switched."""
    switched = 0
    for node in prepared.graph.nodes:
        if node.op == "call_function" and str(node.target) in BATCHNORM_OPS and node.args[5] is True:
            args = list(node.args)
            args[5] = False
            node.args = tuple(args)
            switched += 1
    prepared.recompile()
    return switched


def freeze_observers(prepared: torch.fx.GraphModule) -> None:
    """Stop every fake-quantize observer: scales and zero points stay as they are, fake quantization goes on."""
    from torchao.quantization.pt2e import disable_observer

    prepared.apply(disable_observer)


def freeze_activation_ranges(prepared: torch.fx.GraphModule) -> None:
    """Stop the activation observers (the histogram ones; weight observers go on)."""
    from torchao.quantization.pt2e import observer as obs
    from torchao.quantization.pt2e.fake_quantize import FakeQuantize

    for m in prepared.modules():
        if isinstance(m, FakeQuantize) and isinstance(m.activation_post_process, obs.HistogramObserver):
            m.disable_observer()


@torch.no_grad()
def _snapshot(prepared: torch.fx.GraphModule, calibration: Dataset, batch: int) -> tuple[tuple, torch.fx.GraphModule]:
    """An eval-mode copy of ``prepared`` with observers off, and its score on the calibration split: (fake-quant
    accuracy, minus the cross-entropy), so equal accuracies on a few hundred images are told apart by the loss
    ((-1, 0) when unlabelled: every epoch ties, so epoch 0 is kept)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval

    snap = copy.deepcopy(prepared)
    freeze_observers(snap)
    move_exported_model_to_eval(snap)
    if calibration.labels is None:
        return (-1.0, 0.0), snap
    images = torch.from_numpy(np.ascontiguousarray(calibration.images))
    logits = torch.cat([snap(images[i:i + batch]) for i in range(0, len(images), batch)])
    labels = torch.from_numpy(calibration.labels)
    return (float((logits.argmax(1) == labels).float().mean()), -float(F.cross_entropy(logits, labels))), snap


def _train_epoch(prepared, opt, sched, images, labels, batch: int, gen: torch.Generator) -> None:
    order = torch.randperm(len(labels), generator=gen)
    for start in range(0, len(labels), batch):
        idx = order[start:start + batch]
        loss = F.cross_entropy(prepared(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def prepare_qat_graph(model: nn.Module, calibration: Dataset, example: torch.Tensor, granularity, batch: int):
    """The exported QAT graph in train mode, its activation ranges PTQ's on the calibration set (fixed from here)
    and its weight ranges the weights' own."""
    from torchao.quantization.pt2e import (disable_fake_quant, enable_fake_quant, move_exported_model_to_eval,
                                           move_exported_model_to_train)
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    exported = remove_no_ops(export(model, example).module())
    check_graph_ops(exported)
    prepared = prepare_qat_pt2e(exported, EdgepackQuantizer(granularity, qat=True))
    move_exported_model_to_eval(prepared)  # running statistics, no fake quantization: observe what PTQ observes,
    prepared.apply(disable_fake_quant)  # the folded fp32 model's activations
    with torch.no_grad():
        calib = torch.from_numpy(np.ascontiguousarray(calibration.images))
        for start in range(0, len(calib), batch):
            prepared(calib[start:start + batch])
    prepared.apply(enable_fake_quant)
    freeze_activation_ranges(prepared)
    move_exported_model_to_train(prepared)
    return prepared


def quantize_qat(
    model: nn.Module, train: Dataset, calibration: Dataset, input_shape: tuple[int, ...], epochs: int = DEFAULT_EPOCHS,
    granularity: WeightGranularity = WeightGranularity.PER_CHANNEL, lr: float = DEFAULT_LR, batch: int = 32, seed: int = 0,
    equalize_first: bool = True, record: dict | None = None,
) -> tuple[torch.fx.GraphModule, int]:
    """Fine-tune with fake quantization (the module docstring's recipe); return the converted graph of the epoch
    best on the calibration split and the count of guarded BN weights. ``record``, if given, receives the recipe,
    the calibration accuracy of each epoch and the epoch kept (for the manifest)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    check_calibration(calibration, input_shape)
    check_calibration(train, input_shape)
    model = copy.deepcopy(model).train()
    guarded = guard_zero_batchnorm(model)
    eq = {"applied": False}
    if equalize_first:
        model, eq = equalize_unfolded(model.eval(), calibration.images)
        model.train()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    images, labels = torch.from_numpy(np.ascontiguousarray(train.images)), torch.from_numpy(train.labels)
    prepared = prepare_qat_graph(model, calibration, images[:2], granularity, batch)
    steps = max(1, epochs * math.ceil(len(labels) / batch))
    opt = torch.optim.SGD(prepared.parameters(), lr=lr, momentum=0.9)
    factors = learning_rates(1.0, steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: factors[min(i, steps - 1)])
    best_score, best = _snapshot(prepared, calibration, batch)
    scores, kept = [best_score], 0
    for epoch in progress(range(1, epochs + 1), "QAT", unit="epoch"):
        _train_epoch(prepared, opt, sched, images, labels, batch, gen)
        if epoch == FREEZE_BN_AFTER:
            freeze_batchnorm_stats(prepared)
        if epoch == FREEZE_OBSERVERS_AFTER:
            freeze_observers(prepared)
        score, snap = _snapshot(prepared, calibration, batch)
        scores.append(score)
        if score > best_score:  # strictly: a tie keeps the earlier epoch (epoch 0 is PTQ's model)
            best_score, best, kept = score, snap, epoch
    if record is not None:
        record.update(epochs=epochs, lr=lr, lr_schedule="cosine to 0 over all steps", optimizer="SGD momentum 0.9",
                      batch=batch, seed=seed, batchnorm_frozen_after_epoch=FREEZE_BN_AFTER,
                      observers_frozen_after_epoch=FREEZE_OBSERVERS_AFTER, equalization=eq,
                      activation_ranges="PTQ's histogram calibration (BatchNorm running statistics), fixed",
                      calibration_accuracy_by_epoch=[round(a, 4) for a, _ in scores],
                      calibration_loss_by_epoch=[round(-loss, 4) for _, loss in scores], kept_epoch=kept,
                      kept_by="best fake-quant accuracy on the calibration split, then lowest cross-entropy "
                              "(an exact tie keeps the earlier epoch)")
    return convert_pt2e(best), guarded
