"""The int8 add of the plan graph: the reference against a plain-Python transcription of TFLite's
reference ADD (kernels/add.cc Prepare + reference_integer_ops::Add) and against LiteRT's reference kernels."""
import json

import numpy as np
import pytest

from edgepack.errors import ArtifactError
from edgepack.interop import litert
from edgepack.interop.tflite_export import _serialize
from edgepack.interop.tflite_writer import Graph, fused_activation
from edgepack.ops.add import AddParams
from edgepack.plan import reference
from edgepack.plan.plan import VERSION, Layer, Plan, QParams, add_multipliers, quantize_multiplier

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# ---- TFLite's reference ADD, transcribed with Python integers ---------------------------------------

def srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(v) >> 31
    return q if v >= 0 else -q


def rdbpot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    return (x >> exponent) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


def tflite_add(qa, qb, a: QParams, b: QParams, out: QParams, act_min: int, act_max: int) -> list[int]:
    sa, sb, so = (float(np.float32(q.scale)) for q in (a, b, out))
    twice_max = 2 * max(sa, sb)
    params = [quantize_multiplier(r) for r in (sa / twice_max, sb / twice_max, twice_max / ((1 << 20) * so))]
    result = []
    for x, y in zip(qa.tolist(), qb.tolist()):
        scaled = [rdbpot(srdhm((v - zp) * (1 << 20), m), -sh)
                  for v, zp, (m, sh) in ((x, a.zero_point, params[0]), (y, b.zero_point, params[1]))]
        raw = rdbpot(srdhm(scaled[0] + scaled[1], params[2][0]), -params[2][1]) + out.zero_point
        result.append(min(act_max, max(act_min, raw)))
    return result


def _random_case(rng, saturating: bool):
    a = QParams(float(np.float32(10 ** rng.uniform(-3, 0))), int(rng.integers(-128, 128)))
    b = QParams(float(np.float32(a.scale * 10 ** rng.uniform(-1.5, 1.5))), int(rng.integers(-128, 128)))
    # an output scale far below the inputs' makes most sums saturate at -128/127
    out_scale = max(a.scale, b.scale) * (10 ** rng.uniform(-3, -1) if saturating else 10 ** rng.uniform(-0.3, 0.5))
    out = QParams(float(np.float32(out_scale)), int(rng.integers(-128, 128)))
    activation = ["none", "relu", "relu6"][int(rng.integers(0, 3))]
    return a, b, out, activation


def _add_layer(a: QParams, b: QParams, out: QParams, activation: str, shape=(4, 5, 6)) -> Layer:
    mult, shift = add_multipliers(a, b, out)
    lo = -128 if activation == "none" else max(-128, out.zero_point)
    hi = 127 if activation != "relu6" else min(127, out.zero_point + int(round(6.0 / out.scale)))
    return Layer("add", "add", shape, shape, a, out, lo, hi, activation=activation,
                 arrays={"multiplier": mult, "shift": shift}, inputs=(0, 1), params=AddParams(b))


def _inputs(rng, n: int):
    qa, qb = rng.integers(-128, 128, n).astype(np.int8), rng.integers(-128, 128, n).astype(np.int8)
    qa[:4], qb[:4] = [-128, 127, -128, 127], [-128, 127, 127, -128]  # the extremes
    return qa, qb


@pytest.mark.parametrize("seed", range(6))
def test_add_matches_tflite_reference_transcription(seed):
    rng = np.random.default_rng(seed)
    for case in range(20):
        a, b, out, activation = _random_case(rng, saturating=case % 4 == 0)
        layer = _add_layer(a, b, out, activation)
        qa, qb = _inputs(rng, 300)
        got = reference.kernel(layer, qa, qb)
        assert got.tolist() == tflite_add(qa, qb, a, b, out, layer.act_min, layer.act_max), (a, b, out, activation)


def _one_add_tflite(layer: Layer, shape) -> bytes:
    """A .tflite with two int8 NHWC inputs and one ADD, written with the exporter's graph builder."""
    c, h, w = shape
    g = Graph()
    g.input = g.activation("a", (1, h, w, c), layer.input_q)
    g.more_inputs = [g.activation("b", (1, h, w, c), layer.params.input2_q)]
    g.output = g.activation("sum", (1, h, w, c), layer.output_q)
    g.op("ADD", [g.input, g.more_inputs[0]], [g.output], activation=fused_activation(layer))
    return _serialize(g)


