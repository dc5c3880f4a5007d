"""The int8 plan written as .tflite: LiteRT's reference kernels reproduce edgepack's outputs bit for bit."""
import numpy as np
import pytest

from edgepack.errors import UnsupportedModelError
from edgepack.interop.tflite_export import plan_to_tflite, write_tflite
from edgepack.interop.tflite_ops.conv import tflite_padding
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams


def _litert_reference(model: bytes, preserve: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=preserve, num_threads=1)
    it.allocate_tensors()
    return it


def _run(it, x_nchw: np.ndarray) -> np.ndarray:
    """One image at a time (the model has batch 1), NCHW int8 in, int8 logits out."""
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and tuple(inp["shape"]) == (1, x_nchw.shape[2], x_nchw.shape[3], x_nchw.shape[1])
    logits = []
    for image in x_nchw:
        it.set_tensor(inp["index"], np.ascontiguousarray(image.transpose(1, 2, 0)[None]))
        it.invoke()
        logits.append(it.get_tensor(out["index"])[0].copy())
    return np.array(logits)


def _assert_bit_exact(folder):
    plan = Plan.load(folder)
    x, want = np.load(folder / "golden_input.npy"), np.load(folder / "golden_output.npy")
    assert np.array_equal(reference.run(plan, x), want)
    got = _run(_litert_reference(plan_to_tflite(plan)), x)
    assert got.dtype == np.int8 and got.shape == want.shape
    assert np.array_equal(got, want), f"{int((got != want).sum())} of {want.size} logits differ"


@pytest.mark.slow
def test_bit_exact_under_litert_reference_kernels(host_artifact):
    _assert_bit_exact(host_artifact)  # alpha 0.25, 64x64: a 2x2 final map, so the even-count pool path


@pytest.mark.slow
def test_bit_exact_alpha_075(tmp_path_factory):
    import edgepack

    folder = edgepack.compile(target="host", alpha=0.75, resolution=64, eval_size=16,
                              output=str(tmp_path_factory.mktemp("tfl") / "a075"))
    _assert_bit_exact(folder)


@pytest.mark.slow
def test_same_plan_same_bytes(host_artifact, tmp_path):
    plan = Plan.load(host_artifact)
    first = plan_to_tflite(plan)
    plan.save(tmp_path)  # a plan read back from disk writes the same file
    path = write_tflite(Plan.load(tmp_path), tmp_path / "model.tflite")
    assert path.read_bytes() == first == plan_to_tflite(plan)
    assert first[4:8] == b"TFL3"


def _identity_fc(c: int, q: QParams) -> Layer:
    arrays = {"weight": np.eye(c, dtype=np.int8) * 127, "bias": np.zeros(c, np.int32),
              "weight_scale": np.full(c, 1 / 127, np.float32), "multiplier": np.full(c, 1 << 30, np.int32),
              "shift": np.full(c, 1, np.int32)}
    return Layer("fc", "fc", (c,), (c,), q, q, arrays=arrays)


@pytest.mark.parametrize("size", [2, 3, 4, 6, 7])
@pytest.mark.parametrize("zero_point", [-128, 5])
def test_global_pool_rounds_like_the_plan(size, zero_point):
    """Ties (even counts) round half away from zero on sum(x - zp), as the reference does; LiteRT's
    AVERAGE_POOL_2D on int8 rounds the raw sum and MEAN rounds twice, both differ on such inputs."""
    c, q = 48, QParams(0.05, zero_point)
    pool = Layer("pool", "avgpool", (c, size, size), (c,), q, q)
    plan = Plan(q, (c, size, size), [pool, _identity_fc(c, q)])
    it = _litert_reference(plan_to_tflite(plan), preserve=True)
    pooled = next(d["index"] for d in it.get_tensor_details() if d["name"] == "0.pool")
    rng = np.random.default_rng(size)
    for _ in range(10):
        x = rng.integers(zero_point, 128, size=(1, c, size, size)).astype(np.int8)
        it.set_tensor(it.get_input_details()[0]["index"], x.transpose(0, 2, 3, 1).copy())
        it.invoke()
        assert np.array_equal(it.get_tensor(pooled).reshape(-1), reference.kernel(pool, x).reshape(-1))


