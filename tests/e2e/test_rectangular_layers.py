"""Rectangular kernels, unequal strides and non-square inputs from the user's side: a PyTorch CNN with
nn.Conv2d(kernel_size=(3, 1), stride=(2, 1)), a (1, 5) depthwise at (1, 2) and a MaxPool2d((3, 2), (2, 1)); a keyword-spotting net on
one-channel 49x10 inputs given as they are to the Python API; the converter's DS-CNN .tflite with an
--eval-data .npz of its own (1, 49, 10) inputs. The PT2E front end keeps each conv's (KH, KW) and (SH, SW) in
the plan, and every integer executor runs them bit-exact with the reference; a depthwise nn.Conv2d with
groups=C and C*m outputs (depth multiplier m) too."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgepack
from tests import converter_models
from tests.cli import edgepack as edgepack_cli
from tests.e2e.test_user_model import assert_bench_passes, compile_user_net, net_from_source

pytestmark = pytest.mark.slow

NET_SOURCE = '''
from torch import nn


class StripNet(nn.Module):
    """conv 3x1 at (2, 1), depthwise 1x5 at (1, 2), max pool 3x2 at (2, 1), pointwise, global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, (3, 1), stride=(2, 1), padding=(1, 0), bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, (1, 5), stride=(1, 2), padding=(0, 2), groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0)),
            nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.head(self.body(x))
'''
RES, CLASSES = 32, 3


@pytest.mark.parametrize("target", ["c-host", "cortex-m4", "rpi4", "x86-tvm"])
def test_rectangular_kernels_and_unequal_strides_compile_and_bench_bit_exact(target, tmp_path):
    out, _ = compile_user_net(NET_SOURCE, "StripNet", target, tmp_path, RES, CLASSES)
    layers = json.loads((Path(out) / "plan.json").read_text())["layers"]
    assert [(layer["kind"], layer["stride"], layer["pads"]) for layer in layers[:4]] == [
        ("conv", [2, 1], [1, 0, 1, 0]), ("depthwise", [1, 2], [0, 2, 0, 2]), ("maxpool", [2, 1], [1, 0, 1, 0]),
        ("pointwise", 1, [0, 0, 0, 0])]
    assert layers[2]["params"] == {"window": [3, 2]}
    assert_bench_passes(out, target)


KWS_SOURCE = '''
from torch import nn


class KwsNet(nn.Module):
    """A keyword-spotting DS-CNN's stem on a 49x10 spectrogram: conv 10x4/2, depthwise 3x3, pointwise, Linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, (10, 4), stride=2, padding=(5, 1), bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))

    def forward(self, x):
        return self.head(self.body(x))
'''


@pytest.mark.parametrize("target", ["c-host", "cortex-m4", "rpi4", "x86-tvm"])
def test_a_one_channel_49x10_model_compiles_from_its_own_inputs_and_benches_bit_exact(target, tmp_path):
    images = np.random.default_rng(0).random((64, 1, 49, 10), dtype=np.float32)
    out = edgepack.compile(net_from_source(KWS_SOURCE, "KwsNet"), target, calibration=images[:48],
                           eval_data=(images[48:], np.arange(16) % 4), output=str(tmp_path / target))
    plan = json.loads((Path(out) / "plan.json").read_text())
    assert plan["input"]["shape"] == [1, 49, 10] and plan["layers"][0]["output_shape"] == [8, 25, 5]
    assert_bench_passes(out, target)


def test_an_imported_kws_model_takes_an_eval_npz_of_its_own_inputs(tmp_path):
    source = converter_models.build(tmp_path, ["kws_ds_cnn"])["kws_ds_cnn"]
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "eval.npz", images=rng.uniform(-1, 1, (20, 1, 49, 10)).astype(np.float32),
             labels=np.arange(20) % 12)
    code, _, err, _ = edgepack_cli("compile", "--model", source, "--target", "c-host", "--eval-data",
                                   tmp_path / "eval.npz", "-o", tmp_path / "kws")
    assert code == 0, err
    manifest = json.loads((tmp_path / "kws" / "manifest.json").read_text())
    assert manifest["eval"]["images"] == 20 and manifest["metrics"]["reference_vs_litert_import"]["bit_exact"]
    code, out, err, _ = edgepack_cli("bench", tmp_path / "kws")
    assert code == 0 and "result: PASS" in out, out + err


DEPTH_MULTIPLIER_SOURCE = '''
from torch import nn


class MultipliedNet(nn.Module):
    """A depthwise conv with depth multiplier 4 (groups=3, 12 outputs), pointwise, global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, 3, stride=2, padding=1, groups=3, bias=False), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.head(self.body(x))
'''


def test_a_depthwise_conv_with_a_depth_multiplier_compiles_and_benches_bit_exact(tmp_path):
    out, _ = compile_user_net(DEPTH_MULTIPLIER_SOURCE, "MultipliedNet", "c-host", tmp_path, RES, CLASSES)
    first = json.loads((Path(out) / "plan.json").read_text())["layers"][0]
    assert (first["kind"], first["input_shape"], first["output_shape"]) == ("depthwise", [3, 32, 32], [12, 16, 16])
    assert_bench_passes(out, "c-host")


def test_the_cli_takes_a_user_models_one_channel_49x10_npz_as_its_input(tmp_path):
    (tmp_path / "kws_net.py").write_text(KWS_SOURCE)
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "cal.npz", images=rng.uniform(-1, 1, (32, 1, 49, 10)).astype(np.float32))
    np.savez(tmp_path / "eval.npz", images=rng.uniform(-1, 1, (16, 1, 49, 10)).astype(np.float32),
             labels=np.arange(16) % 4)
    code, _, err, _ = edgepack_cli("compile", "--model", f"{tmp_path / 'kws_net.py'}:KwsNet", "--classes", "4",
                                   "--target", "c-host", "--calibration", tmp_path / "cal.npz", "--eval-data",
                                   tmp_path / "eval.npz", "-o", tmp_path / "out")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "plan.json").read_text())["input"]["shape"] == [1, 49, 10]
    code, out, err, _ = edgepack_cli("bench", tmp_path / "out")
    assert code == 0 and "result: PASS" in out, out + err
