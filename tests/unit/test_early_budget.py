"""A target's [budget] is checked from the fp32 model before data loading and calibration (issue 23, item 8):
the estimate is a lower bound of what the C backend measures, so it refuses only what the compile would."""
import pytest
from torch import nn

from edgepack import compiler
from edgepack.backends.c.lower import check_budget
from edgepack.backends.c.spec import BuildSpec
from edgepack.config import CompileConfig
from edgepack.errors import BudgetError
from edgepack.frontends import torch as torch_front
from edgepack.frontends.torch import weighted_layers
from edgepack.targets import get_target
from edgepack.validate import estimate_footprint


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
    assert "use a smaller --alpha, or copy " in message and "--resolution" not in message  # weights ignore resolution
    assert "targets/cortex-m4.toml into a folder of yours" in message and "--targets FOLDER" in message
    assert not out.exists()


def test_the_refusal_names_a_target_of_the_same_kind_that_fits(monkeypatch, tmp_path):
    message = str(_refusal(monkeypatch, "0.75", output=str(tmp_path / "out")))
    assert "use a smaller --alpha, or target cortex-m7, or copy " in message


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