@pytest.mark.parametrize("h,k,s,pads,out,want", [
    (64, 3, 1, (1, 1, 1, 1), 64, "SAME"),   # symmetric 1/1: SAME pads the same
    (64, 3, 2, (1, 1, 1, 1), 32, None),     # SAME would pad 0 top / 1 bottom: explicit PAD
    (64, 3, 2, (0, 0, 1, 1), 32, "SAME"),   # TensorFlow's SAME on a stride-2 layer
    (64, 3, 2, (0, 1, 1, 0), 32, None),     # SAME rows, not SAME columns
    (7, 3, 2, (1, 1, 1, 1), 4, "SAME"),     # odd size: SAME pads 1/1 too
    (64, 1, 1, (0, 0, 0, 0), 64, "VALID"),
])
def test_padding_choice(h, k, s, pads, out, want):
    assert tflite_padding(h, h, k, s, pads, out, out) == want


@pytest.mark.slow
def test_tensorflow_same_pads_export_as_same_and_stay_bit_exact(host_artifact):
    """The shipped plan with its stride-2 layers padded as TensorFlow's SAME, (top, left, bottom, right) =
    (0, 0, 1, 1): every conv is a SAME or VALID CONV_2D / DEPTHWISE_CONV_2D, no PAD op; the PyTorch plan
    (symmetric 1) needs a PAD before each stride-2 layer. Both bit-exact under LiteRT's reference kernels."""
    torch_plan, same_plan = Plan.load(host_artifact), Plan.load(host_artifact)
    stride2 = [layer for layer in same_plan.layers if layer.stride == 2]
    for layer in stride2:
        layer.pads = (0, 0, 1, 1)
    assert stride2 and same_plan.problems() == []
    x = np.load(host_artifact / "golden_input.npy")
    for plan, pads in ((same_plan, 0), (torch_plan, len(stride2))):
        it = _litert_reference(plan_to_tflite(plan))
        assert [op["op_name"] for op in it._get_ops_details()].count("PAD") == pads
        want = reference.run(plan, x)
        assert np.array_equal(_run(it, x), want)
    assert not np.array_equal(reference.run(same_plan, x), reference.run(torch_plan, x))


def _conv(act: str, lo: int, hi: int, out_q: QParams) -> Layer:
    c = 4
    arrays = {"weight": np.ones((c, c, 1, 1), np.int8), "bias": np.zeros(c, np.int32),
              "weight_scale": np.full(c, 0.01, np.float32), "multiplier": np.full(c, 1 << 30, np.int32),
              "shift": np.zeros(c, np.int32)}
    return Layer("pw", "pointwise", (c, 2, 2), (c, 2, 2), QParams(0.1, 0), out_q, lo, hi, 1, (0, 0, 0, 0), act, arrays)


def test_clamp_without_a_tflite_activation_is_refused():
    q = QParams(6 / 255, -128)
    ok = _conv("relu6", -128, 127, q)  # ReLU6 at this scale clamps exactly at 127
    plan = Plan(QParams(0.1, 0), (4, 2, 2), [ok, Layer("p", "avgpool", (4, 2, 2), (4,), q, q), _identity_fc(4, q)])
    assert len(plan_to_tflite(plan)) > 0
    plan.layers[0] = _conv("relu6", -100, 50, q)
    with pytest.raises(UnsupportedModelError, match=r"clamp \[-100, 50\] is no TFLite fused activation"):
        plan_to_tflite(plan)


def test_fc_rounds_ties_like_the_plan():
    """An fc accumulator whose requantized value is -5.4997: the plan (gemmlowp, two roundings) gives -6;
    LiteRT's FULLY_CONNECTED on per-channel int8 (one rounding, 16-bit multiplier) gave -5. The export
    writes the fc as a CONV_2D, which rounds as the plan. Scales from an alpha 0.25, 64x64 plan."""
    from edgepack.plan.plan import quantize_multiplier

    in_q, out_q, w_scale = QParams(0.015411550179123878, -128), QParams(0.09387800842523575, -32), 0.0030661756172776222
    c, classes = 4, 200  # zero weights: each channel's accumulator is its bias, -11000 .. -10801 (-10926 is the tie)
    real = float(np.float32(in_q.scale)) * float(np.float32(w_scale)) / float(np.float32(out_q.scale))
    mult, shift = quantize_multiplier(real)
    arrays = {"weight": np.zeros((classes, c), np.int8), "bias": np.arange(-11000, -11000 + classes, dtype=np.int32),
              "weight_scale": np.full(classes, w_scale, np.float32), "multiplier": np.full(classes, mult, np.int32),
              "shift": np.full(classes, shift, np.int32)}
    fc = Layer("fc", "fc", (c,), (classes,), in_q, out_q, arrays=arrays)
    plan = Plan(in_q, (c, 1, 1), [Layer("pool", "avgpool", (c, 1, 1), (c,), in_q, in_q), fc])
    x = np.zeros((1, c, 1, 1), np.int8)
    want = reference.run(plan, x)
    assert np.array_equal(_run(_litert_reference(plan_to_tflite(plan)), x), want)
