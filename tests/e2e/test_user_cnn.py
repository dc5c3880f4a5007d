"""Issue 21, a user's own PyTorch CNN as a new user writes it: 48x48 inputs (not a multiple of 32), five
conv+BatchNorm+ReLU layers with a residual add, global average pooling, Dropout and Identity before the
Linear, 3 classes, random weights. It compiles through the CLI (`--model FILE.py:NAME`, edgepack's digits
pipeline resized to 48x48) and the Python API (48x48 arrays) and benches PASS, bit-exact on c-host; the
Dropout and Identity leave the int8 plan exactly as the same model without them."""
from __future__ import annotations

import numpy as np
import pytest

import edgepack
from edgepack.artifact import verify
from edgepack.config import CompileConfig
from edgepack.data import load_dataset
from edgepack.frontends.torch import to_plan
from tests.conftest import run_cli
from tests.e2e.test_user_model import net_from_source

NET_SOURCE = '''
from torch import nn


def conv_bn(cin, cout, stride, relu=True):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)] + ([nn.ReLU()] if relu else [])


class TinyResNet(nn.Module):
    """Five conv layers, one residual block, dropout before the classifier, 3 classes."""

    def __init__(self, dropout=0.3):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, 16, 2))
        self.block = nn.Sequential(*conv_bn(16, 16, 1), *conv_bn(16, 16, 1, relu=False))
        self.relu = nn.ReLU()
        self.down = nn.Sequential(*conv_bn(16, 32, 2), *conv_bn(32, 32, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.drop = nn.Sequential(nn.Dropout(dropout), nn.Identity()) if dropout else nn.Sequential()
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        x = self.stem(x)
        x = self.relu(x + self.block(x))
        return self.fc(self.drop(self.flatten(self.pool(self.down(x)))))
'''
RES, CLASSES = 48, 3


def tiny_resnet(dropout=0.3):
    return net_from_source(NET_SOURCE, "TinyResNet", dropout)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["host", "c-host"])
def test_cli_compiles_a_48x48_user_cnn_with_dropout_and_benches_pass(target, tmp_path, capsys):
    (tmp_path / "net.py").write_text(NET_SOURCE)
    out = tmp_path / target
    code, _, err = run_cli(capsys, "compile", "--target", target, "--model", f"{tmp_path / 'net.py'}:TinyResNet",
                           "--resolution", str(RES), "--calib-size", "48", "--eval-size", "48", "-o", str(out))
    assert code == 0, err
    manifest = verify(out)
    assert manifest["model"]["input_shape"] == [3, RES, RES] and manifest["model"]["classes"] == CLASSES
    assert manifest["eval"]["source"] == "digits:eval[:48]"  # edgepack's digits, resized to the model's 48x48
    digits = load_dataset(None, "eval", RES, CLASSES)
    assert digits.images.shape[1:] == (3, RES, RES) and set(digits.labels) == set(range(CLASSES))
    code, stdout, err = run_cli(capsys, "bench", str(out), "--count", "3", "--warmup", "1")
    assert code == 0 and "result: PASS" in stdout, err
    if target == "c-host":
        assert "[PASS] eval: native == reference (bit-exact)" in stdout


@pytest.mark.slow
def test_api_compiles_a_48x48_user_cnn_from_arrays(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((64, 3, RES, RES), dtype=np.float32)
    labels = np.arange(16) % CLASSES
    out = edgepack.compile(tiny_resnet(), "c-host", calibration=images[:48], eval_data=(images[48:], labels),
                           output=str(tmp_path / "api"))
    manifest = verify(out)
    assert manifest["model"]["resolution"] == RES and manifest["model"]["classes"] == CLASSES
    report = edgepack.bench(out, count=3, warmup=1)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]


@pytest.mark.slow
def test_dropout_and_identity_leave_the_int8_plan_unchanged(tmp_path):
    """The plan (and its arrays) of the model with Dropout + Identity is, byte for byte, the plan of the
    same weights without them: no observer of their own, no extra tensor."""
    calibration = load_dataset(None, "calibration", RES, CLASSES).take(32)
    config = CompileConfig(model_name="TinyResNet", resolution=RES, classes=CLASSES)
    with_dropout, without = tiny_resnet(0.5), tiny_resnet(None)
    without.load_state_dict(with_dropout.state_dict())
    files = {}
    for name, model in (("with", with_dropout), ("without", without)):
        (tmp_path / name).mkdir()
        to_plan(model, calibration, config).save(tmp_path / name)
        files[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
    assert files["with"] == files["without"] and files["with"]
