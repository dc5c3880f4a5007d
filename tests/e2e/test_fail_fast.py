"""Late failures made early (issue 23, item 8): a model over a target's [budget] is refused from an estimate
before calibration, and the estimate never refuses what the C backend's own measurement accepts."""
import pytest
from torch import nn

import edgepack
from edgepack.artifact import read_manifest
from edgepack.errors import BudgetError
from edgepack.frontends.torch import weighted_layers
from edgepack.model.weights import pretrained
from edgepack.validate import estimate_footprint
from tests.cli import edgepack as edgepack_cli


def test_cortex_m4_at_alpha_1_is_refused_before_anything_is_loaded(tmp_path):
    """3.2 M int8 weights against 1 MiB of flash: known from the model, without folding or calibrating it."""
    out = tmp_path / "m4"
    code, stdout, stderr, _ = edgepack_cli("compile", "--target", "cortex-m4", "--alpha", "1.0", "--resolution", "64",
                                           "-o", out)
    assert code == BudgetError.exit_code and stdout == ""  # no "folded BatchNorm" line: nothing ran
    assert stderr.count("\n") == 1 and "before calibration" in stderr and "flash at least 3," in stderr, stderr
    assert "--targets FOLDER" in stderr and not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("target,architecture,alpha,resolution", [
    ("c-host", "mobilenet_v1", 0.25, 64), ("c-host", "mobilenet_v2", 0.35, 96), ("cortex-m4", "mobilenet_v1", 0.5, 64)])
def test_the_estimate_is_a_lower_bound_of_what_the_c_backend_measures(tmp_path, target, architecture, alpha, resolution):
    model = pretrained(alpha, resolution, 10, architecture).eval()
    estimate = estimate_footprint(weighted_layers(model, (3, resolution, resolution)))
    folder = edgepack.compile(target=target, architecture=architecture, alpha=alpha, resolution=resolution,
                              eval_size=8, calib_size=16, output=str(tmp_path / "art"))
    footprint = read_manifest(folder)["footprint"]
    assert estimate.flash_bytes <= footprint["constants_bytes"] <= footprint["flash_bytes"], (estimate, footprint)
    assert estimate.ram_bytes <= footprint["arena_bytes"] <= footprint["ram_bytes"], (estimate, footprint)


@pytest.mark.slow
def test_a_model_the_estimate_lets_through_is_still_refused_by_the_compile(tmp_path):
    """1.03 M bytes of constants fit the estimate under 1 MiB; code, libc and per-channel multipliers do not."""
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 256, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, 2, 1), nn.ReLU(), nn.Conv2d(256, 172, 3, 1, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(172, 10)).eval()
    estimate = estimate_footprint(weighted_layers(model, (3, 32, 32)))
    assert 1_000_000 < estimate.flash_bytes < 2**20
    out = tmp_path / "just-over"
    with pytest.raises(BudgetError) as err:
        edgepack.compile(model, target="cortex-m4", resolution=32, eval_size=8, calib_size=16, output=str(out))
    message = str(err.value)
    assert "> flash_bytes 1,048,576" in message and "[before counting the stack]" in message, message
    assert "before calibration" not in message and "--targets FOLDER" in message
    assert not out.exists()
