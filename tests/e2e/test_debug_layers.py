"""`debug` maps every plan layer back to the model: one row per layer (a residual add and a max pool
included, compared with the fp32 tensors around them), named by the module path `info` and the user see,
"worst" singling out a few layers, and a plot whose legend lists only the kinds the plan has."""
import numpy as np
import pytest
import torch
from torch import nn

import edgepack
from edgepack.benchmark.debug import format_debug, plot_debug, worst_count
from edgepack.plan.plan import Plan

pytestmark = pytest.mark.slow  # compiles an artifact


class ResidualNet(nn.Module):
    """Conv, max pool, a residual block summed with `+`, average pool, classifier: 4 classes, 24x24."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        x = self.pool(self.stem(x))
        return self.head(torch.relu(x + self.block(x)))


@pytest.fixture(scope="module")
def residual_artifact(tmp_path_factory):
    torch.manual_seed(1)
    model = ResidualNet().eval()
    inputs = torch.rand(40, 3, 24, 24)
    out = edgepack.compile(model=model, target="host", calibration=inputs[:32],
                           output=str(tmp_path_factory.mktemp("dbg") / "art"))
    return out, model, inputs[:32]


def test_debug_has_a_row_per_plan_layer_named_by_module_path(residual_artifact):
    out, model, calibration = residual_artifact
    d = edgepack.debug(out, images=16, model=model, calibration=calibration)
    plan = Plan.load(out)
    assert [r["layer"] for r in d["layers"]] == [layer.name for layer in plan.layers]
    by_kind = {r["kind"]: r for r in d["layers"]}
    assert {"add", "maxpool"} <= set(by_kind), [r["kind"] for r in d["layers"]]
    # the add and the pool are compared with the fp32 tensors around them, as every other layer
    assert by_kind["add"]["isolated_sqnr_db"] > 15 and by_kind["maxpool"]["isolated_sqnr_db"] > 15, d["layers"]
    modules = {name for name, _ in model.named_modules()}
    named = [r["module"] for r in d["layers"] if r["module"]]
    assert "stem.0" in named and set(named) <= modules, named
    assert len(d["worst"]) == worst_count(len(d["layers"])) < len(d["layers"]) // 2
    text = format_debug(d)
    assert "stem.0" in text and text.count("<- worst") == len(d["worst"])


def test_debug_plot_lists_only_the_kinds_the_plan_has(residual_artifact, tmp_path):
    out, model, calibration = residual_artifact
    d = edgepack.debug(out, images=8, model=model, calibration=calibration)
    import matplotlib.pyplot as plt

    seen = {}
    real_savefig = plt.Figure.savefig

    def savefig(fig, path, **kw):
        seen["legend"] = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
        seen["ticks"] = [t.get_text() for t in fig.axes[1].get_xticklabels()]
        return real_savefig(fig, path, **kw)

    plt.Figure.savefig = savefig
    try:
        path = plot_debug(d, tmp_path / "d.png")
    finally:
        plt.Figure.savefig = real_savefig
    assert path.stat().st_size > 0
    assert sorted(seen["legend"]) == sorted({r["kind"] for r in d["layers"]})
    assert len(seen["ticks"]) == len(d["layers"]) and "stem.0" in seen["ticks"][0]


class SpreadNet(nn.Module):
    """conv1 -> relu -> conv2 -> relu -> classifier, activations as torch.relu calls (no module to hook): conv1's
    first four output channels are scaled down 100x and conv2 reads them 100x louder, the same function."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        with torch.no_grad():
            self.conv1.weight[:4] /= 100
            self.conv1.bias[:4] /= 100
            self.conv2.weight[:, :4] *= 100

    def forward(self, x):
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


@pytest.mark.parametrize("equalize", [False, True], ids=["without equalization", "with equalization"])
def test_debug_names_the_layers_a_per_tensor_collapse_starts_from(equalize, tmp_path):
    torch.manual_seed(2)
    model, inputs = SpreadNet().eval(), torch.rand(32, 3, 16, 16)
    out = edgepack.compile(model=model, target="host", calibration=inputs, weight_granularity="per-tensor",
                           equalize=equalize, output=str(tmp_path / "art"))
    d = edgepack.debug(out, images=16, model=model, calibration=inputs)
    rows = {r["module"]: r for r in d["layers"]}
    text = format_debug(d)
    if not equalize:  # conv1's spread leaves conv2's reading of its quiet channels to a few int8 steps
        assert rows["conv1"]["weight_range_spread"] > 50 and d["breaking"] == [rows["conv2"]["layer"]], text
        assert "break the int8 model (isolated SQNR < 15 dB): conv2 (conv" in text
    else:  # equalization evened conv1 out: the table shows the spread before and after, nothing breaks
        assert rows["conv1"]["weight_range_spread_before_equalization"] > 50 > 5 > rows["conv1"]["weight_range_spread"]
        assert d["breaking"] == [] and all(r["isolated_sqnr_db"] > 30 for r in d["layers"]), text
        assert "before CLE" in text and "break the int8 model (isolated SQNR < 15 dB): none" in text


def test_calibration_method_is_recorded_and_debug_reports_what_each_layer_clips(residual_artifact, tmp_path):
    _, model, calibration = residual_artifact
    out = edgepack.compile(model=model, target="host", calibration=calibration, calibration_method="minmax",
                           output=str(tmp_path / "minmax"))
    import json

    assert json.loads((out / "manifest.json").read_text())["quantization"]["activation_calibration"] == "minmax"
    seen = json.loads((out / "manifest.json").read_text())["quantization"]["calibration"]["images"]  # 80% of them
    d = edgepack.debug(out, images=seen, model=model, calibration=calibration[:seen])
    assert d["calibration_method"] == "minmax" and "minmax activation ranges" in format_debug(d)
    # min/max over the very inputs debug runs: nothing is clipped; the default histogram search clips some layer
    assert all(r["clipped_percent"] == 0 for r in d["layers"] if r["clipped_percent"] is not None), d["layers"]
    histogram = edgepack.debug(residual_artifact[0], images=seen, model=model, calibration=calibration[:seen])
    assert histogram["calibration_method"] == "histogram"
    assert max(r["clipped_percent"] or 0 for r in histogram["layers"]) > 0, histogram["layers"]
