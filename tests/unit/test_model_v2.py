"""MobileNetV2 (issue 13): Table 2 structure and the published Mult-Adds / parameter counts."""
import json

import pytest
import torch

from edgepack.model.mobilenet_v2 import InvertedResidual, MobileNetV2, make_divisible
from tests.conftest import run_cli

# TF-slim's MobileNetV2 checkpoint table (research/slim/nets/mobilenet/README.md), 1001 classes:
# (alpha, resolution) -> (MACs in millions as printed, parameters in millions as printed).
PUBLISHED = {
    (1.4, 224): (582, 6.06),
    (1.0, 224): (300, 3.47), (1.0, 192): (221, 3.47), (1.0, 160): (154, 3.47), (1.0, 128): (99, 3.47), (1.0, 96): (56, 3.47),
    (0.75, 224): (209, 2.61), (0.75, 192): (153, 2.61), (0.75, 160): (107, 2.61), (0.75, 128): (69, 2.61), (0.75, 96): (39, 2.61),
    (0.5, 224): (97, 1.95), (0.5, 192): (71, 1.95), (0.5, 160): (50, 1.95), (0.5, 128): (32, 1.95), (0.5, 96): (18, 1.95),
    (0.35, 224): (59, 1.66), (0.35, 192): (43, 1.66), (0.35, 160): (30, 1.66), (0.35, 128): (20, 1.66), (0.35, 96): (11, 1.66),
}


@pytest.mark.parametrize("key", PUBLISHED)
def test_info_matches_published_counts(capsys, key):
    alpha, resolution = key
    code, out, err = run_cli(capsys, "info", "--model", "mobilenet_v2", "--alpha", str(alpha),
                             "--resolution", str(resolution), "--classes", "1001", "--json")
    assert code == 0, err
    report = json.loads(out)
    macs, params = PUBLISHED[key]
    assert report["model"] == "MobileNetV2"
    assert int(report["macs"] / 1e6) == macs  # the table truncates (300.8M is printed 300)
    assert round(report["params"] / 1e6, 2) == params


def test_table2_structure():
    model = MobileNetV2(1.0, 224, 1000).eval()
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17 and sum(b.residual for b in blocks) == 10  # sum of n; stride-1 repeats add back
    assert model.features(torch.zeros(1, 3, 224, 224)).shape == (1, 1280, 7, 7)
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)


@pytest.mark.parametrize("alpha, stem, last", [(0.35, 16, 1280), (0.5, 16, 1280), (1.4, 48, 1792)])
def test_widths_round_to_eight(alpha, stem, last):
    model = MobileNetV2(alpha, 96, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == stem and convs[-1].out_channels == last
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert make_divisible(0.35 * 16) == 8 and make_divisible(0.35 * 32) == 16  # never more than 10% down


def test_info_refuses_unknown_model_and_width(capsys):
    code, _, err = run_cli(capsys, "info", "--model", "mobilenet_v3")
    assert code == 2 and "mobilenet_v1, mobilenet_v2" in err
    code, _, err = run_cli(capsys, "info", "--model", "mobilenet_v2", "--alpha", "1.5")
    assert code == 2 and "(0, 1.4]" in err
    code, _, err = run_cli(capsys, "info", "--alpha", "1.4")  # V1's widths stop at 1
    assert code == 2 and "(0, 1]" in err
