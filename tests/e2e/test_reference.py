import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams, quantize_multiplier

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def srdhm_scalar(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, transcribed with Python integers."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    v = ab + nudge
    q = abs(v) >> 31  # C division truncates toward zero
    return q if v >= 0 else -q


def rdbp_scalar(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def test_rounding_primitives_match_gemmlowp():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 2000), [INT32_MIN, INT32_MAX, 0, -1, 1, -(2**30)]])
    b = np.concatenate([rng.integers(2**30, 2**31 - 1, 2000), [INT32_MIN, 2**30, 2**31 - 1, 2**30, 2**30 + 1, 2**30]])
    got = reference.rounding_doubling_high_mul(a, b)
    want = [srdhm_scalar(int(x), int(y)) for x, y in zip(a, b)]
    assert got.tolist() == want
    e = rng.integers(0, 31, len(a))
    assert reference.rounding_divide_by_pot(got, e).tolist() == [rdbp_scalar(w, int(k)) for w, k in zip(want, e)]
    # round half away from zero
    assert reference.rounding_divide_by_pot(np.array([5, -5, 6, -6, 7, -7]), np.array([1] * 6)).tolist() == [3, -3, 3, -3, 4, -4]


@pytest.mark.parametrize("real", [1e-6, 0.0003, 0.25, 0.4999999, 0.5, 0.75, 0.99999999, 1.5, 3.0])
def test_quantize_multiplier(real):
    m0, shift = quantize_multiplier(real)
    assert 2**30 <= m0 < 2**31
    assert abs(m0 * 2.0 ** (shift - 31) - real) <= real * 2**-30


def _conv_layer(kind, w, bias, in_q, out_q, stride, padding, in_shape, out_shape, act="relu"):
    """``padding``: one symmetric int or (top, left, bottom, right)."""
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    w_scale = np.abs(w).reshape(len(w), -1).max(1) / 127.0
    wq = np.round(w / w_scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.int8)
    acc_scale = in_q.scale * w_scale
    mult = [quantize_multiplier(s / out_q.scale) for s in acc_scale]
    arrays = {"weight": wq, "bias": np.round(bias / acc_scale).astype(np.int32), "weight_scale": w_scale.astype(np.float32),
              "multiplier": np.array([m for m, _ in mult], np.int32), "shift": np.array([s for _, s in mult], np.int32)}
    lo = out_q.zero_point if act == "relu" else -128
    return Layer("l", kind, in_shape, out_shape, in_q, out_q, lo, 127, stride, pads, act, arrays)


