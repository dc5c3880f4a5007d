"""A pad or an upsample the int8 plan cannot express (reflect / replicate padding, channel padding, cropping; a
fractional scale factor, bilinear or nearest-exact mode) is refused by `edgepack compile --model FILE.py:NAME` in
one stderr line naming the layer, the problem and the fix, exit 2, no artifact folder, and BEFORE calibration:
with progress drawn (EDGEPACK_PROGRESS=on) no "calibrating" bar appears (the control: to_plan on a ConstantPad2d
whose value lies outside its input's range draws it). That pad value widens the range the pad shares with its
input; a value the range cannot hold is refused naming the layer. No compile for a target runs: about 1 s a case."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import run_cli

NET_SOURCE = '''
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    """conv-BN-ReLU, then `edge` (a pad or an upsample, a module or a function), conv-ReLU, global pool, Linear."""

    def __init__(self, edge=nn.Identity(), channels=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.edge = edge if isinstance(edge, nn.Module) else None
        self.fn = None if isinstance(edge, nn.Module) else edge
        self.head = nn.Sequential(nn.Conv2d(channels, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(8, 3))

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.edge(x) if self.edge is not None else self.fn(x))


def reflect():
    return Net(lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"))


def replicate():
    return Net(lambda x: F.pad(x, (1, 1, 1, 1), mode="replicate"))


def channel_pad():
    return Net(lambda x: F.pad(x, (0, 0, 0, 0, 1, 1)), channels=10)


def crop():
    return Net(nn.ConstantPad2d((-1, 0, 0, 0), 0.0))


def fractional():
    return Net(nn.Upsample(scale_factor=1.5, mode="nearest"))


def bilinear():
    return Net(nn.Upsample(scale_factor=2, mode="bilinear"))


def nearest_exact():
    return Net(lambda x: F.interpolate(x, scale_factor=2, mode="nearest-exact"))
'''
RES = 12
EARLY = [
    ("reflect", "pad (F.pad): mode 'reflect', which the int8 pad does not support: use mode='constant'"),
    ("replicate", "pad (F.pad): mode 'replicate', which the int8 pad does not support: use mode='constant'"),
    ("channel_pad", "pad (F.pad): pads the channel or batch axis (pad [0, 0, 0, 0, 1, 1]), which the int8 pad "
                    "does not support: pad height and width only"),
    ("crop", "layer 'edge' (ConstantPad2d): crops (negative pad [-1, 0, 0, 0]), which the int8 pad does not support: "
             "slice the map instead"),
    ("fractional", "layer 'edge' (Upsample): scale_factor (1.5, 1.5) is not an integer, which the int8 resize does not "
                   "support: use scale_factor=2"),
    ("bilinear", "layer 'edge' (Upsample): mode 'bilinear' (operator upsample_bilinear2d) is not supported by the int8 "
                 "plan: use mode='nearest'"),
    ("nearest_exact", "(F.interpolate): mode 'nearest-exact' (operator _upsample_nearest_exact2d) is not supported by "
                      "the int8 plan: use mode='nearest'"),
]


@pytest.fixture
def user_files(tmp_path):
    (tmp_path / "net.py").write_text(NET_SOURCE)
    pixels = np.random.default_rng(0).integers(0, 256, (24, 3, RES, RES), dtype=np.uint8)
    np.savez(tmp_path / "calib.npz", images=pixels[:16], labels=np.arange(16) % 3)
    np.savez(tmp_path / "eval.npz", images=pixels[16:], labels=np.arange(8) % 3)
    return tmp_path


def compile_cli(capsys, folder, name: str):
    """`edgepack compile` of ``name`` from net.py for c-host into folder/out: (exit code, stderr, out folder)."""
    out = folder / "out"
    code, _, err = run_cli(capsys, "compile", "--target", "c-host", "--model", f"{folder / 'net.py'}:{name}",
                           "--resolution", str(RES), "--calibration", str(folder / "calib.npz"),
                           "--eval-data", str(folder / "eval.npz"), "--mean", "0", "--std", "1", "-o", str(out))
    return code, err, out


@pytest.mark.parametrize("name, words", EARLY, ids=[n for n, _ in EARLY])
def test_a_pad_or_upsample_the_plan_cannot_express_is_refused_in_one_line_with_no_artifact(
        name, words, user_files, capsys, monkeypatch):
    monkeypatch.setenv("EDGEPACK_PROGRESS", "off")
    code, err, out = compile_cli(capsys, user_files, name)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert not out.exists()


@pytest.mark.parametrize("name, words", EARLY[::2], ids=[n for n, _ in EARLY[::2]])
def test_the_refusal_comes_before_calibration(name, words, user_files, capsys, monkeypatch):
    monkeypatch.setenv("EDGEPACK_PROGRESS", "on")  # the calibration loop draws its "calibrating" bar on stderr
    code, err, out = compile_cli(capsys, user_files, name)
    assert code == 2 and words in err.strip().splitlines()[-1], err
    assert "calibrating" not in err, err
    assert not out.exists()


def _net(edge):
    namespace: dict = {}
    exec(NET_SOURCE, namespace)
    torch.manual_seed(0)
    return namespace["Net"](edge).eval()


def test_a_pad_value_outside_its_input_range_widens_the_range_the_pad_shares(capsys, monkeypatch):
    """PT2E gives a pad's input and output one observer, which sees the padded map: a ConstantPad2d(1, -50.0) after
    a ReLU calibrates its input to a range reaching -50 (at the cost of the ReLU output's steps), and the plan's
    pad constant is -50 to within half a step. The calibration bar shows on stderr (the other tests' control)."""
    from edgepack.config import CompileConfig
    from edgepack.data import Dataset
    from edgepack.frontends.torch import to_plan

    monkeypatch.setenv("EDGEPACK_PROGRESS", "on")
    images = np.random.default_rng(0).random((16, 3, RES, RES), dtype=np.float32)
    config = CompileConfig(resolution=RES, model_name="Net")
    plan = to_plan(_net(nn.ConstantPad2d(1, -50.0)), Dataset(images, None, "random"), config)
    assert "calibrating" in capsys.readouterr().err
    pad = next(layer for layer in plan.layers if layer.kind == "pad")
    q = pad.input_q
    assert pad.output_q == q and abs((pad.params.value - q.zero_point) * q.scale + 50.0) <= q.scale / 2


def test_a_pad_value_its_quantization_cannot_hold_is_refused_naming_the_layer():
    """Were an observer to clip the pad's value out of the shared range, the plan walk refuses it (clamping would
    pad another value): quantize.layers.pad_constant on the exported ConstantPad2d node, ReLU-range parameters."""
    from edgepack.errors import UnsupportedModelError
    from edgepack.quantize.layers import PAD_OPS, pad_constant
    from edgepack.quantize.ptq import export

    graph = export(_net(nn.ConstantPad2d(1, -50.0)), torch.zeros(2, 3, RES, RES)).module()
    node = next(n for n in graph.graph.nodes if n.target in PAD_OPS)
    assert pad_constant(node, 0.5, 0) == -100 and pad_constant(node, 0.2, 123) == -127
    with pytest.raises(UnsupportedModelError) as refused:
        pad_constant(node, 0.01, -128)  # [0, 2.55]
    assert str(refused.value) == ("layer 'edge' (ConstantPad2d): pad value -50 lies outside its input's calibrated "
                                  "range [0, 2.55], and the int8 pad keeps its input's quantization: pad with a value "
                                  "in that range (0 always is), or pad before the layer that narrows the range")


class _OnVector(nn.Module):
    def __init__(self, edge):
        super().__init__()
        self.fc, self.edge = nn.Linear(10, 4), edge

    def forward(self, x):
        return self.edge(self.fc(x))


@pytest.mark.parametrize("edge, refusal", [
    (lambda x: torch.nn.functional.pad(x, (1, 1)), "pad (F.pad): pads a 2-D tensor (N, 4), which the int8 pad does not "
                                                    "support: pad (N, C, H, W) maps"),
    (lambda x: torch.nn.functional.interpolate(x[:, None], scale_factor=2), "unsqueeze: operator unsqueeze.default"),
    (lambda x: torch.nn.functional.interpolate(x.reshape(-1, 4, 1, 1), scale_factor=2, mode="bicubic"),
     "(F.interpolate): mode 'bicubic' (operator upsample_bicubic2d) is not supported by the int8 plan"),
])
def test_the_graph_check_refuses_a_pad_or_resize_of_a_vector_before_calibration(edge, refusal):
    from edgepack.errors import UnsupportedModelError
    from edgepack.quantize.ptq import export
    from edgepack.quantize.quantizer import check_graph_ops

    graph = export(_OnVector(edge).eval(), torch.zeros(2, 10)).module()
    with pytest.raises(UnsupportedModelError) as refused:
        check_graph_ops(graph)
    assert refusal in str(refused.value) and "\n" not in str(refused.value)
