"""The int8 channel concatenation (edgepack.ops.concat, TFLite's CONCATENATION): the reference is the inputs'
channels in turn, a plan reads two or more inputs (the registry's variadic arity) and is refused naming the
problem for anything TFLite's int8 kernel would not run as a copy (unequal quantization, a clamp, unequal maps),
and its typed inputs_q round-trip through plan.json / plan.npz (plan format v4 "params"); the PyTorch front end
takes torch.cat / torch.concat on the channels of (N, C, H, W) maps and refuses any other axis before calibration."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import torch

from edgepack import ops
from edgepack.errors import ArtifactError, UnsupportedModelError
from edgepack.ops.concat import ConcatParams
from edgepack.ops.maxpool import MaxPoolParams
from edgepack.plan import reference
from edgepack.plan.plan import Layer, Plan, QParams
from edgepack.quantize.layers import SUPPORTED_LAYERS
from edgepack.quantize.ptq import export
from edgepack.quantize.quantizer import check_graph_ops

Q = QParams(0.05, -7)


def pool(name: str, c: int, q: QParams = Q) -> Layer:
    """A 3x3/1 max pool with pads 1 of a (c, 6, 6) plan input: a layer of the input's shape and quantization."""
    return Layer(name, "maxpool", (c, 6, 6), (c, 6, 6), q, q, pads=(1, 1, 1, 1), params=MaxPoolParams(3),
                 inputs=(-1,))


def concat_plan(inputs=(-1, 0, 1), out_c: int = 9, params=None, **changes) -> Plan:
    """plan input (3, 6, 6) -> max pool (l0) -> max pool (l1) -> concat(``inputs``) (l2)."""
    reads = len(inputs)
    layer = Layer("cat", "concat", (3, 6, 6), (out_c, 6, 6), Q, Q, inputs=tuple(inputs),
                  params=params if params is not None else ConcatParams((Q,) * (reads - 1)))
    return Plan(Q, (3, 6, 6), [pool("p0", 3), pool("p1", 3), dataclasses.replace(layer, **changes)])


def test_the_reference_puts_each_inputs_channels_after_the_previous_ones():
    plan = concat_plan()
    x = np.random.default_rng(0).integers(-128, 128, (4, 3, 6, 6)).astype(np.int8)
    out, (p0, p1, cat) = reference.run(plan, x, collect=True)
    assert cat.shape == (4, 9, 6, 6) and out is cat
    assert (cat[:, :3] == x).all() and (cat[:, 3:6] == p0).all() and (cat[:, 6:] == p1).all()


def test_concat_is_variadic_and_every_other_op_keeps_its_fixed_arity():
    assert ops.get("concat").variadic and ops.get("concat").arity == 2
    assert not any(ops.get(kind).variadic for kind in ("conv", "pointwise", "depthwise", "avgpool", "fc", "add", "maxpool"))
    assert concat_plan(inputs=(-1, 0), out_c=6).problems() == []
    assert concat_plan().problems() == []


@pytest.mark.parametrize("plan,problem", [
    (concat_plan(inputs=(1,), out_c=3), "cat: a concat layer reads 2 or more inputs, not 1"),
    (concat_plan(inputs=(-1, 0, 2)), "are not the plan input (-1) or earlier layers (< 2)"),
    (concat_plan(params=ConcatParams((Q,))), "a concat of 3 inputs needs inputs_q for each input after the first"),
    (concat_plan(out_c=8), "output channels 8 are not the sum of the inputs' [3, 3, 3]"),
    (concat_plan(output_shape=(9, 6, 5)), "a concat joins (C, H, W) maps of one height and width into one"),
    (concat_plan(input_shape=(2, 6, 6)), "its input shape [2, 6, 6] is not the [3, 6, 6] that the plan input outputs"),
    (concat_plan(params=ConcatParams((Q, QParams(0.06, -7)))), "must all have its output's scale and zero point"),
    (concat_plan(output_q=QParams(0.05, 0), input_q=QParams(0.05, 0)), "must all have its output's scale and zero point"),
    (concat_plan(act_min=-7, activation="relu"), "a concat takes no activation"),
    (concat_plan(arrays={"multiplier": np.ones(1, np.int32)}), "a concat has no arrays, got multiplier"),
    (concat_plan(params=ConcatParams((Q, QParams(float("nan"), 0)))), "input3 scale nan is not a finite positive"),
])
def test_a_plan_with_a_broken_concat_is_refused_naming_the_problem(plan, problem):
    found = plan.problems()
    assert found and problem in found[0], found


def test_inputs_of_other_channel_counts_are_checked_by_the_concat_not_refused_as_unlike_its_first():
    """A concat's input_shape is its first input's; the others may differ in channels (the plan's shared shape
    check compares a variadic op's first input only): input (3) ++ input (3) = 6, then input (3) ++ that (6) = 9."""
    twice = Layer("cat0", "concat", (3, 6, 6), (6, 6, 6), Q, Q, inputs=(-1, -1), params=ConcatParams((Q,)))
    again = Layer("cat1", "concat", (3, 6, 6), (9, 6, 6), Q, Q, inputs=(-1, 0), params=ConcatParams((Q,)))
    plan = Plan(Q, (3, 6, 6), [twice, again])
    assert plan.problems() == []
    x = np.random.default_rng(2).integers(-128, 128, (2, 3, 6, 6)).astype(np.int8)
    assert (reference.run(plan, x) == np.concatenate([x, x, x], axis=1)).all()