def test_add_matches_litert_reference_kernels():
    rng = np.random.default_rng(7)
    shape = (3, 4, 5)
    saturated = 0
    for case in range(24):
        a, b, out, activation = _random_case(rng, saturating=case % 3 == 0)
        layer = _add_layer(a, b, out, activation, shape)
        it = litert._interpreter(_one_add_tflite(layer, shape), reference_kernels=True)
        ins = sorted(it.get_input_details(), key=lambda t: t["index"])
        for _ in range(2):
            qa, qb = (rng.integers(-128, 128, (1,) + shape).astype(np.int8) for _ in range(2))
            it.set_tensor(ins[0]["index"], qa.transpose(0, 2, 3, 1).copy())
            it.set_tensor(ins[1]["index"], qb.transpose(0, 2, 3, 1).copy())
            it.invoke()
            lite = it.get_tensor(it.get_output_details()[0]["index"]).transpose(0, 3, 1, 2)
            ours = reference.kernel(layer, qa, qb)
            assert np.array_equal(lite, ours), (a, b, out, activation, int((lite != ours).sum()))
            saturated += int(((ours == -128) | (ours == 127)).sum())
    assert saturated > 0


def _residual_plan(rng) -> Plan:
    """input -> pointwise conv -> add(input, conv) -> global pool -> fc."""
    q_in, q_conv, q_sum = QParams(0.05, -3), QParams(0.04, 10), QParams(0.07, -5)
    c, h, w = 4, 3, 3

    def requant(scale_in, w_scale, scale_out):
        pairs = [quantize_multiplier(scale_in * s / scale_out) for s in w_scale]
        return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)

    w_scale = np.full(c, 0.01)
    m, s = requant(q_in.scale, w_scale, q_conv.scale)
    conv = Layer("conv", "pointwise", (c, h, w), (c, h, w), q_in, q_conv, arrays={
        "weight": rng.integers(-127, 128, (c, c, 1, 1)).astype(np.int8), "bias": np.zeros(c, np.int32),
        "multiplier": m, "shift": s, "weight_scale": w_scale.astype(np.float32)})
    am, ash = add_multipliers(q_in, q_conv, q_sum)
    add = Layer("add", "add", (c, h, w), (c, h, w), q_in, q_sum, inputs=(-1, 0), params=AddParams(q_conv),
                arrays={"multiplier": am, "shift": ash})
    pool = Layer("pool", "avgpool", (c, h, w), (c,), q_sum, q_sum)
    m, s = requant(q_sum.scale, w_scale, 0.1)
    fc = Layer("fc", "fc", (c,), (2,), q_sum, QParams(0.1, 0), arrays={
        "weight": rng.integers(-127, 128, (2, c)).astype(np.int8), "bias": np.zeros(2, np.int32),
        "multiplier": m[:2], "shift": s[:2], "weight_scale": w_scale[:2].astype(np.float32)})
    return Plan(q_in, (c, h, w), [conv, add, pool, fc])


def test_graph_plan_saves_loads_and_runs(tmp_path):
    rng = np.random.default_rng(1)
    plan = _residual_plan(rng)
    assert plan.problems() == []
    plan.save(tmp_path)
    meta = json.loads((tmp_path / "plan.json").read_text())
    assert meta["version"] == 4 and meta["layers"][1]["inputs"] == [-1, 0] and meta["layers"][1]["params"]["input2_q"]["zero_point"] == plan.layers[1].params.input2_q.zero_point
    loaded = Plan.load(tmp_path)
    assert loaded.layers[1].inputs == (-1, 0) and loaded.layers[1].params == plan.layers[1].params
    x = rng.integers(-128, 128, (5, 4, 3, 3)).astype(np.int8)
    out, outputs = reference.run(loaded, x, collect=True)
    want = reference.kernel(plan.layers[1], x, outputs[0])  # the add reads the plan input and the conv
    assert np.array_equal(outputs[1], want) and out.shape == (5, 2)


