"""`edgepack info --model FILE.py:NAME`: the per-layer report of the user's own model (as compile builds it), on
the input --input-shape names; flags that only mean something for the built-in MobileNets are refused in one line."""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

MODEL = '''
from torch import nn

class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, (10, 4), stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Dropout(0.2), nn.LazyLinear(3))

    def forward(self, x):
        return self.body(x)

class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(640, 128), nn.ReLU(), nn.Linear(128, 640))

    def forward(self, x):
        return self.fc(x)
'''


@pytest.fixture
def model_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynet.py").write_text(MODEL)
    return "mynet.py"


def test_info_reports_an_own_cnn_on_a_rectangular_input(model_file, capsys):
    code, out, err = run_cli(capsys, "info", "--model", f"{model_file}:Cnn", "--input-shape", "1,49,10", "--json", "-")
    assert code == 0 and err == "", err
    report = json.loads(out)
    conv, fc = report["layers"]
    # conv 10x4 stride 2 on 49x10: 20x4 outputs of 1*10*4 taps; pool 2 -> 8x10x2 = 160 features into 3 classes
    assert conv["type"] == "Conv 10x4" and conv["output_shape"] == [8, 20, 4] and conv["macs"] == 8 * 20 * 4 * 40
    assert fc["macs"] == 160 * 3 and report["input_shape"] == [1, 49, 10]
    assert report["batchnorm_params"] == 16 and report["params"] == 8 * 40 + 8 + 160 * 3 + 3


def test_info_reports_a_vector_model_in_exact_counts_not_millions(model_file, capsys):
    code, out, err = run_cli(capsys, "info", "--model", f"{model_file}:Autoencoder", "--input-shape", "640")
    assert code == 0 and err == "", err
    assert "Autoencoder (mynet.py:Autoencoder) input 640" in out
    assert "= 163,840 Mult-Adds, 164,608 parameters" in out


@pytest.mark.parametrize("argv, message", [
    (("--model", "mynet.py:Autoencoder"), "Autoencoder on a 3x224x224 input failed (RuntimeError"),
    (("--model", "mynet.py:Cnn", "--alpha", "0.5"), "--alpha applies to the built-in MobileNets"),
    (("--model", "mynet.py:Cnn", "--input-shape", "1,49"), "--input-shape '1,49' is not C,H,W or F"),
    (("--model", "mynet.py:Cnn", "--input-shape", "1,49,10", "--resolution", "64"), "both set the input"),
    (("--input-shape", "3,4,4"), "--input-shape is for your own --model FILE.py:NAME"),
    (("--model", "missing.py:Cnn"), "missing.py does not exist"),
], ids=["wrong input", "alpha", "bad shape", "two inputs", "builtin shape", "no file"])
def test_info_refuses_bad_flags_for_an_own_model_in_one_line(model_file, capsys, argv, message):
    code, out, err = run_cli(capsys, "info", *argv)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, err
