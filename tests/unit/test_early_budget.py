"""A target's [budget] is checked from the fp32 model before data loading and calibration (issue 23, item 8):
the estimate is a lower bound of what the C backend measures, so it refuses only what the compile would."""
import numpy as np
import pytest
from torch import nn

import edgepack
from edgepack import compiler
from edgepack.backends.c.codegen import weight_bytes
from edgepack.backends.c.lower import check_budget
from edgepack.backends.c.memplan import plan_memory
from edgepack.backends.c.spec import BuildSpec
from edgepack.config import CompileConfig
from edgepack.errors import BudgetError
from edgepack.frontends import torch as torch_front
from edgepack.frontends.torch import weighted_layers
from edgepack.interop import tflite_export
from edgepack.plan.plan import Plan, QParams
from edgepack.targets import get_target
from edgepack.validate import estimate_footprint
from tests.conformance.plans import CASES, conv_layer, fc_layer, pool_layer, random_plan


def _small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


def test_estimate_counts_int8_weights_int32_biases_and_the_largest_arena_pair():
    estimate = estimate_footprint(weighted_layers(_small_cnn(), (3, 32, 32)))
    weights = 3 * 8 * 9 + 8 * 9 + 8 * 10
    assert estimate.weights == weights and estimate.layers == 3
    assert estimate.flash_bytes == weights + 4 * (8 + 8 + 10) + 3 * 5  # + one multiplier and shift per layer
    # the depthwise conv reads and writes 8 x 32 x 32; the first conv's input and the fc's output are the caller's
    assert estimate.ram_bytes == 2 * 8 * 32 * 32


