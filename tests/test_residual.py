"""Residual graphs end to end: MobileNetV2 (`--model mobilenet_v2`) and a residual network written here
with plain torch.nn (no edgepack code) compile for c-host and cortex-m4 and bench PASS bit-exact with the
int8 reference; operators the plan has no layer for are refused by name. Small models (V2 alpha 0.35 at
32x32 with random weights and BatchNorm statistics, few images) keep this fast."""
from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgepack
from edgepack.artifact import read_manifest
from edgepack.backends.tvm.lower import check_chain
from edgepack.benchmark.run import bench_artifact
from edgepack.data import load_dataset
from edgepack.errors import UnsupportedModelError
from edgepack.model.mobilenet_v2 import MobileNetV2
from edgepack.plan.plan import Plan
from tests.conftest import run_cli

RES = 32


def _with_batchnorm_statistics(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Random weights, BatchNorm running statistics of ``images`` (so activations are not degenerate)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average over the batches seen
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


@pytest.fixture(scope="module")
def v2_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    digits = load_dataset(None, "calibration", RES, 10, (0.5,) * 3, (0.5,) * 3)
    model = _with_batchnorm_statistics(MobileNetV2(0.35, RES, 10), torch.from_numpy(digits.images[:64]))
    with torch.no_grad():
        nn.init.normal_(model.classifier.weight, 0, 0.1)  # logits of a useful spread
    path = tmp_path_factory.mktemp("v2") / "v2_0.35.pt"
    torch.save(model.state_dict(), path)
    return path


class TwoBlockResNet(nn.Module):
    """A ResNet-style network: two residual blocks (the sum through `+`, torch.add and operator.add, a
    ReLU after the first), then global pooling and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                    nn.Conv2d(16, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        self.block2 = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                                    nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.block1(x))
        y = torch.add(x, self.block2(x))
        return self.head(operator.add(y, self.block1(y)))


@pytest.fixture(scope="module")
def user_residual():
    torch.manual_seed(1)
    images = torch.randn(48, 3, RES, RES)
    return _with_batchnorm_statistics(TwoBlockResNet(), images), images.numpy()


def _assert_bit_exact_pass(folder):
    report = bench_artifact(folder, eval_size=8)
    assert report["passed"], report["checks"]
    exact = [c for c in report["checks"] if "bit-exact" in c["name"]]
    assert len(exact) >= 2 and all(c["passed"] for c in exact)
    return read_manifest(folder)


def _assert_residual_memory(folder, manifest):
    """Every add's inputs stay in the arena until the add; the arena is below the naive sum."""
    plan = Plan.load(folder)
    adds = [i for i, layer in enumerate(plan.layers) if layer.kind == "add"]
    assert adds and not plan.is_chain()
    memory = manifest["memory_plan"]
    life = {b["name"]: (b["first"], b["last"]) for b in memory["buffers"]}
    for i in adds:
        for j in plan.inputs_of(i):
            assert j == -1 or life[f"t{j}"][1] >= i
    assert memory["planner"] == "greedy-by-size" and memory["arena_bytes"] < memory["naive_bytes"]
    assert manifest["footprint"]["naive_arena_bytes"] == memory["naive_bytes"]


@pytest.mark.parametrize("target", ["c-host", "cortex-m4"])
def test_mobilenet_v2_compiles_and_benches_bit_exact(target, v2_checkpoint, tmp_path, capsys):
    out = tmp_path / "v2"
    code, _, err = run_cli(capsys, "compile", "--model", "mobilenet_v2", "--alpha", "0.35", "--resolution", str(RES),
                           "--checkpoint", str(v2_checkpoint), "--target", target, "--calib-size", "16",
                           "--eval-size", "16", "-o", str(out))
    assert code == 0, err
    manifest = _assert_bit_exact_pass(out)
    assert manifest["model"]["name"] == "MobileNetV2" and manifest["model"]["builtin"] == "mobilenet_v2"
    _assert_residual_memory(out, manifest)
    assert sum(layer.kind == "add" for layer in Plan.load(out).layers) == 10  # the stride-1 blocks of Table 2


@pytest.mark.parametrize("target", ["c-host", "cortex-m4"])
def test_user_residual_network_compiles_and_benches_bit_exact(target, user_residual, tmp_path):
    model, images = user_residual
    out = edgepack.compile(model, target=target, calibration=images, output=str(tmp_path / "res"))
    manifest = _assert_bit_exact_pass(out)
    plan = Plan.load(out)
    adds = [layer for layer in plan.layers if layer.kind == "add"]
    assert len(adds) == 3 and adds[0].activation == "relu" and adds[0].act_min == adds[0].output_q.zero_point
    _assert_residual_memory(out, manifest)
    with pytest.raises(UnsupportedModelError, match="residual graphs are not lowered by the TVM backend yet"):
        check_chain(plan)


class Concatenating(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return self.fc(torch.cat([y, y], 1).mean((2, 3)))


def test_an_operator_the_plan_cannot_express_is_refused_by_name(tmp_path):
    images = np.random.default_rng(0).standard_normal((8, 3, RES, RES)).astype(np.float32)
    with pytest.raises(UnsupportedModelError, match=r"^cat: operator cat\.default is not supported by the int8 plan"):
        edgepack.compile(Concatenating(), target="c-host", calibration=images, output=str(tmp_path / "cat"))
    assert not (tmp_path / "cat").exists()


def test_v2_without_shipped_weights_names_checkpoint(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", "--model", "mobilenet_v2", "--alpha", "1.4", "--resolution", str(RES),
                           "--target", "host", "-o", str(tmp_path / "x"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no shipped mobilenet_v2 weights for alpha 1.4" in err and "--checkpoint" in err
