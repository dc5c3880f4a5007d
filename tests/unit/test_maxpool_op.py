"""The int8 max pool (edgepack.ops.maxpool, TFLite's MAX_POOL_2D): the reference against a brute-force loop over
each window's in-bounds values on random int8 with odd pads and strides, the problems a plan with one is
refused for, its typed window through plan.json / plan.npz (plan format v4 "params"), and the PyTorch front
end's check of nn.MaxPool2d / F.max_pool2d (a torch.export graph, no calibration)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgepack.errors import ArtifactError, UnsupportedModelError
from edgepack.frontends.torch import check_supported
from edgepack.ops.fc import FcParams
from edgepack.ops.maxpool import MaxPoolParams
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams
from edgepack.quantize.layers import SUPPORTED_LAYERS
from edgepack.quantize.ptq import export
from edgepack.quantize.quantizer import check_graph_ops

Q = QParams(0.05, -7)


def brute_force(x: np.ndarray, window: int, stride: int, pads, act_min: int, act_max: int) -> np.ndarray:
    """TFLite's reference_integer_ops::MaxPool, loop for loop: a window clipped to the input, max, clamp."""
    top, left, bottom, right = pads
    n, c, h, w = x.shape
    oh, ow = (h + top + bottom - window) // stride + 1, (w + left + right - window) // stride + 1
    out = np.zeros((n, c, oh, ow), np.int8)
    for b in range(n):
        for ch in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    y0, x0 = oy * stride - top, ox * stride - left
                    rows = range(max(0, y0), min(h, y0 + window))
                    cols = range(max(0, x0), min(w, x0 + window))
                    best = max(int(x[b, ch, y, xx]) for y in rows for xx in cols)
                    out[b, ch, oy, ox] = min(act_max, max(act_min, best))
    return out


def maxpool(in_shape, window: int, stride: int = 1, pads=(0, 0, 0, 0), q=Q, out_q=None, act=(-128, 127),
            out_shape=None) -> Layer:
    c, h, w = in_shape
    top, left, bottom, right = pads
    shape = out_shape or (c, (h + top + bottom - window) // stride + 1, (w + left + right - window) // stride + 1)
    return Layer("pool", "maxpool", in_shape, shape, q, out_q or q, act[0], act[1], stride=stride, pads=pads,
                 params=MaxPoolParams(window))


GEOMETRIES = [  # (input (C, H, W), window, stride, pads (top, left, bottom, right))
    ((3, 7, 9), 2, 2, (0, 0, 0, 0)),
    ((2, 11, 10), 3, 2, (1, 1, 1, 1)),  # PyTorch's MaxPool2d(3, 2, 1)
    ((4, 10, 7), 3, 2, (0, 1, 1, 1)),  # TensorFlow SAME: the odd pad bottom / right
    ((2, 9, 8), 3, 3, (2, 0, 1, 2)),  # unequal pads, a window over two pad rows
    ((3, 5, 6), 4, 1, (3, 3, 3, 3)),  # corner windows of one real value
    ((1, 6, 6), 1, 2, (0, 0, 0, 0)),  # window 1: a strided copy
]


@pytest.mark.parametrize("in_shape, window, stride, pads", GEOMETRIES)
def test_reference_is_the_max_over_each_windows_in_bounds_values(in_shape, window, stride, pads):
    rng = np.random.default_rng(window * 10 + stride)
    x = rng.integers(-128, 128, (3, *in_shape)).astype(np.int8)
    for act in ((-128, 127), (-7, 127), (-7, 40)):  # none, a ReLU from the zero point, a ReLU6-like clamp
        layer = maxpool(in_shape, window, stride, pads, act=act)
        assert Plan(Q, in_shape, [layer]).problems() == []
        got = reference.kernel(layer, x)
        assert got.dtype == np.int8 and np.array_equal(got, brute_force(x, window, stride, pads, *act))


def test_padded_positions_never_win_even_over_the_least_int8():
    """All -128 inputs: a kernel that let the padding (a zero point, or 0) into the max would return it."""
    x = np.full((1, 2, 4, 4), -128, np.int8)
    got = reference.kernel(maxpool((2, 4, 4), 3, 1, (1, 1, 1, 1), q=QParams(0.05, 20)), x)
    assert got.shape == (1, 2, 4, 4) and np.all(got == -128)


@pytest.mark.parametrize("layer, problem", [
    (maxpool((3, 8, 8), 2, 2, out_q=QParams(0.1, -7)), "pool: a maxpool must keep its input's scale and zero point"),
    (maxpool((3, 8, 8), 2, 2, out_shape=(3, 5, 5)),
     "pool: output [3, 5, 5] does not follow from input [3, 8, 8], window 2, stride 2 and pads [0, 0, 0, 0] "
     "(expected [3, 4, 4])"),
    (maxpool((3, 8, 8), 2, 2, out_shape=(4, 4, 4)), "pool: output [4, 4, 4] does not follow"),
    (maxpool((3, 8, 8), 2, 2, pads=(2, 0, 0, 0), out_shape=(3, 5, 4)),
     "pool: pads [2, 0, 0, 0] leave a window of 2 with no input value: use pads smaller than the window"),
    (maxpool((3, 8, 8), 2, 1, pads=(0, 0, 3, 0), out_shape=(3, 10, 7)), "leave a window of 2 with no input value"),
    (Layer("pool", "maxpool", (3, 4, 4), (3, 3, 3), Q, Q, params=MaxPoolParams(0)),
     "pool: window 0 is not a positive integer"),
    (Layer("pool", "maxpool", (3, 4, 4), (3, 3, 3), Q, Q, stride=0, params=MaxPoolParams(2)),
     "pool: stride 0 is not a positive integer"),
    (Layer("pool", "maxpool", (3, 4, 4), (3, 3, 3), Q, Q, pads=(0, -1, 0, 0), params=MaxPoolParams(2)),
     "pool: pads [0, -1, 0, 0] are not 4 non-negative integers"),
    (Layer("pool", "maxpool", (3, 4, 4), (3, 3, 3), Q, Q), "pool: a maxpool needs its window (MaxPoolParams)"),
    (Layer("pool", "maxpool", (3, 4, 4), (3, 3, 3), Q, Q, params=MaxPoolParams(2),
           arrays={"multiplier": np.ones(3, np.int32)}), "pool: a maxpool has no arrays, got multiplier"),
    (Layer("pool", "maxpool", (3, 4, 4), (3, 3, 3), Q, Q, params=FcParams("single")),
     "pool: params FcParams are not the maxpool op's (it takes MaxPoolParams)"),
])
def test_a_plan_with_a_broken_max_pool_is_refused_naming_the_problem(layer, problem):
    found = Plan(Q, tuple(layer.input_shape), [layer]).problems()
    assert len(found) == 1 and found[0].startswith("pool: ") and problem in found[0], found


def test_a_max_pool_reading_a_vector_is_refused():
    layer = Layer("pool", "maxpool", (48,), (3, 3, 3), Q, Q, params=MaxPoolParams(2))
    assert Plan(Q, (3, 4, 4), [layer]).problems() == ["pool: a maxpool layer reads a (C, H, W) map, not [48]"]


def test_the_window_is_saved_as_the_layers_params_and_loaded_typed(tmp_path):
    plan = Plan(Q, (2, 11, 10), [maxpool((2, 11, 10), 3, 2, (1, 0, 1, 2), act=(-7, 127))])
    plan.save(tmp_path)
    saved = json.loads((tmp_path / "plan.json").read_text())["layers"][0]
    assert saved["params"] == {"window": 3} and saved["pads"] == [1, 0, 1, 2] and saved["stride"] == 2
    loaded = Plan.load(tmp_path)
    assert loaded.layers[0].params == MaxPoolParams(3) and loaded.layers[0].meta() == plan.layers[0].meta()
    x = np.random.default_rng(5).integers(-128, 128, (4, 2, 11, 10)).astype(np.int8)
    assert np.array_equal(reference.run(loaded, x), reference.run(plan, x))


def test_a_saved_max_pool_without_its_window_is_refused_on_load(tmp_path):
    Plan(Q, (2, 6, 6), [maxpool((2, 6, 6), 2, 2)]).save(tmp_path)
    meta = json.loads((tmp_path / "plan.json").read_text())
    del meta["layers"][0]["params"]
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"is invalid \(pool: a maxpool needs its window \(MaxPoolParams\)\): recompile the artifact"):
        Plan.load(tmp_path)


