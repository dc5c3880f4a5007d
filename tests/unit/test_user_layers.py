"""Issue 21, a user's own PyTorch CNN, the refusals (nothing compiles here): any input size for a user
model (the multiple-of-32 rule is the built-in MobileNets' own), Dropout and Identity accepted as the no-ops
they are in eval mode, and an unsupported layer refused by name with the complete list of the layers the
int8 plan takes (edgepack.quantize.layers), the residual `+` included, in one line before calibration."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import edgepack
from edgepack.config import CompileConfig
from edgepack.errors import ConfigError, UnsupportedModelError
from edgepack.frontends.torch import check_supported
from edgepack.quantize.layers import LAYERS, SUPPORTED_LAYERS
from tests.cli import assert_one_line, edgepack as run_edgepack

EVERY_LAYER = ["Conv2d", "BatchNorm2d", "ReLU", "ReLU6", "AdaptiveAvgPool2d(1)", "AvgPool2d", "MaxPool2d", "Hardswish",
               "Hardsigmoid", "LeakyReLU", "Flatten", "Linear", "+ (residual add)", "* (multiply)", "torch.cat (channels)",
               "Dropout", "Identity"]

REFUSED = '''
from torch import nn


class WithGELU(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.GELU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.features(x))


class WithSiLU(WithGELU):
    def __init__(self):
        super().__init__()
        self.features[3] = nn.SiLU()
'''


def test_a_user_model_takes_any_resolution_the_builtin_mobilenets_a_multiple_of_32():
    assert CompileConfig(model_name="TinyNet", resolution=48, classes=3).resolution == 48
    assert CompileConfig(model_name="TinyNet", model_spec="net.py:TinyNet", resolution="20", classes=3).resolution == 20
    with pytest.raises(ConfigError, match="resolution 48 is not a multiple of 32"):
        CompileConfig(resolution=48)
    with pytest.raises(ConfigError, match="resolution 0 is not a positive integer"):
        CompileConfig(model_name="TinyNet", resolution=0, classes=3)


def test_dropout_and_identity_pass_the_module_check():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout2d(0.1), nn.Identity(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Dropout(0.5), nn.AlphaDropout(0.2), nn.Linear(8, 3), nn.Sequential())
    check_supported(model)


def test_the_supported_list_is_every_layer_of_the_table():
    assert [layer.name for layer in LAYERS if layer.name in SUPPORTED_LAYERS] == [layer.name for layer in LAYERS]
    assert all(name in SUPPORTED_LAYERS for name in EVERY_LAYER)


@pytest.mark.parametrize("name, layer", [("WithGELU", "layer 'features.3' (GELU) is not supported"),
                                         ("WithSiLU", "layer 'features.3' (SiLU) is not supported")])
def test_an_unsupported_layer_is_refused_by_name_with_the_complete_list(name, layer, tmp_path):
    """The CLI at 48x48 (no multiple-of-32 refusal first): one line, exit 2, the layer and the whole list,
    before any data is read (no output folder)."""
    models = tmp_path / "models.py"
    models.write_text(REFUSED)
    out = tmp_path / "out"
    code, _, err, seconds = run_edgepack("compile", "--target", "host", "--model", f"{models}:{name}",
                                         "--resolution", "48", "-o", out)
    assert_one_line(code, err, 2, "edgepack compile: error:", layer, f"build the model from {SUPPORTED_LAYERS}",
                    *EVERY_LAYER)
    assert seconds < 120 and not out.exists()


class FunctionalGELU(nn.Module):
    """Every module supported, the unsupported op in forward: the graph check refuses it by node."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3, 1, 1), nn.Linear(8, 3)

    def forward(self, x):
        x = torch.nn.functional.gelu(self.conv(x))
        return self.fc(x.mean((2, 3)))


def test_an_unsupported_op_in_forward_is_refused_with_the_complete_list(tmp_path):
    calibration = np.random.default_rng(0).random((8, 3, 48, 48), dtype=np.float32)
    with pytest.raises(UnsupportedModelError) as e:
        edgepack.compile(FunctionalGELU(), "host", calibration=calibration, output=str(tmp_path / "x"))
    message = str(e.value)
    assert len(message.splitlines()) == 1 and message.startswith("gelu: operator gelu.default is not supported")
    assert message.endswith(f"build the model from {SUPPORTED_LAYERS}")
    assert not (tmp_path / "x").exists()
