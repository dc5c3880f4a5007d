"""Empirical bias correction (edgepack.quantize.bias_correction): with the weights rounded as PTQ rounds them,
each corrected layer's mean output per channel over the calibration set matches fp32 (the error without it is
far larger), weights int8 represents exactly leave the model unchanged, the plan keeps its int8 weights and takes
the corrected biases, and the config / CLI switch it (PTQ only)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from edgepack.config import CompileConfig, WeightGranularity
from edgepack.errors import ConfigError
from edgepack.quantize.bias_correction import correct_biases, layers_in_order, output_means, quantized_weight

PER_TENSOR, PER_CHANNEL = WeightGranularity.PER_TENSOR, WeightGranularity.PER_CHANNEL


def _chain(seed: int = 0, bias: bool = True) -> nn.Module:
    """conv -> dw -> pw -> pool -> fc with output channels whose weight ranges span three decades (as BatchNorm
    folding leaves them): one per-tensor int8 scale rounds the small channels coarsely."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=bias), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=bias), nn.ReLU(),
                          nn.Conv2d(8, 16, 1, bias=bias), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5, bias=bias))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_((10 ** (torch.rand(m.out_channels, generator=g) * 3 - 1.5)).view(-1, 1, 1, 1))
    return model.eval()


def _images(n: int = 48, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.3, 1.0, (n, 3, 8, 8)).astype(np.float32)


def _rounded(model: nn.Module, granularity: WeightGranularity) -> nn.Module:
    """``model`` with every conv / fc weight rounded as PTQ rounds it (the simulated int8 weights)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(quantized_weight(m.weight, granularity))
    return model


def _mean_errors(model: nn.Module, fp32: nn.Module, images: np.ndarray, granularity) -> dict:
    """Per layer, the largest |mean output of the rounded ``model`` - mean output of ``fp32``| over the channels."""
    names, _ = layers_in_order(fp32, torch.from_numpy(images[:2]))
    reference = output_means(fp32, names, images)
    rounded = output_means(_rounded(model, granularity), names, images)
    return {n: float((rounded[n] - reference[n]).abs().max()) for n in names}


PASSES = {"one pass over the graph": torch.fx.symbolic_trace, "one partial pass per layer": lambda model: model}


@pytest.mark.parametrize("passes", PASSES)
@pytest.mark.parametrize("granularity", [PER_TENSOR, PER_CHANNEL])
def test_each_corrected_layer_keeps_its_fp32_mean_output_per_channel(granularity, passes):
    """Both ways of running the layers in order (an fx graph in one pass, any module one pass per layer)."""
    fp32, images = PASSES[passes](_chain()), _images()
    corrected, record = correct_biases(fp32, images, granularity)
    after = _mean_errors(corrected, fp32, images, granularity)
    before = _mean_errors(fp32, fp32, images, granularity)
    assert record["applied"] and record["layers"] == 4 and record["weights"] == granularity.value
    assert record["passes"] == passes
    for name in after:
        assert after[name] < 1e-4 * max(1.0, before[name]), (name, after[name], before[name])
    assert max(before.values()) > 1e-3 and max(before.values()) > 100 * max(after.values())


def test_correction_changes_biases_only():
    fp32 = _chain()
    corrected, record = correct_biases(fp32, _images(), PER_TENSOR)
    changed = [k for k, v in fp32.state_dict().items() if not torch.equal(v, corrected.state_dict()[k])]
    assert changed and all(k.endswith(".bias") for k in changed)
    assert record["max_abs_bias_shift"] > 0 and record["max_shift_layer"] in {"0", "2", "4", "8"}


def test_weights_int8_represents_exactly_leave_the_model_unchanged():
    """Integer weights in [-127, 127] times a power of two, 127 in every channel: rounding changes nothing, so
    neither may the correction."""
    model = _chain()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = torch.randint(-127, 128, m.weight.shape, generator=g).float()
                w.view(w.shape[0], -1)[:, 0] = 127
                m.weight.copy_(w * 2 ** -7)
    for granularity in (PER_TENSOR, PER_CHANNEL):
        corrected, record = correct_biases(model, _images(), granularity)
        assert all(torch.equal(v, corrected.state_dict()[k]) for k, v in model.state_dict().items())
        assert record["max_abs_bias_shift"] == 0.0


def test_one_pass_and_layer_by_layer_give_the_same_biases():
    fp32, images = _chain(), _images()
    one, _ = correct_biases(torch.fx.symbolic_trace(fp32), images, PER_TENSOR)
    each, _ = correct_biases(fp32, images, PER_TENSOR)
    for a, b in zip(one.state_dict().values(), each.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_one_pass_falls_back_to_layer_by_layer_over_its_memory_bound(monkeypatch):
    from edgepack.quantize import bias_correction

    monkeypatch.setattr(bias_correction, "ONE_PASS_BYTES", 1000)
    _, record = correct_biases(torch.fx.symbolic_trace(_chain()), _images(), PER_TENSOR)
    assert record["passes"] == "one partial pass per layer"


@pytest.mark.parametrize("passes", PASSES)
def test_a_layer_without_bias_gets_the_correction_as_its_bias(passes):
    fp32, images = PASSES[passes](_chain(bias=False)), _images()
    corrected, _ = correct_biases(fp32, images, PER_TENSOR)
    assert all(m.bias is not None for m in corrected.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert max(_mean_errors(corrected, fp32, images, PER_TENSOR).values()) < 1e-4


class _Twice(nn.Module):
    """One conv applied twice: its single bias serves two different inputs, so no one correction is right."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(self.conv(torch.relu(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("passes", PASSES)
