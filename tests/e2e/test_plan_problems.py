"""A plan that lies about its shapes or scales is refused by name before any executor trusts it:
Plan.problems() checks shapes layer to layer (each input what its producer outputs, weights as wide as
the layer), at least one layer, a sane input size, finite positive scales and int8 zero points; and bench /
debug of an artifact whose plan or golden .npy files were edited (manifest rehashed) end with exit 2 and
one line naming the layer or file and the fix, never an internal error or a PASS."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgepack.errors import ArtifactError
from edgepack.ops.add import AddParams
from edgepack.plan.golden import load_golden, load_npy
from edgepack.plan.plan import Layer, Plan, QParams, add_multipliers, quantize_multiplier

# ---------------------------------------------------------------- unit level: a small plan in memory


def _weighted(name, kind, cin, cout, hw_in, hw_out, k, stride, pads, q_in, q_out) -> Layer:
    shape = (cout, cin) if kind == "fc" else (cout, 1 if kind == "depthwise" else cin, k, k)
    m, s = quantize_multiplier(q_in.scale * 0.01 / q_out.scale)
    arrays = {"weight": np.ones(shape, np.int8), "bias": np.zeros(cout, np.int32),
              "multiplier": np.full(cout, m, np.int32), "shift": np.full(cout, s, np.int32),
              "weight_scale": np.full(cout, 0.01, np.float32)}
    if kind == "fc":
        return Layer(name, kind, (cin,), (cout,), q_in, q_out, arrays=arrays)
    return Layer(name, kind, (cin, hw_in, hw_in), (cout, hw_out, hw_out), q_in, q_out, stride=stride, pads=pads,
                 arrays=arrays)


def small_plan() -> Plan:
    """conv 3x3/2 -> depthwise 3x3 -> pointwise -> add (pointwise + depthwise) -> global pool -> fc."""
    q = [QParams(0.05 + 0.01 * i, i - 3) for i in range(7)]
    one, none = (1, 1, 1, 1), (0, 0, 0, 0)
    layers = [_weighted("conv", "conv", 3, 8, 16, 8, 3, 2, one, q[0], q[1]),
              _weighted("dw", "depthwise", 8, 8, 8, 8, 3, 1, one, q[1], q[2]),
              _weighted("pw", "pointwise", 8, 8, 8, 8, 1, 1, none, q[2], q[3])]
    m, s = add_multipliers(q[3], q[2], q[4])
    layers.append(Layer("add", "add", (8, 8, 8), (8, 8, 8), q[3], q[4], params=AddParams(q[2]), inputs=(2, 1),
                        arrays={"multiplier": m, "shift": s}))
    layers.append(Layer("pool", "avgpool", (8, 8, 8), (8, 1, 1), q[4], q[4]))
    layers.append(_weighted("fc", "fc", 8, 10, 1, 1, 1, 1, none, q[4], q[5]))
    return Plan(q[0], (3, 16, 16), layers)


def _set(layer: str, **changes):
    def mutate(plan: Plan):
        target = next(l for l in plan.layers if l.name == layer)
        for key, value in changes.items():
            if key in target.arrays:
                target.arrays[key] = value
            else:
                setattr(target, key, value)
    return mutate


def _no_layers(plan: Plan):
    plan.layers.clear()


def _input(**changes):
    def mutate(plan: Plan):
        if "shape" in changes:
            plan.input_shape = changes["shape"]
        if "scale" in changes:
            plan.input_q = QParams(changes["scale"], plan.input_q.zero_point)
    return mutate


MUTATIONS = {  # name: (mutation, words the first problem must hold)
    "conv input channels doubled": (_set("pw", input_shape=(16, 8, 8)), ["pw:", "[16, 8, 8]", "[8, 8, 8]", "dw outputs"]),
    "pointwise weights twice as wide": (_set("pw", weight=np.ones((8, 16, 1, 1), np.int8)), ["pw:", "weight of shape [8, 16, 1, 1]"]),
    "depthwise weights of two channels": (_set("dw", weight=np.ones((8, 2, 3, 3), np.int8)), ["dw:", "(8, 1, KH, KW)"]),
    "depthwise changes its channels": (_set("dw", output_shape=(4, 8, 8)), ["dw:"]),
    "first conv reads 6 channels": (_set("conv", input_shape=(6, 16, 16)), ["conv:", "the plan input outputs"]),
    "fc wider than its input": (_set("fc", input_shape=(16,), weight=np.ones((10, 16), np.int8)), ["fc:", "pool outputs"]),
    "fc weights wider than its input": (_set("fc", weight=np.ones((10, 9), np.int8)), ["fc:", "expected (10, 8)"]),
    "fc outputs a map": (_set("fc", output_shape=(10, 2, 2)), ["fc:"]),
    "pool outputs more than its channels": (_set("pool", output_shape=(16,)), ["pool:", "8 values"]),
    "add of two shapes": (_set("add", inputs=(2, -1)), ["add:", "[3, 16, 16]"]),
    "no layers": (_no_layers, ["no layers"]),
    "huge input shape": (_input(shape=(3, 100_000, 100_000)), ["input shape", "more than"]),
    "2-D input shape": (_input(shape=(3, 16)), ["input shape", "(C, H, W)"]),
    "input shape of strings": (_input(shape=("3", 16, 16)), ["input shape"]),
    "zero-sized output": (_set("pw", output_shape=(8, 0, 8)), ["pw:", "positive integers"]),
    "huge pads": (_set("dw", pads=(5000, 5000, 5000, 5000)), ["dw:", "pads"]),
    "NaN input scale": (_input(scale=float("nan")), ["plan input", "scale nan"]),
    "negative input scale": (_input(scale=-0.1), ["plan input", "scale"]),
    "infinite layer output scale": (_set("dw", output_q=QParams(float("inf"), 0)), ["dw:", "output scale inf"]),
    "zero point outside int8": (_set("pw", input_q=QParams(0.05, 300)), ["pw:", "zero point 300"]),
    "clamp outside int8": (_set("conv", act_min=-500), ["conv:", "clamp"]),
    "NaN weight scale": (_set("pw", weight_scale=np.full(8, np.nan, np.float32)), ["pw:", "weight_scale"]),
}


def test_a_consistent_plan_has_no_problems():
    assert small_plan().problems() == []


@pytest.mark.parametrize("case", MUTATIONS)
def test_plan_problems_name_the_layer(case):
    mutate, words = MUTATIONS[case]
    plan = small_plan()
    mutate(plan)
    found = plan.problems()
    assert found, f"{case}: no problem found"
    for w in words:
        assert w in found[0], found[0]


def test_plan_load_refuses_a_nan_scale_in_plan_json(tmp_path):
    small_plan().save(tmp_path)
    meta = json.loads((tmp_path / "plan.json").read_text())
    meta["input"]["scale"] = float("nan")  # json writes NaN, and json.loads reads it back
    (tmp_path / "plan.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="scale nan is not a finite positive number"):
        Plan.load(tmp_path)


def test_golden_files_are_checked_against_the_plan(tmp_path):
    plan = small_plan()
    x = np.zeros((2, 3, 16, 16), np.int8)
    np.save(tmp_path / "golden_input.npy", x)
    np.save(tmp_path / "golden_output.npy", np.zeros((2, 10), np.int8))
    assert load_golden(tmp_path, plan)[0].shape == x.shape
    np.save(tmp_path / "golden_output.npy", np.zeros((2, 11), np.int8))
    with pytest.raises(ArtifactError, match=r"int8 \(N, 10\)"):
        load_golden(tmp_path, plan)
    np.save(tmp_path / "golden_output.npy", np.array([{"a": 1}], dtype=object))  # a pickle: never loaded
    with pytest.raises(ArtifactError, match="cannot read"):
        load_npy(tmp_path / "golden_output.npy")


# ---------------------------------------------------------------- CLI: bench / debug of an edited artifact

@pytest.fixture(scope="module")
def artifact(small_artifacts):
    return small_artifacts("c-host")


def _edit_plan_json(folder: Path, edit) -> None:
    meta = json.loads((folder / "plan.json").read_text())
    edit(meta)
    (folder / "plan.json").write_text(json.dumps(meta))


def _edit_npz(folder: Path, **arrays) -> None:
    from edgepack.plan.plan import write_npz

    with np.load(folder / "plan.npz") as z:
        current = {k: z[k] for k in z.files}
    write_npz(folder / "plan.npz", {**current, **arrays})


def _doubled_channels(folder: Path):
    _edit_plan_json(folder, lambda m: m["layers"][2]["input_shape"].__setitem__(0, 16))


def _wider_fc(folder: Path):
    fc = len(json.loads((folder / "plan.json").read_text())["layers"]) - 1
    _edit_plan_json(folder, lambda m: m["layers"][fc].__setitem__("input_shape", [512]))
    _edit_npz(folder, **{f"{fc}.weight": np.ones((10, 512), np.int8)})


def _no_plan_layers(folder: Path):
    _edit_plan_json(folder, lambda m: m.__setitem__("layers", []))


def _huge_input(folder: Path):
    _edit_plan_json(folder, lambda m: m["input"].__setitem__("shape", [3, 100000, 100000]))


def _nan_input_scale(folder: Path):
    _edit_plan_json(folder, lambda m: m["input"].__setitem__("scale", float("nan")))


def _damaged_header(name: str):
    def edit(folder: Path):
        data = bytearray((folder / name).read_bytes())
        data[10:40] = b"{'descr': '<i8', 'shape': (((("  # a header numpy cannot parse: ValueError before
        (folder / name).write_bytes(bytes(data))
    return edit


def _wrong_golden_shape(folder: Path):
    np.save(folder / "golden_output.npy", np.zeros((8, 7), np.int8))


ARTIFACT_CASES = {  # name: (edit, words of the one stderr line)
    "conv input channels doubled": (_doubled_channels, ["conv2d_2", "[16, 16, 16]", "recompile"]),
    "fc wider than its input": (_wider_fc, ["linear", "[512]", "recompile"]),
    "no layers": (_no_plan_layers, ["no layers", "recompile"]),
    "huge input shape": (_huge_input, ["input shape", "100000", "recompile"]),
    "NaN input scale": (_nan_input_scale, ["scale nan", "recompile"]),
    "damaged golden_output.npy header": (_damaged_header("golden_output.npy"), ["golden_output.npy", "recompile"]),
    "damaged golden_input.npy header": (_damaged_header("golden_input.npy"), ["golden_input.npy", "recompile"]),
    "golden output of another shape": (_wrong_golden_shape, ["golden_output.npy", "int8 [8, 7]", "recompile"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", ARTIFACT_CASES)
def test_bench_refuses_an_edited_artifact_in_one_line(case, artifact, tmp_path):
    from tests.cli import resign as _resign, assert_one_line, edgepack, tree

    edit, words = ARTIFACT_CASES[case]
    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    edit(bad)
    _resign(bad)  # the manifest's hashes match the edited files, as a careless script would leave them
    before = tree(bad)
    code, _, err, seconds = edgepack("bench", bad, "--eval-size", "4", "--count", "2", "--warmup", "1")
    assert_one_line(code, err, 2, "error:", *words)
    assert seconds < 60
    assert tree(bad) == before  # nothing written into the artifact


@pytest.mark.slow
@pytest.mark.parametrize("case", ["conv input channels doubled", "no layers", "NaN input scale"])
def test_debug_refuses_an_edited_plan_in_one_line(case, artifact, tmp_path):
    from tests.cli import resign as _resign, assert_one_line, edgepack

    edit, words = ARTIFACT_CASES[case]
    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    edit(bad)
    _resign(bad)
    code, _, err, _ = edgepack("debug", bad, "--images", "4")
    assert_one_line(code, err, 2, "error:", *words)



@pytest.mark.slow
def test_bench_of_a_tvm_artifact_with_a_damaged_golden_output_is_one_line(tmp_path):
    """The TVM runner reads the output width from golden_output.npy before bench reads the golden files:
    the same loader, the same one line."""
    from tests.cli import SMALL, resign as _resign, assert_one_line, edgepack

    art = tmp_path / "tvm"
    code, _, err, _ = edgepack("compile", "--target", "x86-tvm", *SMALL, "-o", art)
    assert code == 0, err
    _damaged_header("golden_output.npy")(art)
    _resign(art)
    code, _, err, _ = edgepack("bench", art, "--eval-size", "4", "--count", "2", "--warmup", "1")
    assert_one_line(code, err, 2, "error:", "golden_output.npy", "recompile")
