"""A user's PyTorch CNN ending in a softmax over its classes (nn.Softmax(dim=1), F.softmax(dim=-1), torch.softmax,
Tensor.softmax): by default the softmax is dropped (the plan, and the fp32 figures, are of the logits; the manifest
says so), with keep_softmax=True it is the plan's softmax layer (TFLite's int8 SOFTMAX: output scale 1/256, zero
point -128, beta 1, its input the classifier's own quantization). A softmax anywhere else (not last, over another
dim, over a map) is refused naming the layer and the fix, before calibration. The fast tests build plans through
edgepack.frontends.torch.to_plan (no backend compile); the slow ones compile for c-host and bench bit-exact."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import edgepack
from edgepack.artifact import verify
from edgepack.config import CompileConfig
from edgepack.data import Dataset
from edgepack.errors import ConfigError, UnsupportedModelError
from edgepack.frontends.torch import SOFTMAX_DROPPED, SOFTMAX_KEPT, to_plan, trailing_softmax
from edgepack.ops.softmax import SOFTMAX_OUTPUT
from edgepack.plan import reference
from edgepack.quantize.layers import SUPPORTED_LAYERS
from tests.conftest import run_cli

RES, CLASSES = 16, 3
NET_SOURCE = '''
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    """conv-BN-ReLU x2, global pool, Linear(16, 3), then `end` (a softmax spelling, or none)."""

    def __init__(self, end="module"):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, 3)
        self.softmax = nn.Softmax(dim=1)
        self.end = end

    def forward(self, x):
        if self.end == "middle":  # a softmax over the features, then the classifier
            return self.fc(self.softmax(self.features(x)))
        if self.end == "map":  # over the channels of a (N, C, H, W) map
            conv, bn, relu = self.features[0], self.features[1], self.features[2]
            return self.fc(F.softmax(relu(bn(conv(x))), dim=1).mean((2, 3)).repeat(1, 2))
        y = self.fc(self.features(x))
        ends = {"none": lambda: y, "module": lambda: self.softmax(y), "functional": lambda: F.softmax(y, dim=-1),
                "torch": lambda: torch.softmax(y, 1), "method": lambda: y.softmax(1),
                "batch_dim": lambda: F.softmax(y, dim=0)}
        return ends[self.end]()


def middle():
    return Net("middle")


def batch_dim():
    return Net("batch_dim")


def module():
    return Net("module")
'''
SPELLINGS = ["module", "functional", "torch", "method"]


def net(end: str = "module") -> nn.Module:
    """``Net(end)``, seeded, with non-trivial BatchNorm statistics, in eval mode."""
    namespace: dict = {}
    exec(NET_SOURCE, namespace)
    torch.manual_seed(0)
    model = namespace["Net"](end).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((64, 3, RES, RES), dtype=np.float32)


def plan_of(end: str, images: np.ndarray, keep: bool):
    config = CompileConfig(target="c-host", model_name="Net", resolution=RES, classes=CLASSES, keep_softmax=keep)
    return to_plan(net(end), Dataset(images[:32], None, "random"), config)


def quantized(plan, images: np.ndarray) -> np.ndarray:
    q = plan.input_q
    return np.clip(np.round(images / q.scale) + q.zero_point, -128, 127).astype(np.int8)


@pytest.mark.parametrize("end", SPELLINGS)
def test_a_trailing_softmax_is_dropped_by_default_and_kept_when_asked(end, images):
    """Dropped: the plan is exactly the model without the softmax's. Kept: that plan plus a softmax layer reading the
    classifier's int8 output in its own quantization, writing TFLite's 1/256, -128 with beta 1."""
    logits, dropped, kept = plan_of("none", images, False), plan_of(end, images, False), plan_of(end, images, True)
    assert [layer.kind for layer in dropped.layers] == [layer.kind for layer in logits.layers]
    assert dropped.layers[-1].kind == "fc" and dropped.output_q == logits.output_q
    x = quantized(logits, images[32:])
    assert np.array_equal(reference.run(dropped, x), reference.run(logits, x))
    softmax = kept.layers[-1]
    assert [layer.kind for layer in kept.layers] == [layer.kind for layer in logits.layers] + ["softmax"]
    assert softmax.output_q == SOFTMAX_OUTPUT and softmax.params.beta == 1.0
    assert softmax.input_q == kept.layers[-2].output_q == logits.output_q
    assert kept.problems() == []


def test_the_kept_softmax_outputs_int8_probabilities_of_the_logits(images):
    """Each image's dequantized outputs sum to 1 (within the int8 rounding), rank as the logits do, and stay
    within 2 steps of the float softmax of the dequantized int8 logits."""
    logits, kept = plan_of("none", images, False), plan_of("module", images, True)
    x = quantized(logits, images[32:])
    z = (reference.run(logits, x).astype(np.float64) - logits.output_q.zero_point) * logits.output_q.scale
    p = (reference.run(kept, x).astype(np.float64) + 128) / 256
    assert np.all(np.abs(p.sum(axis=1) - 1) <= CLASSES / 256), p.sum(axis=1)
    want = np.exp(z - z.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    assert np.abs(p - want).max() <= 2 / 256
    assert len(np.unique(p)) > 4  # spread probabilities: the test can fail


def test_dropping_leaves_the_fp32_model_returning_its_logits(images):
    """The fp32 figures are computed on what trailing_softmax returns: the logits, consistent with the int8 plan."""
    model, x = net("functional"), torch.from_numpy(images[:8])
    config = CompileConfig(model_name="Net", resolution=RES, classes=CLASSES)
    stripped, record = trailing_softmax(config, model)
    with torch.no_grad():
        assert torch.equal(stripped(x), model.fc(model.features(x)))
    assert record == {"softmax": SOFTMAX_DROPPED}
    kept, record = trailing_softmax(CompileConfig(model_name="Net", resolution=RES, classes=CLASSES,
                                                  keep_softmax=True), model)
    assert kept is model and record == {"softmax": SOFTMAX_KEPT}
    plain = net("none")
    assert trailing_softmax(config, plain) == (plain, {})  # no softmax: the model as given


@pytest.mark.parametrize("end, words", [
    ("middle", "layer 'softmax' (Softmax): the softmax is not the model's last op, which the int8 plan does not "
               "support: move it to the end, over the (N, classes) logits, or remove it"),
    ("batch_dim", "softmax (F.softmax): the softmax is over dim 0, which the int8 plan does not support: use dim=1 "
                  "(or -1), over the classes"),
    ("map", "softmax (F.softmax): the softmax is over a 4-D tensor (N, 8, 8, 8), which the int8 plan does not "
            "support: apply it to the (N, classes) output of the last Linear"),
])
@pytest.mark.parametrize("keep", [False, True])
def test_a_softmax_elsewhere_is_refused_by_name_before_calibration(end, words, keep, images, capsys, monkeypatch):
    monkeypatch.setenv("EDGEPACK_PROGRESS", "on")  # the calibration loop would draw its "calibrating" bar
    with pytest.raises(UnsupportedModelError) as e:
        plan_of(end, images, keep)
    assert str(e.value) == words and "calibrating" not in capsys.readouterr().err


def test_softmax_is_in_the_supported_list_with_its_condition():
    assert "Softmax (the last op, over the classes: dim=1 of (N, classes); dropped unless keep_softmax)" in SUPPORTED_LAYERS


def test_keep_softmax_is_taken_for_a_user_model_and_refused_for_a_builtin():
    assert CompileConfig(model_name="Net", resolution=RES, classes=CLASSES, keep_softmax=True).keep_softmax is True
    with pytest.raises(ConfigError, match="the built-in models end in their logits; drop the flag"):
        CompileConfig(target="c-host", keep_softmax=True)


@pytest.mark.parametrize("name, words", [("middle", "layer 'softmax' (Softmax): the softmax is not the model's last op"),
                                         ("batch_dim", "softmax (F.softmax): the softmax is over dim 0")])
def test_the_cli_refuses_a_misplaced_softmax_in_one_line_with_no_artifact(name, words, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEPACK_PROGRESS", "off")
    (tmp_path / "net.py").write_text(NET_SOURCE)
    pixels = np.random.default_rng(0).integers(0, 256, (24, 3, RES, RES), dtype=np.uint8)
    np.savez(tmp_path / "calib.npz", images=pixels[:16], labels=np.arange(16) % CLASSES)
    np.savez(tmp_path / "eval.npz", images=pixels[16:], labels=np.arange(8) % CLASSES)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "compile", "--target", "c-host", "--model", f"{tmp_path / 'net.py'}:{name}",
                           "--resolution", str(RES), "--calibration", str(tmp_path / "calib.npz"), "--eval-data",
                           str(tmp_path / "eval.npz"), "--mean", "0", "--std", "1", "--keep-softmax", "-o", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not out.exists()


def compile_net(target: str, folder, images: np.ndarray, **options):
    labels = np.arange(16) % CLASSES
    return edgepack.compile(net("module"), target, calibration=images[:48], eval_data=(images[48:], labels),
                            output=str(folder / target), **options)


@pytest.mark.slow
def test_a_kept_softmax_compiles_for_c_host_and_benches_bit_exact(images, tmp_path):
    """c-host: bench PASS with both bit-exact checks; the golden outputs are int8 probabilities (each image's
    dequantized outputs sum to about 1) within 2 steps of the fp32 model's softmax of the same images."""
    out = compile_net("c-host", tmp_path, images, keep_softmax=True)
    manifest = verify(out)
    assert manifest["model"]["softmax"] == SOFTMAX_KEPT
    assert manifest["plan"]["output"] == {"scale": 1 / 256, "zero_point": -128}
    report = edgepack.bench(out, count=3, warmup=1)
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    assert len([c for c in report["checks"] if "bit-exact" in c["name"] and c["passed"]]) == 2, report["checks"]
    golden_x, golden_y = np.load(out / "golden_input.npy"), np.load(out / "golden_output.npy")
    p = (golden_y.reshape(len(golden_x), -1).astype(np.float64) + 128) / 256
    assert p.shape[1] == CLASSES and np.all(np.abs(p.sum(axis=1) - 1) <= CLASSES / 256), p
    with torch.no_grad():
        fp32 = net("module")(torch.from_numpy(images[48:48 + len(golden_x)])).numpy()
    assert np.abs(p - fp32).max() < 0.1  # the golden images are the first eval images, as given


@pytest.mark.slow
def test_without_keep_softmax_the_manifest_says_it_was_dropped(images, tmp_path):
    """ONNX Runtime's host target (no C compile): the plan ends in the logits, fp32 accuracy is the model's."""
    out = compile_net("host", tmp_path, images)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["softmax"] == SOFTMAX_DROPPED
    assert manifest["plan"]["output"] != {"scale": 1 / 256, "zero_point": -128}
    with torch.no_grad():
        top1 = net("module")(torch.from_numpy(images[48:])).argmax(1).numpy()
    assert manifest["metrics"]["fp32_accuracy"] == pytest.approx(float((top1 == np.arange(16) % CLASSES).mean()))
