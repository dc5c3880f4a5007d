import json

import pytest
import torch

from edgepack.errors import ConfigError
from edgepack.model.builtin import BUILTIN
from edgepack.model.mobilenet import MobileNetV1, scaled_channels
from edgepack.model.profile import summary
from tests.conftest import run_cli

ALPHAS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_shapes(alpha, resolution):
    model = MobileNetV1(alpha, resolution, 10).eval()
    feats = model.features(torch.zeros(1, 3, resolution, resolution))
    assert feats.shape == (1, scaled_channels(1024, alpha), resolution // 32, resolution // 32)
    assert model(torch.zeros(2, 3, resolution, resolution)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 27  # 1 full + 13 dw + 13 pw; with the FC: the paper's 28 layers
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 27


# The paper's Table 6 (width) and Table 7 (resolution): (alpha, resolution) -> (Mult-Adds M, params M)
PAPER = {
    (1.0, 224): (569, 4.2), (0.75, 224): (325, 2.6), (0.5, 224): (149, 1.3), (0.25, 224): (41, 0.5),
    (1.0, 192): (418, 4.2), (1.0, 160): (290, 4.2), (1.0, 128): (186, 4.2),
}


@pytest.mark.parametrize("key", PAPER)
def test_counts_match_paper(capsys, key):
    alpha, resolution = key
    code, out, _ = run_cli(capsys, "info", "--alpha", str(alpha), "--resolution", str(resolution), "--classes", "1000", "--json")
    assert code == 0
    report = json.loads(out)
    macs, params = PAPER[key]
    assert abs(report["macs"] / 1e6 - macs) < 1.0  # the paper prints whole millions (290.7 is printed 290)
    assert round(report["params"] / 1e6, 1) == params


def test_table2_shares():
    s = summary(MobileNetV1(1.0, 224, 1000), (3, 224, 224))["by_type"]
    assert round(s["Conv 1x1"]["macs_share"] * 100, 2) == 94.86
    assert round(s["Conv DW 3x3"]["macs_share"] * 100, 2) == 3.06
    assert round(s["Fully Connected"]["macs_share"] * 100, 2) == 0.18
    assert round(s["Conv DW 3x3"]["params_share"] * 100, 2) == 1.06


def test_info_default_classes_are_compiles(capsys):
    """info reports the model compile builds: a built-in model without --classes has compile's 10 (the digits)."""
    from edgepack.config import CompileConfig

    code, out, _ = run_cli(capsys, "info", "--alpha", "0.25", "--resolution", "32", "--json")
    assert code == 0 and json.loads(out)["classes"] == CompileConfig.classes == 10


@pytest.mark.parametrize("name", BUILTIN)
def test_info_default_alpha_is_compiles(capsys, name):
    """info without --alpha reports the width compile builds without it (model.builtin.default_alpha)."""
    from edgepack.config import CompileConfig

    code, out, err = run_cli(capsys, "info", "--model", name, "--resolution", "32", "--json")
    assert code == 0, err
    assert json.loads(out)["alpha"] == CompileConfig(architecture=name).alpha


def test_info_human_readable(capsys):
    code, out, _ = run_cli(capsys, "info", "--alpha", "0.5", "--resolution", "160")
    assert code == 0 and "Conv DW 3x3" in out and "Mult-Adds" in out


@pytest.mark.parametrize("alpha", ["0", "1.5", "abc", "-0.5", "nan"])
def test_bad_alpha(alpha):
    with pytest.raises(ConfigError, match="alpha"):
        MobileNetV1(alpha, 224)


@pytest.mark.parametrize("resolution", ["100", "0", "16", "abc", "224.5"])
def test_bad_resolution(resolution):
    with pytest.raises(ConfigError, match="resolution"):
        MobileNetV1(1.0, resolution)
