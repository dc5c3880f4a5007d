"""Cross-layer equalization (edgepack.quantize.equalize): the folded model's function is kept (fp32 outputs
within 1e-4), per-channel weight ranges are evened out, ReLU6 channels whose clip acts and layers feeding a
residual add are left as they were, and the config / CLI switch it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgepack.config import CompileConfig
from edgepack.errors import ConfigError
from edgepack.fold import fold
from edgepack.model import builtin
from edgepack.quantize.equalize import equalize, find_pairs, range_spread


def _unit(cin: int, cout: int, groups: int = 1, act=nn.ReLU, kernel: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act()]


def _spread_channels(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics that give folded channels ranges over four decades, as folding does in MobileNets."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(10 ** (torch.rand(n, generator=g) * 4 - 2) * 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def _chain(act=nn.ReLU, seed: int = 0) -> nn.Module:
    """conv -> dw -> pw (each BN + act) -> global pool -> linear: the MobileNet chain CLE works on."""
    torch.manual_seed(seed)
    layers = _unit(3, 8, act=act) + _unit(8, 8, groups=8, act=act) + _unit(8, 16, act=act, kernel=1)
    return _spread_channels(nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)), seed)


def _images(n: int = 16, size: int = 12, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def _run(model: nn.Module, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.from_numpy(images))


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_relu_chain_keeps_its_function_and_evens_out_the_weight_ranges():
    folded, images = fold(_chain(nn.ReLU)), _images()
    equalized, record = equalize(folded, images)
    assert record["pairs"] == 2 and record["converged"]
    assert torch.allclose(_run(equalized, images), _run(folded, images), atol=1e-4)
    before = [range_spread(c) for c in _convs(folded)]
    after = [range_spread(c) for c in _convs(equalized)]
    assert after[0] < before[0] / 20 and after[1] < before[1] / 20  # the last conv's outputs feed no conv


def test_relu_chain_is_equalized_without_data_too():
    folded, images = fold(_chain(nn.ReLU, seed=3)), _images()
    equalized, _ = equalize(folded)  # data-free: ReLU is positively homogeneous
    assert torch.allclose(_run(equalized, images), _run(folded, images), atol=1e-4)
    assert range_spread(_convs(equalized)[1]) < range_spread(_convs(folded)[1]) / 5


def test_depthwise_with_a_channel_multiplier_is_not_scaled_through():
    """Its input channel i feeds outputs 2i and 2i+1: a per-input-channel scale has no per-output counterpart."""
    torch.manual_seed(7)
    model = _spread_channels(nn.Sequential(*_unit(3, 4), *_unit(4, 8, groups=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                           nn.Linear(8, 3)), 7)
    folded, images = fold(model), _images()
    assert find_pairs(folded) == []
    equalized, record = equalize(folded, images)
    assert record["pairs"] == 0 and torch.allclose(_run(equalized, images), _run(folded, images), atol=1e-4)


def test_relu6_chain_keeps_its_function_on_the_calibration_data():
    folded, images = fold(_chain(nn.ReLU6, seed=2)), _images()
    equalized, record = equalize(folded, images)
    assert record["relu6_pairs"] == 2
    assert torch.allclose(_run(equalized, images), _run(folded, images), atol=1e-4)
    assert range_spread(_convs(equalized)[1]) < range_spread(_convs(folded)[1])


def test_relu6_channel_whose_clip_acts_is_never_scaled():
    model = _chain(nn.ReLU6, seed=4)
    with torch.no_grad():  # first conv's channel 0: pre-activation far above 6 on every image
        model[1].bias[0] = 50.0
    folded, images = fold(model), _images()
    equalized, _ = equalize(folded, images)
    first, first_eq = _convs(folded)[0], _convs(equalized)[0]
    assert torch.equal(first.weight[0], first_eq.weight[0]) and torch.equal(first.bias[0], first_eq.bias[0])
    assert not torch.equal(first.weight, first_eq.weight)  # the other channels were scaled
    assert torch.allclose(_run(equalized, images), _run(folded, images), atol=1e-4)


def test_relu6_pairs_are_left_alone_without_calibration_data():
    folded = fold(_chain(nn.ReLU6))
    equalized, record = equalize(folded)
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(_convs(folded), _convs(equalized)))
    assert "left alone" in record["relu6_rule"]


class _Residual(nn.Module):
    """stem -> [expand -> dw -> project] + stem: the stem's and the projection's outputs feed the add."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*_unit(3, 8))
        self.block = nn.Sequential(*_unit(8, 16, kernel=1), *_unit(16, 16, groups=16),
                                   nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x):
        x = self.stem(x)
        return self.head(x + self.block(x))


def test_layers_feeding_a_residual_add_keep_their_outputs():
    torch.manual_seed(5)
    folded, images = fold(_spread_channels(_Residual(), 5)), _images()
    pairs = find_pairs(folded)
    # expand -> dw -> project; the stem's and the projection's output channels are never scaled
    assert [(p.first, p.second) for p in pairs] == [("block.0", "block.3"), ("block.3", "block.6")]
    equalized, _ = equalize(folded, images)
    module = lambda model, name: dict(model.named_modules())[name]  # noqa: E731
    assert torch.equal(module(folded, "stem.0").weight, module(equalized, "stem.0").weight)
    outputs = {}
    for tag, model in (("before", folded), ("after", equalized)):
        handle = module(model, "block.6").register_forward_hook(lambda m, i, o, tag=tag: outputs.__setitem__(tag, o))
        _run(model, images)
        handle.remove()
    assert torch.allclose(outputs["before"], outputs["after"], atol=1e-5)
    assert torch.allclose(_run(equalized, images), _run(folded, images), atol=1e-4)


def test_high_bias_moves_into_an_unpadded_next_layer():
    model = _chain(nn.ReLU, seed=6)
    with torch.no_grad():  # the depthwise conv's channel 2 is always well above zero
        model[4].bias[2] = 40.0
    folded, images = fold(model), _images()
    equalized, record = equalize(folded, images)
    assert record["high_bias_absorbed_channels"] >= 1
    without, _ = equalize(folded, images, absorb_bias=False)
    dw, dw_without = _convs(equalized)[1], _convs(without)[1]
    assert dw.bias[2] < dw_without.bias[2] - 1
    assert torch.allclose(_run(equalized, images), _run(folded, images), atol=1e-4)


def test_mobilenet_v2_pairs_skip_every_layer_that_feeds_an_add():
    folded = fold(builtin.build("mobilenet_v2", 0.35, 96, 10).eval())
    pairs = find_pairs(folded)
    adds = [n for n in folded.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    feeding_adds = {a.target for add in adds for a in add.args if hasattr(a, "op") and a.op == "call_module"}
    assert feeding_adds and not feeding_adds & {p.first for p in pairs}
    assert len(pairs) > 30 and sum(p.activation == "relu6" for p in pairs) > 30


def test_equalize_switch_is_validated_and_the_cli_turns_it_off():
    from edgepack.cli.compile_cmd import _torch_config
    from edgepack.cli.main import build_parser

    assert CompileConfig().equalize is True
    with pytest.raises(ConfigError, match="equalize='no' is not valid"):
        CompileConfig(equalize="no")
    args = build_parser().parse_args(["compile", "--target", "host", "--no-equalize"])
    assert _torch_config(args).equalize is False
    assert _torch_config(build_parser().parse_args(["compile", "--target", "host"])).equalize is True
