"""The op registry (edgepack.ops): an op kind is one module that registers its validation and numpy
reference kernel, and every executor refuses by op name a kind it has no lowering for, before any work.
A toy ``neg`` op, written by the test as its own module file outside the package, flows through
Plan.problems, plan.json / plan.npz, the reference executor and the refusal paths, editing no other module."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgepack import ops
from edgepack.errors import UnsupportedModelError
from edgepack.interop import tflite_ops, tflite_export
from edgepack.ops.add import AddParams
from edgepack.ops.avgpool import AvgPoolParams
from edgepack.ops.base import Params
from edgepack.ops.fc import FcParams
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams, quantize_multiplier

NEG_MODULE = '''
"""neg: y = -x in the input's own scale (a toy op of tests/unit/test_op_registry.py)."""
import numpy as np

from edgepack import ops


def neg_reference(layer, x):
    zp = layer.input_q.zero_point
    return np.clip(2 * zp - x.astype(np.int64), layer.act_min, layer.act_max).astype(np.int8)


def neg_problems(plan, i):
    layer = plan.layers[i]
    if tuple(layer.input_shape) != tuple(layer.output_shape) or layer.input_q != layer.output_q:
        return [f"{layer.name}: a neg keeps its input's shape and quantization"]
    return []


NEG = ops.register(ops.Op("neg", neg_reference, neg_problems, summary="negation"))
'''


@pytest.fixture
def neg(tmp_path):
    """The toy op, imported from its own file in a temporary folder; unregistered afterwards."""
    path = tmp_path / "neg.py"
    path.write_text(textwrap.dedent(NEG_MODULE))
    spec = importlib.util.spec_from_file_location("edgepack_test_neg_op", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    ops.unregister("neg")


def _weighted(name: str, kind: str, weight: np.ndarray, in_shape, out_shape, q_in: QParams, q_out: QParams,
              pads=(0, 0, 0, 0)) -> Layer:
    out = weight.shape[0]
    m, s = quantize_multiplier(q_in.scale * 0.02 / q_out.scale)
    arrays = {"weight": weight, "bias": np.arange(out, dtype=np.int32) - out // 2,
              "multiplier": np.full(out, m, np.int32), "shift": np.full(out, s, np.int32),
              "weight_scale": np.full(out, 0.02, np.float32)}
    return Layer(name, kind, in_shape, out_shape, q_in, q_out, pads=pads, arrays=arrays)


def conv_neg_fc() -> Plan:
    """conv 3x3 (4 -> 6 channels, 5x5 map) -> neg -> fc (150 -> 3)."""
    rng = np.random.default_rng(7)
    q_in, q_mid, q_out = QParams(0.03, 2), QParams(0.05, -4), QParams(0.2, 1)
    conv = _weighted("conv", "conv", rng.integers(-127, 128, (6, 4, 3, 3)).astype(np.int8), (4, 5, 5), (6, 5, 5),
                     q_in, q_mid, pads=(1, 1, 1, 1))
    negate = Layer("negate", "neg", (6, 5, 5), (6, 5, 5), q_mid, q_mid)
    fc = _weighted("fc", "fc", rng.integers(-127, 128, (3, 150)).astype(np.int8), (150,), (3,), q_mid, q_out)
    return Plan(q_in, (4, 5, 5), [conv, negate, fc])


def test_a_toy_op_module_runs_through_the_plan_and_the_reference(neg, tmp_path):
    plan = conv_neg_fc()
    assert plan.problems() == []
    x = np.random.default_rng(8).integers(-128, 128, (3, 4, 5, 5)).astype(np.int8)
    out, (conv_out, neg_out, fc_out) = reference.run(plan, x, collect=True)
    assert np.array_equal(neg_out, np.clip(2 * -4 - conv_out.astype(int), -128, 127))
    assert np.array_equal(out, reference.kernel(plan.layers[2], neg_out)) and out.shape == (3, 3)
    assert len(np.unique(neg_out)) > 10  # not a degenerate (saturated) test

    plan.save(tmp_path)
    loaded = Plan.load(tmp_path)
    assert [l.meta() for l in loaded.layers] == [l.meta() for l in plan.layers]
    assert np.array_equal(reference.run(loaded, x), out)


def test_a_toy_op_is_validated_by_its_own_problems_and_the_shared_checks(neg):
    plan = conv_neg_fc()
    plan.layers[1].output_q = QParams(0.1, 0)
    assert plan.problems() == ["negate: a neg keeps its input's shape and quantization"]
    plan = conv_neg_fc()
    plan.layers[1].inputs = (0, -1)  # the shared arity check: a neg reads one tensor
    assert plan.problems() == ["negate: a neg layer reads 1 input(s), not 2"]


@pytest.mark.parametrize("params", [FcParams("single"), AvgPoolParams("mean"), AddParams(QParams(0.05, -4))])
def test_another_ops_params_are_refused_by_type(neg, params):
    plan = conv_neg_fc()
    plan.layers[1].params = params
    assert plan.problems() == [f"negate: params {type(params).__name__} are not the neg op's (it takes none)"]
    plan = conv_neg_fc()
    plan.layers[2].params = params
    found = plan.problems()
    assert (found == [] if isinstance(params, FcParams) else
            found == [f"fc: params {type(params).__name__} are not the fc op's (it takes FcParams)"])


def test_an_op_without_default_params_is_named_when_they_are_missing():
    """An fc or pool built without params takes its op's defaults; an add has none to take."""
    q = QParams(0.05, 0)
    assert Layer("fc", "fc", (4,), (2,), q, q).params == FcParams("double")
    assert Layer("pool", "avgpool", (4, 2, 2), (4,), q, q).params == AvgPoolParams("average")
    add = Layer("sum", "add", (4, 2, 2), (4, 2, 2), q, q, inputs=(-1, -1))
    assert add.params is None and "needs input2_q" in Plan(q, (4, 2, 2), [add]).problems()[0]


def test_an_unregistered_kind_is_unknown(neg):
    plan = conv_neg_fc()
    ops.unregister("neg")
    assert plan.problems() == ["negate: unknown kind 'neg'"]


def test_tflite_export_refuses_a_kind_it_has_no_lowering_for_by_name(neg):
    with pytest.raises(UnsupportedModelError, match=r"layer 1 'negate' is a 'neg' op, which the TFLite export executor"):
        tflite_export.plan_to_tflite(conv_neg_fc())


def test_c_backend_refuses_a_kind_it_has_no_lowering_for_by_name(neg):
    from edgepack.backends.c import codegen

    with pytest.raises(UnsupportedModelError, match=r"'neg' op, which the C executor does not implement"):
        codegen.check_supported(conv_neg_fc())


def test_tvm_backends_refuse_a_kind_they_have_no_lowering_for_by_name(neg):
    from edgepack.backends.tvm import relax_int8, scheduled

    plan = conv_neg_fc()
    assert not scheduled.chain_shaped(plan)  # the hand-scheduled sets leave it to the generic executor
    with pytest.raises(UnsupportedModelError, match=r"'neg' op, which the TVM generic executor does not implement"):
        relax_int8.plan_to_relax(plan)


def test_every_builtin_op_has_a_reference_and_problems_and_a_tflite_lowering():
    kinds = ops.kinds()
    assert {"conv", "pointwise", "depthwise", "avgpool", "fc", "add"} <= set(kinds)
    for kind in kinds:
        op = ops.get(kind)
        assert op.kind == kind and callable(op.reference) and callable(op.problems) and op.arity >= 1
        assert op.params is None or (issubclass(op.params, Params) and op.params.__dataclass_params__.frozen), kind
    assert set(kinds) <= set(tflite_ops.EXPORTS.kinds())


def test_a_kind_is_registered_once():
    conv = ops.get("conv")
    with pytest.raises(ValueError, match="registered twice"):
        ops.register(ops.Op("conv", conv.reference, conv.problems))
    assert ops.get("conv") is conv


def test_the_ops_package_imports_nothing_of_the_plan():
    """ops sits below plan (plan imports ops, never the reverse): loading every op module, with the package's
    own __init__ (the API, which loads everything) left out, imports only ops and errors."""
    package = str(Path(ops.__file__).parent.parent)
    code = ("import sys, types\n"
            f"sys.modules['edgepack'] = types.ModuleType('edgepack'); sys.modules['edgepack'].__path__ = [{package!r}]\n"
            "import edgepack.ops as o; o.kinds()\n"
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('edgepack.')}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['errors', 'ops']"


def test_threads_that_first_ask_the_registry_all_see_every_builtin_op():
    """reference.run_batched's threads may be the first to look an op up: none may find the registry half
    filled (it was marked loaded before its modules were imported, and every thread but one got None)."""
    code = ("from concurrent.futures import ThreadPoolExecutor\n"
            "import edgepack.ops as o\n"
            "with ThreadPoolExecutor(8) as pool:\n"
            "    got = list(pool.map(o.get, ['conv', 'fc', 'add', 'avgpool', 'depthwise', 'pointwise'] * 3))\n"
            "print(sum(g is None for g in got))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"
