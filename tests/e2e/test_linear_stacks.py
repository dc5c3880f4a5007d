"""PyTorch models that are not CNNs with a pooled head: nn.Linear stacks on (N, F) vectors (a BatchNorm1d after
a Linear folded into it, Flatten and Dropout passing through), and a conv whose map is flattened straight into a
Linear (no pool), compiled through the Python API on their own inputs and benched: PASS, bit-exact on c-host."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import edgepack
from edgepack.artifact import verify
from edgepack.evaluate import sqnr_db
from edgepack.plan import reference
from edgepack.plan.plan import Plan
from tests.cli import edgepack as cli
from tests.e2e.test_user_model import assert_bench_passes

pytestmark = pytest.mark.slow


class SensorMLP(nn.Module):
    """32 sensor values -> 5 classes: Linear, BatchNorm1d, ReLU, Dropout, Linear, ReLU, Linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.1),
                                  nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5))
        with torch.no_grad():  # trained-looking statistics, so the fold changes the weights
            self.body[2].running_mean.uniform_(-0.5, 0.5)
            self.body[2].running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.body(x)


class FlattenedConv(nn.Module):
    """A conv map flattened straight into a Linear (no pool), then a BatchNorm1d and the classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize("target", ["c-host", "host"])
def test_linear_stack_on_vectors_compiles_and_benches(target, tmp_path):
    torch.manual_seed(0)
    vectors = np.random.default_rng(0).normal(0, 1, (80, 32)).astype(np.float32)
    labels = np.arange(16) % 5
    model = SensorMLP()
    out = edgepack.compile(model, target, calibration=vectors[:64], eval_data=(vectors[64:], labels),
                           output=str(tmp_path / target))
    manifest = verify(out)
    assert manifest["model"]["input_shape"] == [32]
    plan = Plan.load(out)
    assert plan.input_shape == (32,) and [layer.kind for layer in plan.layers] == ["fc", "fc", "fc"]
    with torch.no_grad():  # the BatchNorm1d is in the int8 weights: the plan follows the unfolded model
        fp32 = model.eval()(torch.from_numpy(vectors[64:])).numpy()
    int8 = plan.output_q.dequantize(reference.run(plan, plan.input_q.quantize(vectors[64:])))
    assert sqnr_db(fp32, int8) > 25
    assert_bench_passes(out, target)


def test_flatten_of_a_conv_map_into_a_linear_compiles_and_benches(tmp_path):
    torch.manual_seed(0)
    images = np.random.default_rng(1).normal(0, 1, (64, 3, 16, 16)).astype(np.float32)
    out = edgepack.compile(FlattenedConv(), "c-host", calibration=images[:48], eval_data=(images[48:], np.arange(16) % 3),
                           output=str(tmp_path / "c-host"))
    plan = Plan.load(out)
    assert [layer.kind for layer in plan.layers] == ["conv", "fc", "fc"] and plan.layers[1].input_shape == (256,)
    assert_bench_passes(out, "c-host")


MLP_SOURCE = '''
from torch import nn


class SensorMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 5))

    def forward(self, x):
        return self.body(x)
'''


def test_cli_takes_a_linear_stack_with_npz_vectors_through_compile_bench_and_debug(tmp_path):
    """--calibration / --eval-data .npz of (N, 32) vectors make the model's input 32 values (no flag needed);
    bench reloads the eval vectors from --eval-data and debug recalibrates on the recorded .npz."""
    (tmp_path / "mlp.py").write_text(MLP_SOURCE)
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "cal.npz", images=rng.normal(0, 1, (60, 32)).astype(np.float32))
    np.savez(tmp_path / "ev.npz", images=rng.normal(0, 1, (20, 32)).astype(np.float32), labels=np.arange(20) % 5)
    out = tmp_path / "out"
    code, _, err, _ = cli("compile", "--model", tmp_path / "mlp.py:SensorMLP", "--calibration", tmp_path / "cal.npz",
                          "--eval-data", tmp_path / "ev.npz", "--target", "c-host", "-o", out)
    assert code == 0, err
    assert Plan.load(out).input_shape == (32,)
    code, stdout, err, _ = cli("bench", out, "--eval-data", tmp_path / "ev.npz")
    assert code == 0 and "result: PASS" in stdout and "accuracy" in stdout, stdout + err
    code, stdout, err, _ = cli("debug", out, "--model", tmp_path / "mlp.py:SensorMLP")
    assert code == 0 and "body.3" in stdout, stdout + err
