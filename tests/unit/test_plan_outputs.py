"""The int8 plan's outputs (Plan.outputs): a plan with several outputs round-trips through plan.json / plan.npz as
version 5; every single-output plan is still written as version 4 byte for byte, so older artifacts and older
edgepacks read it unchanged; outputs that are out of range, repeated or leave the last layer unused are refused."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgepack.errors import ArtifactError
from edgepack.plan import reference
from edgepack.plan.plan import Plan
from tests.conformance.plans import CASES, MULTI_OUTPUT_CASES, case, multi_output_case

SINGLE_OUTPUT_KEYS = {"format", "version", "layout", "input", "output", "layers"}


def test_a_multi_output_plan_round_trips_with_its_outputs_in_order(tmp_path):
    plan, x = multi_output_case(next(iter(MULTI_OUTPUT_CASES)))
    plan.save(tmp_path)
    meta = json.loads((tmp_path / "plan.json").read_text())
    assert meta["version"] == 5 and [o["layer"] for o in meta["outputs"]] == list(plan.output_layers)
    assert meta["output"]["shape"] == list(plan.layers[plan.output_layers[0]].output_shape)
    loaded = Plan.load(tmp_path)
    assert loaded.output_layers == plan.output_layers == (4, 2, 5)
    assert np.array_equal(reference.run(loaded, x), reference.run(plan, x))
    (tmp_path / "again").mkdir()
    loaded.save(tmp_path / "again")
    assert (tmp_path / "again" / "plan.json").read_bytes() == (tmp_path / "plan.json").read_bytes()


@pytest.mark.parametrize("explicit", [False, True], ids=["outputs left empty", "outputs = (last layer,)"])
def test_a_single_output_plan_is_written_as_before(explicit, tmp_path):
    """Version 4, no "outputs" key, the same bytes whether its one output is named or left to the default."""
    plan, _ = case(next(iter(CASES)))
    default = tmp_path / "default"
    default.mkdir()
    plan.save(default)
    named = dataclasses.replace(plan, outputs=(len(plan.layers) - 1,) if explicit else ())
    (tmp_path / "named").mkdir()
    named.save(tmp_path / "named")
    meta = json.loads((default / "plan.json").read_text())
    assert meta["version"] == 4 and set(meta) == SINGLE_OUTPUT_KEYS
    assert (tmp_path / "named" / "plan.json").read_bytes() == (default / "plan.json").read_bytes()
    assert Plan.load(default).outputs == () and not Plan.load(default).multi_output()


def test_a_single_output_plans_reference_output_keeps_its_shape():
    plan, x = case(next(iter(CASES)))
    assert plan.output_row_shape == tuple(plan.output_shape)
    assert reference.run(plan, x).shape == (len(x), *plan.output_shape)


def test_a_multi_output_plan_dequantizes_each_output_with_its_own_scale():
    plan, x = multi_output_case(next(iter(MULTI_OUTPUT_CASES)))
    q = reference.run(plan, x)
    real = plan.dequantize_outputs(q)
    for (a, b), oq in zip(plan.output_segments(), plan.output_qs):
        assert np.array_equal(real[:, a:b], oq.dequantize(q[:, a:b]))
    assert len({oq.scale for oq in plan.output_qs}) == len(plan.output_qs)  # otherwise one scale would pass too


@pytest.mark.parametrize("outputs,says", [
    ((4, 9), "are not layer indices in [0, 5]"),
    ((4, -1), "are not layer indices in [0, 5]"),
    ((5, 4, 5), "name a layer twice"),
    ((2, 4), "leave out the last layer 5"),
])
def test_outputs_that_break_the_plan_are_refused(outputs, says, tmp_path):
    plan, _ = multi_output_case(next(iter(MULTI_OUTPUT_CASES)))
    bad = dataclasses.replace(plan, outputs=outputs)
    assert any(says in p for p in bad.problems()), bad.problems()
    plan.save(tmp_path)
    meta = json.loads((tmp_path / "plan.json").read_text())
    meta["outputs"] = [{"layer": i} for i in outputs]
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="recompile the artifact"):
        Plan.load(tmp_path)