class _Shared(nn.Module):
    """One conv called twice, and two branches reading the model input."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.twice = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.twice(self.twice(self.a(x) + self.b(x)))
        return self.fc(y.mean((2, 3)))


def test_a_module_called_twice_holds_its_weights_once_and_the_model_input_is_not_arena():
    layers = weighted_layers(_Shared().eval(), (3, 8, 8))
    estimate = estimate_footprint(layers)
    assert estimate.weights == 12 + 12 + 16 + 8 and estimate.layers == 4
    assert [layer.input_bytes for layer in layers[:2]] == [0, 0]  # both branches read the caller's input
    assert estimate.ram_bytes == 2 * 4 * 8 * 8


def _refusal(monkeypatch, alpha: str, target: str = "cortex-m4", **options) -> BudgetError | None:
    """What compile_model raises before it would load data (which the test stops at)."""
    def stop(*_args, **_kwargs):
        raise RuntimeError("reached data loading")
    monkeypatch.setattr(torch_front, "_inputs", stop)
    config = CompileConfig(target=target, alpha=alpha, resolution="64", **options)
    try:
        compiler.compile_model(config, log=lambda *_: None)
    except BudgetError as e:
        return e
    except RuntimeError as e:
        assert str(e) == "reached data loading"
        return None
    raise AssertionError("compile_model returned without loading data")


def test_a_model_over_the_flash_budget_is_refused_before_loading_data(monkeypatch, tmp_path):
    out = tmp_path / "too-big"
    err = _refusal(monkeypatch, "1.0", output=str(out))
    assert err is not None and err.exit_code == BudgetError.exit_code
    message = str(err)
    assert message.startswith("the model does not fit target cortex-m4: flash at least ") and "\n" not in message
    assert "> flash_bytes 1,048,576" in message and "RAM" not in message.split("[")[0]
    # weights ignore resolution; V1 1.0's 3.2 MB fit cortex-m55's 4 MB flash only
    assert "use a smaller --alpha, or target cortex-m55, or copy " in message and "--resolution" not in message
    assert "targets/cortex-m4.toml into a folder of yours" in message and "--targets FOLDER" in message
    assert not out.exists()


def test_the_refusal_names_a_target_of_the_same_kind_that_fits(monkeypatch, tmp_path):
    message = str(_refusal(monkeypatch, "0.75", output=str(tmp_path / "out")))
    assert "use a smaller --alpha, or target cortex-m55 or cortex-m7, or copy " in message


def test_a_model_within_the_budget_goes_on_to_load_data(monkeypatch, tmp_path):
    assert _refusal(monkeypatch, "0.25", output=str(tmp_path / "out")) is None
    assert _refusal(monkeypatch, "1.0", target="c-host", output=str(tmp_path / "host")) is None  # no [budget]


def test_a_budget_in_your_own_target_file_is_raised_in_that_file(monkeypatch, tmp_path):
    own = tmp_path / "boards"
    own.mkdir()
    (own / "my-m4.toml").write_text(get_target("cortex-m4").path.read_text().replace('name = "cortex-m4"', 'name = "my-m4"'))
    message = str(_refusal(monkeypatch, "1.0", target="my-m4", target_dirs=(str(own),), output=str(tmp_path / "out")))
    assert message.endswith(f"or raise [budget] in {own / 'my-m4.toml'}")


def test_the_compile_budget_hint_says_to_copy_a_builtin_target_not_edit_it():
    target = get_target("cortex-m4")
    with pytest.raises(BudgetError) as err:
        check_budget(BuildSpec.from_target(target), 2 * 2**20, 1000, "before counting the stack", target.path)
    message = str(err.value)
    assert f"copy {target.path} into a folder of yours, raise [budget] in the copy and pass --targets FOLDER" in message
    assert f"raise [budget] in {target.path}" not in message


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("kernels", ["portable", "fast"])
def test_the_estimate_of_a_plan_is_below_its_constants_and_arena(name, kernels):
    """The residual case too: an add reads two arena tensors; the plan input and output are not in the arena."""
    plan = random_plan(**CASES[name])
    estimate = estimate_footprint(compiler.plan_layers(plan))
    constants = sum(row["total_bytes"] for row in weight_bytes(plan))
    assert estimate.weights == sum(int(layer.arrays["weight"].size) for layer in plan.layers if "weight" in layer.arrays)
    assert 0 < estimate.flash_bytes <= constants
    assert 0 < estimate.ram_bytes <= plan_memory(plan, kernels).arena_bytes


def _big_plan() -> Plan:
    """1.19 M int8 weights (a 3x3 conv of 128 -> 1024 channels) and a 1024 x 16 x 16 activation."""
    rng = np.random.default_rng(0)
    q = QParams(0.02, 0)
    conv0 = conv_layer(rng, "conv0", "conv", q, (3, 32, 32), 128, 3, 2, (0, 0, 1, 1))
    conv1 = conv_layer(rng, "conv1", "conv", conv0.output_q, conv0.output_shape, 1024, 3, 1, (1,) * 4)
    pool2 = pool_layer(rng, "pool2", conv1.output_q, conv1.output_shape, "average", flat=False)
    return Plan(q, (3, 32, 32), [conv0, conv1, pool2, fc_layer(rng, "fc3", pool2.output_q, 1024, 10, "double")])


def test_an_imported_tflite_over_the_budget_is_refused_before_the_reference_runs(monkeypatch, tmp_path):
    path = tflite_export.write_tflite(_big_plan(), tmp_path / "big.tflite")

    def stop(*_args, **_kwargs):
        raise RuntimeError("reached the pipeline")
    monkeypatch.setattr(compiler, "run_pipeline", stop)
    with pytest.raises(BudgetError) as err:
        edgepack.compile(str(path), target="cortex-m4", eval_size=8, output=str(tmp_path / "out"))
    message = str(err.value)
    assert "flash at least 1,19" in message and "RAM at least" in message and "[estimated from the int8 plan: " in message
    assert "use a smaller model, or target cortex-m55 or cortex-m7, or copy " in message and "--resolution" not in message


def _every_conformance_plan():
    from tests.conformance import plans

    yield from (random_plan(**CASES[name]) for name in sorted(CASES))
    for table, make in ((plans.MAXPOOL_CASES, plans.maxpool_case), (plans.CONCAT_CASES, plans.concat_case),
                        (plans.LUT_CASES, plans.lut_case), (plans.MUL_CASES, plans.mul_case)):
        yield from (make(name)[0] for name in sorted(table))


def test_the_counted_constants_are_the_bytes_of_the_arrays_model_c_declares():
    """weight_bytes (the manifest's per-layer flash and constants_bytes) counts every static const array of
    model.c: a lut's 256-entry table too (it was left out)."""
    import re

    from edgepack.backends.c.codegen import generate

    sizes = {"int8_t": 1, "int32_t": 4}
    for plan in _every_conformance_plan():
        source = generate(plan, "portable", plan_memory(plan, "portable"))["model.c"]
        declared = sum(sizes[ctype] * int(n) for ctype, n in
                       re.findall(r"static const (int8_t|int32_t) edgepack_l\d+_\w+\[(\d+)\]", source))
        assert sum(row["total_bytes"] for row in weight_bytes(plan)) == declared