# ---- the PyTorch front end: nn.MaxPool2d / F.max_pool2d accepted, a geometry the op lacks refused by name ----

class _Pooled(torch.nn.Module):
    def __init__(self, pool: torch.nn.Module | None = None, functional: dict | None = None):
        super().__init__()
        self.conv, self.pool, self.functional = torch.nn.Conv2d(3, 4, 3), pool or torch.nn.Identity(), functional
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        x = self.pool(self.conv(x))
        if self.functional is not None:
            x = F.max_pool2d(x, **self.functional)
        return self.fc(x.mean((2, 3)))


def _graph(model: torch.nn.Module) -> torch.fx.GraphModule:
    return export(model.eval(), torch.zeros(2, 3, 16, 16)).module()


def test_max_pool_is_in_the_one_table_of_accepted_layers():
    assert "MaxPool2d" in SUPPORTED_LAYERS
    check_supported(_Pooled(torch.nn.MaxPool2d(3, 2, 1)))
    check_graph_ops(_graph(_Pooled(torch.nn.MaxPool2d(3, 2, 1), functional=dict(kernel_size=2))))


def test_a_rectangular_max_pool_keeps_its_window_stride_and_padding_per_axis():
    from edgepack.quantize.layers import max_pool_geometry

    graph = _graph(_Pooled(torch.nn.MaxPool2d((2, 3), (1, 2), (1, 0))))
    node = next(n for n in graph.graph.nodes if n.target == torch.ops.aten.max_pool2d.default)
    assert max_pool_geometry(node) == ((2, 3), (1, 2), (1, 0))


@pytest.mark.parametrize("model, refusal", [
    (_Pooled(torch.nn.MaxPool2d(2, dilation=2)), "layer 'pool' (MaxPool2d): dilation [2, 2] is not 1, which the "
                                                 "int8 max pool does not support: use dilation=1"),
    (_Pooled(torch.nn.MaxPool2d(3, 2, ceil_mode=True)), "layer 'pool' (MaxPool2d): ceil_mode=True, which the int8 "
                                                        "max pool does not support: use ceil_mode=False"),
    (_Pooled(functional=dict(kernel_size=2, ceil_mode=True)), "max_pool2d (F.max_pool2d): ceil_mode=True"),
])
def test_a_max_pool_the_int8_plan_lacks_is_refused_by_layer_name_before_calibration(model, refusal):
    with pytest.raises(UnsupportedModelError) as refused:
        check_graph_ops(_graph(model))
    assert str(refused.value).startswith(refusal) and "\n" not in str(refused.value)