@pytest.mark.parametrize("kind,groups,k,stride", [("conv", 1, 3, 2), ("depthwise", 6, 3, 1), ("depthwise", 6, 3, 2), ("pointwise", 1, 1, 1)])
def test_conv_kernels_match_float_within_one_step(kind, groups, k, stride):
    rng = np.random.default_rng(1)
    cin, cout = 6, 6 if groups > 1 else 5
    w = rng.normal(size=(cout, cin // groups, k, k))
    bias = rng.normal(size=cout) * 0.1
    in_q, out_q = QParams(0.02, -3), QParams(0.05, -128)
    pad = k // 2
    xq = rng.integers(-128, 128, size=(2, cin, 9, 9)).astype(np.int8)
    oh = (9 + 2 * pad - k) // stride + 1
    layer = _conv_layer(kind, w, bias, in_q, out_q, stride, pad, (cin, 9, 9), (cout, oh, oh))
    got = reference.kernel(layer, xq)
    wq = layer.weight.astype(np.float64) * layer.arrays["weight_scale"].astype(np.float64).reshape(-1, 1, 1, 1)
    bq = layer.arrays["bias"] * in_q.scale * layer.arrays["weight_scale"].astype(np.float64)
    real = F.conv2d(torch.from_numpy(in_q.dequantize(xq).astype(np.float64)), torch.from_numpy(wq), torch.from_numpy(bq),
                    stride=stride, padding=pad, groups=groups).relu().numpy()
    want = np.clip(np.round(real / out_q.scale) + out_q.zero_point, -128, 127)
    assert got.shape == want.shape and got.dtype == np.int8
    assert np.abs(got.astype(int) - want).max() <= 1


@pytest.mark.parametrize("kind,groups,pads,stride", [("conv", 1, (0, 0, 1, 1), 2), ("depthwise", 6, (0, 0, 1, 1), 2),
                                                     ("conv", 1, (1, 0, 2, 1), 1), ("depthwise", 6, (1, 0, 2, 1), 1)])
def test_asymmetric_pads_match_torch_on_integers(kind, groups, pads, stride):
    """(top, left, bottom, right) pads: the integer accumulators equal torch's F.pad + conv2d of the centred
    int8 input (padding with 0 there is padding with the zero point in int8)."""
    rng = np.random.default_rng(sum(pads) + stride)
    cin, cout, h, w = 6, 6 if groups > 1 else 5, 10, 8
    in_q, out_q = QParams(0.02, -3), QParams(0.05, 7)
    top, left, bottom, right = pads
    oh, ow = (h + top + bottom - 3) // stride + 1, (w + left + right - 3) // stride + 1
    layer = _conv_layer(kind, rng.normal(size=(cout, cin // groups, 3, 3)), rng.normal(size=cout) * 0.1,
                        in_q, out_q, stride, pads, (cin, h, w), (cout, oh, ow), act="none")
    assert Plan(in_q, (cin, h, w), [layer]).problems() == []
    xq = rng.integers(-128, 128, size=(2, cin, h, w)).astype(np.int8)
    centred = F.pad(torch.from_numpy(xq.astype(np.int64) - in_q.zero_point).double(), (left, right, top, bottom))
    acc = F.conv2d(centred, torch.from_numpy(layer.weight.astype(np.float64)), stride=stride, groups=groups)
    acc = acc.numpy().round().astype(np.int64) + layer.arrays["bias"].reshape(1, -1, 1, 1)
    got = reference.kernel(layer, xq)
    assert got.shape == (2, cout, oh, ow)
    np.testing.assert_array_equal(got, reference.requantize(acc, layer))


def test_conv_output_size_must_follow_from_pads():
    rng = np.random.default_rng(3)
    q = QParams(0.02, 0)
    layer = _conv_layer("conv", rng.normal(size=(4, 3, 3, 3)), np.zeros(4), q, q, 2, (0, 0, 1, 1), (3, 16, 16), (4, 9, 9))
    assert Plan(q, (3, 16, 16), [layer]).problems() == [
        "l: output [9, 9] does not follow from input [16, 16], pads [0, 0, 1, 1], kernel 3 and stride 2 (expected [8, 8])"]
    layer.output_shape = (4, 8, 8)
    assert Plan(q, (3, 16, 16), [layer]).problems() == []
    layer.pads = (0, -1, 1, 1)
    assert "not 4 non-negative integers" in Plan(q, (3, 16, 16), [layer]).problems()[0]


def test_version_1_plan_loads_with_symmetric_pads(tmp_path):
    """plan.json v1 had one "padding": p per layer; it loads as pads (p, p, p, p) and runs the same."""
    import json

    rng = np.random.default_rng(4)
    q = QParams(0.02, -5)
    conv = _conv_layer("conv", rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4) * 0.1, q, q, 2, 1, (3, 16, 16), (4, 8, 8))
    dw = _conv_layer("depthwise", rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4) * 0.1, q, q, 1, 1, (4, 8, 8), (4, 8, 8))
    plan = Plan(q, (3, 16, 16), [conv, dw])
    plan.save(tmp_path)
    meta = json.loads((tmp_path / "plan.json").read_text())
    assert meta["version"] == 4 and meta["layers"][0]["pads"] == [1, 1, 1, 1]
    meta["version"] = 1
    for layer in meta["layers"]:
        layer["padding"] = layer.pop("pads")[0]
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    old = Plan.load(tmp_path)
    assert [layer.pads for layer in old.layers] == [(1, 1, 1, 1)] * 2
    x = rng.integers(-128, 128, size=(2, 3, 16, 16)).astype(np.int8)
    np.testing.assert_array_equal(reference.run(old, x), reference.run(plan, x))


def test_avgpool_and_fc():
    rng = np.random.default_rng(2)
    q = QParams(0.1, 5)
    pool = Layer("p", "avgpool", (4, 3, 3), (4, 1, 1), q, q)
    x = rng.integers(-128, 128, size=(3, 4, 3, 3)).astype(np.int8)
    got = reference.kernel(pool, x)
    mean = (x.astype(float) - 5).mean(axis=(2, 3))
    assert np.abs(got[:, :, 0, 0] - (np.round(mean) + 5)).max() <= 1
    w = rng.normal(size=(3, 4))
    fc = _conv_layer("fc", w, np.zeros(3), q, QParams(0.2, 0), 1, 0, (4,), (3,), act="none")
    out = reference.kernel(fc, got.reshape(3, 4))
    real = q.dequantize(got.reshape(3, 4)).astype(float) @ (fc.weight * fc.arrays["weight_scale"][:, None]).T
    assert np.abs(out - np.clip(np.round(real / 0.2), -128, 127)).max() <= 1


@pytest.mark.slow
def test_plan_round_trip(host_artifact, tmp_path):
    plan = Plan.load(host_artifact)
    plan.save(tmp_path)
    again = Plan.load(tmp_path)
    assert (tmp_path / "plan.npz").read_bytes() == (host_artifact / "plan.npz").read_bytes()
    assert [l.meta() for l in again.layers] == [l.meta() for l in plan.layers]
    kinds = [l.kind for l in plan.layers]
    assert kinds == ["conv"] + ["depthwise", "pointwise"] * 13 + ["avgpool", "fc"]
    for layer in plan.layers:
        if "multiplier" in layer.arrays:
            assert layer.arrays["multiplier"].dtype == np.int32 and layer.arrays["bias"].dtype == np.int32
            assert (layer.arrays["multiplier"] >= 2**30).all()


@pytest.mark.slow
def test_reference_agrees_with_onnxruntime_and_torch(host_artifact):
    """The numpy reference against ORT running the QDQ file (and the torch PT2E graph), on digits eval."""
    import json

    from edgepack.interop.onnxruntime import run_onnx
    from edgepack.data import load_digits_split
    from edgepack.evaluate import agreement

    manifest = json.loads((host_artifact / "manifest.json").read_text())
    plan = Plan.load(host_artifact)
    data = load_digits_split("eval", plan.input_shape[-1])
    ref = plan.output_q.dequantize(reference.run_batched(plan, plan.input_q.quantize(data.images)))
    ort = run_onnx(host_artifact / "qdq.onnx", data.images)
    assert agreement(ref, ort) >= 0.99
    assert np.abs(ref - ort).max() < 0.25 * np.abs(ref).max()
    m = manifest["metrics"]
    assert m["reference_vs_torch_int8"]["top1_agreement"] >= 0.99
    assert m["reference_vs_onnxruntime"]["top1_agreement"] >= 0.99


def test_fast_requantize_equals_gemmlowp_composition():
    """requantize() uses floor-form identities; they must equal SRDHM then RoundingDivideByPOT."""
    rng = np.random.default_rng(1)
    channels = 64
    shift = np.concatenate([rng.integers(-31, 0, channels - 8), [0, 0, 1, 2, 3, -1, -30, -31]]).astype(np.int32)
    mult = rng.integers(2**30, 2**31 - 1, channels).astype(np.int32)
    mult[:2] = [2**30, 2**31 - 1]
    layer = Layer("l", "pointwise", (channels, 1, 1), (channels, 1, 1), QParams(1.0, 0), QParams(1.0, -3), -128, 127,
                  arrays={"multiplier": mult, "shift": shift})
    acc = rng.integers(INT32_MIN, INT32_MAX, (50, channels, 1, 1))
    acc[0, :, 0, 0] = INT32_MIN
    acc[1, :, 0, 0] = INT32_MAX
    acc[2:] //= 2**rng.integers(0, 31, (48, channels, 1, 1))  # accumulators of every magnitude, both signs
    got = reference.requantize(acc.copy(), layer)
    left, right = np.maximum(shift, 0)[None, :, None, None], np.maximum(-shift, 0)[None, :, None, None]
    shifted = np.clip(acc.astype(np.int64) << left, INT32_MIN, INT32_MAX)
    high = reference.rounding_doubling_high_mul(shifted, mult.astype(np.int64)[None, :, None, None])
    want = np.clip(reference.rounding_divide_by_pot(high, right) - 3, -128, 127).astype(np.int8)
    assert np.array_equal(got, want)
    assert ((want > -128) & (want < 127)).mean() > 0.1  # not just the clamps agreeing