def test_graph_problems_name_the_layer():
    rng = np.random.default_rng(2)
    plan = _residual_plan(rng)
    plan.layers[1].inputs = (-1, 2)  # a later layer
    assert "add: inputs [-1, 2] are not the plan input" in plan.problems()[0]
    plan.layers[1].inputs = (0,)
    assert "reads 2 input(s), not 1" in plan.problems()[0]
    plan = _residual_plan(rng)
    plan.layers[1].arrays["shift"] = np.array([0, 0], np.int32)
    assert "multiplier and shift arrays of 3" in plan.problems()[0]


def test_v2_chain_file_loads_as_a_chain(tmp_path):
    """A version-2 plan.json (no "inputs") loads; every layer reads the previous one."""
    plan = _residual_plan(np.random.default_rng(3))
    chain = Plan(plan.input_q, plan.input_shape, [plan.layers[0]])
    chain.layers[0].output_q = plan.layers[0].output_q
    chain.save(tmp_path)
    meta = json.loads((tmp_path / "plan.json").read_text())
    meta["version"] = 2
    for layer in meta["layers"]:
        del layer["inputs"]
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    loaded = Plan.load(tmp_path)
    assert loaded.is_chain() and loaded.layers[0].inputs == ()
    meta["version"] = VERSION + 1  # a plan from a newer edgepack is refused, naming the versions this one reads
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=f"v1 to v{VERSION}:"):
        Plan.load(tmp_path)


def _random_add_graph(rng, c=3, h=5, w=7) -> Plan:
    """input -> pointwise conv -> 8 adds, each of the previous tensor and a random earlier one (the plan
    input included), with random output quantization, some saturating, some with a fused ReLU/ReLU6."""
    plan = _residual_plan(rng)
    q_in = plan.input_q
    conv = plan.layers[0]
    conv.input_shape = conv.output_shape = (c, h, w)
    conv.arrays = {k: (v[:c, :c] if k == "weight" else v[:c]) for k, v in conv.arrays.items()}
    layers, produced = [conv], {-1: q_in, 0: conv.output_q}
    for k in range(1, 9):
        a, b = k - 1, int(rng.integers(-1, k - 1))
        _, _, out, activation = _random_case(rng, saturating=k % 3 == 0)
        layer = _add_layer(produced[a], produced[b], out, activation, (c, h, w))
        layer.name, layer.inputs = f"add{k}", (a, b)
        layers.append(layer)
        produced[k] = out
    return Plan(q_in, (c, h, w), layers)


def test_c_add_kernel_matches_reference_on_random_graphs(tmp_path):
    """ep_add (portable, shared by the fast set) natively and on Cortex-M4 under QEMU, and the memory plan
    of a graph whose tensors live until their last add, equal the numpy reference."""
    import dataclasses

    from edgepack.backends.c import build, codegen
    from edgepack.backends.c.runner import run_images
    from edgepack.backends.c.spec import FIRMWARE, HOST_EXE, BuildSpec
    from edgepack.backends.c.memplan import plan_memory
    from edgepack.targets import get_target

    rng = np.random.default_rng(11)
    plan = _random_add_graph(rng)
    assert plan.problems() == []
    x = rng.integers(-128, 128, (6,) + plan.input_shape).astype(np.int8)
    x[0] = 127
    x[1] = -128
    want = reference.run(plan, x).reshape(len(x), -1)
    assert np.any(want == 127) or np.any(want == -128)
    host = dataclasses.replace(BuildSpec.from_target(get_target("c-host")), cross=None)
    m4 = BuildSpec.from_target(get_target("cortex-m4"))
    for spec, kernels in ((host, "portable"), (host, "fast"), (m4, "fast")):
        work = tmp_path / f"{spec.target}-{kernels}"
        memory = plan_memory(plan, kernels)
        assert {b.name: b.last for b in memory.buffers}["t0"] == max(i for i in range(len(plan.layers))
                                                                    if 0 in plan.inputs_of(i))
        build.write_sources(work / "c", spec, kernels, codegen.generate(plan, kernels, memory))
        built = build.build(spec, work / "c", work / "build", kernels, shared_library=False)
        binary = built.files[FIRMWARE if spec.kind == "cortex-m" else HOST_EXE]
        got = run_images(spec, binary, x, codegen.numel(plan.output_shape), spec.devices()[0]).outputs
        assert np.array_equal(got, want), f"{spec.target} {kernels}: {np.count_nonzero(got != want)} values differ"