def test_a_layer_called_twice_is_left_alone(passes):
    model = PASSES[passes](_Twice().eval())
    corrected, record = correct_biases(model, _images(16), PER_TENSOR)
    assert record["skipped_shared_layers"] == ["conv"] and record["layers"] == 1
    assert torch.equal(corrected.conv.bias, model.conv.bias)


def test_the_plan_keeps_its_int8_weights_and_takes_the_corrected_biases():
    """The correction comes before the plan's int32 biases are derived; the weights it corrects for are the plan's
    int8 weights times their scales, and PTQ after it gives the same int8 weights and scales."""
    from edgepack.data import Dataset
    from edgepack.frontends.pt2e_plan import build_plan
    from edgepack.quantize.ptq import quantize_ptq

    fp32, images = _chain(), _images()
    calibration = Dataset(images, None, "random")
    corrected, _ = correct_biases(fp32, images, PER_TENSOR)
    plain = build_plan(quantize_ptq(torch.fx.symbolic_trace(fp32), calibration, (3, 8, 8), PER_TENSOR), (3, 8, 8))
    fixed = build_plan(quantize_ptq(torch.fx.symbolic_trace(corrected), calibration, (3, 8, 8), PER_TENSOR), (3, 8, 8))
    weighted = [(a, b) for a, b in zip(plain.layers, fixed.layers) if "weight" in a.arrays]
    modules = [m for m in fp32.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == len(modules) == 4
    for (a, b), module in zip(weighted, modules):
        int8 = torch.from_numpy(a.arrays["weight"].astype(np.float32)).reshape(module.weight.shape)
        scale = torch.from_numpy(a.arrays["weight_scale"]).view(-1, *[1] * (int8.dim() - 1))
        assert torch.allclose(int8 * scale, quantized_weight(module.weight, PER_TENSOR), rtol=1e-6, atol=0)
        assert np.array_equal(a.arrays["weight"], b.arrays["weight"])
        assert np.array_equal(a.arrays["weight_scale"], b.arrays["weight_scale"])
    assert any(not np.array_equal(a.arrays["bias"], b.arrays["bias"]) for a, b in weighted)


def test_bias_correction_switch_is_validated_ptq_only_and_the_cli_turns_it_on():
    from edgepack.cli.compile_cmd import _torch_config
    from edgepack.cli.main import build_parser

    assert CompileConfig().bias_correction is False
    with pytest.raises(ConfigError, match="bias_correction='yes' is not valid: pass True or False"):
        CompileConfig(bias_correction="yes")
    for quant in ("qat", "none"):
        with pytest.raises(ConfigError, match=f"--bias-correction applies to PTQ, not --quant {quant}.*--quant ptq"):
            CompileConfig(quant=quant, bias_correction=True)
    args = build_parser().parse_args(["compile", "--target", "host", "--bias-correction"])
    assert _torch_config(args).bias_correction is True
    assert _torch_config(build_parser().parse_args(["compile", "--target", "host"])).bias_correction is False
