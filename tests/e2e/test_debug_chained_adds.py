"""debug compares every add with the fp32 tensors around it, also an add that reads another add (MobileNetV2's
second and third block of a stage: no module call makes either add, so the first add's fp32 output must come
from what its first reader takes in); before, those adds showed '-' for both SQNRs."""
import pytest
import torch
from torch import nn

import edgepack
from edgepack.benchmark.debug import format_debug

pytestmark = pytest.mark.slow  # compiles an artifact


class ChainedResiduals(nn.Module):
    """A stem and three residual blocks in a row (each add's first input is the add before it), 4 classes, 16x16."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                                  nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)) for _ in range(3))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def test_every_add_of_a_residual_chain_gets_its_sqnr(tmp_path):
    torch.manual_seed(3)
    model = ChainedResiduals().eval()
    inputs = torch.rand(40, 3, 16, 16)
    out = edgepack.compile(model=model, target="host", calibration=inputs[:32], output=str(tmp_path / "art"))
    d = edgepack.debug(out, images=16, model=model, calibration=inputs[:32])
    adds = [r for r in d["layers"] if r["kind"] == "add"]
    assert len(adds) == 3, [r["kind"] for r in d["layers"]]
    for r in adds:
        assert r["isolated_sqnr_db"] is not None and r["isolated_sqnr_db"] > 15, r
        assert r["cumulative_sqnr_db"] is not None and r["clipped_percent"] is not None, r
    assert "- : the model has no fp32 tensor" not in format_debug(d)