def test_inputs_q_are_saved_as_the_layers_params_and_loaded_typed(tmp_path):
    plan = concat_plan()
    plan.save(tmp_path)
    assert '"inputs_q"' in (tmp_path / "plan.json").read_text()
    loaded = Plan.load(tmp_path)
    assert loaded.layers[2].params == ConcatParams((Q, Q)) and loaded.layers[2].inputs == (-1, 0, 1)
    x = np.random.default_rng(1).integers(-128, 128, (2, 3, 6, 6)).astype(np.int8)
    assert (reference.run(loaded, x) == reference.run(plan, x)).all()


def test_a_saved_concat_without_its_inputs_q_is_refused_on_load(tmp_path):
    plan = concat_plan()
    plan.layers[2].params = None
    plan.save(tmp_path)
    with pytest.raises(ArtifactError, match="needs inputs_q for each input after the first"):
        Plan.load(tmp_path)


# ---- the PyTorch front end: torch.cat on dim 1 accepted, any other axis refused by node before calibration ----

class _Joined(torch.nn.Module):
    """Two 3-channel conv maps joined by ``cat`` on ``dim``, then a global pool and a classifier (a slice first
    when the join is not on the channels: the refusal must come at the cat, before it)."""

    def __init__(self, cat=torch.cat, dim: int = 1):
        super().__init__()
        self.a, self.b, self.cat, self.dim = torch.nn.Conv2d(3, 3, 3), torch.nn.Conv2d(3, 3, 3), cat, dim
        self.fc = torch.nn.Linear(6 if dim in (1, -3) else 3, 2)

    def forward(self, x):
        pooled = self.cat([self.a(x), self.b(x)], self.dim).mean((2, 3))
        return self.fc(pooled if self.dim in (1, -3) else pooled[:, :3])


def _graph(model: torch.nn.Module) -> torch.fx.GraphModule:
    return export(model.eval(), torch.zeros(2, 3, 16, 16)).module()


@pytest.mark.parametrize("cat,dim", [(torch.cat, 1), (torch.concat, 1), (torch.cat, -3)])
def test_torch_cat_on_the_channels_is_in_the_one_table_of_accepted_layers(cat, dim):
    assert "torch.cat (channels)" in SUPPORTED_LAYERS
    check_graph_ops(_graph(_Joined(cat, dim)))


@pytest.mark.parametrize("dim", [0, 2, -1])
def test_a_cat_on_another_axis_is_refused_by_node_before_calibration(dim):
    with pytest.raises(UnsupportedModelError) as refused:
        check_graph_ops(_graph(_Joined(torch.cat, dim)))
    message = str(refused.value)
    assert message.startswith("cat (torch.cat): joins 4-D tensors on dim") and "torch.cat(..., dim=1)" in message
    assert "\n" not in message


# ---- .tflite: CONCATENATION on axis 3 written and read back; another quantization refused on import ----

def test_a_concat_plan_is_written_as_concatenation_and_read_back_as_the_same_plan(tmp_path):
    from edgepack.interop.tflite_export import write_tflite
    from edgepack.interop.tflite_import import read_tflite
    from tests.conformance.plans import concat_case

    plan, x = concat_case("concat of the plan input and a conv of it")
    imported = read_tflite(write_tflite(plan, tmp_path / "cat.tflite")).plan
    (cat,) = [layer for layer in imported.layers if layer.kind == "concat"]
    assert cat.inputs == (-1, 0) and cat.params == plan.layers[1].params and cat.output_shape == (11, 9, 9)
    assert (reference.run(imported, x) == reference.run(plan, x)).all()


def test_a_three_input_concatenation_reads_back_with_every_input(tmp_path):
    """The import reads a variadic op's every input (it took the first two: the third branch was left unused)."""
    from edgepack.interop.tflite_export import write_tflite
    from edgepack.interop.tflite_import import read_tflite
    from tests.conformance.plans import concat_case

    plan, x = concat_case("concat of three branches: 1x1, 3x3, max pool")
    imported = read_tflite(write_tflite(plan, tmp_path / "cat3.tflite")).plan
    (cat,) = [layer for layer in imported.layers if layer.kind == "concat"]
    assert len(cat.inputs) == 3 and cat.params == plan.layers[4].params
    assert (reference.run(imported, x) == reference.run(plan, x)).all()


def test_a_concatenation_whose_inputs_are_quantized_unlike_its_output_is_refused_on_import(tmp_path):
    """LiteRT's int8 CONCATENATION refuses to rescale; the import says so instead of making a plan that copies."""
    from edgepack.errors import ConfigError
    from edgepack.interop.tflite_export import write_tflite
    from edgepack.interop.tflite_import import read_tflite
    from tests.conformance.plans import concat_case

    plan, _ = concat_case("concat of the plan input and a conv of it")
    cat = plan.layers[1]
    plan.layers[1] = dataclasses.replace(cat, output_q=QParams(cat.output_q.scale * 2, cat.output_q.zero_point))
    plan.layers[2] = dataclasses.replace(plan.layers[2], input_q=plan.layers[1].output_q)
    with pytest.raises(ConfigError, match=r"op \d \(CONCATENATION\) has inputs quantized unlike its output"):
        read_tflite(write_tflite(plan, tmp_path / "rescaled.tflite"))
