"""Late failures made early (issue 23, item 8): a model over a target's [budget] is refused from an estimate
before calibration, and the estimate never refuses what the C backend's own measurement accepts."""
import pytest
from torch import nn

import edgepack
import edgepack.artifact
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


@pytest.mark.slow
def test_a_baseline_of_another_eval_size_or_target_is_refused_before_the_bench(small_artifacts, tmp_path):
    """What the manifest tells before a bench (all but the device) is what the bench then reports, so the early
    refusal refuses exactly the baselines the late check would, without the bench."""
    from edgepack.benchmark import compare
    from edgepack.benchmark.run import bench_artifact
    from edgepack.errors import ConfigError

    folder = small_artifacts("c-host")
    report = bench_artifact(folder, eval_size=8, count=2, warmup=0)
    path = tmp_path / "baseline.json"
    compare.write_baseline(path, report)
    baseline = compare.load_baseline(path)
    manifest = read_manifest(folder)
    for eval_size, images in ((8, 8), (None, manifest["eval"]["images"]), (10**6, manifest["eval"]["images"])):
        predicted = compare.identity_before_bench(edgepack.artifact.read(folder), eval_size)
        assert predicted["eval_images"] == images
    assert {k: report[k] for k in compare.BEFORE_BENCH_KEYS} == {
        k: compare.identity_before_bench(edgepack.artifact.read(folder), 8)[k] for k in compare.BEFORE_BENCH_KEYS}
    compare.check_before_bench(baseline, path, folder, eval_size=8)  # the matching baseline passes
    with pytest.raises(ConfigError, match=r"measured with eval_images 8, this run has 16: "):
        compare.check_before_bench(baseline, path, folder, eval_size=16)
    path.write_text(path.read_text().replace('"target": "c-host"', '"target": "cortex-m4"'))
    with pytest.raises(ConfigError, match=r'measured with target "cortex-m4", this run has "c-host"'):
        compare.check_before_bench(compare.load_baseline(path), path, folder, eval_size=8)


@pytest.mark.slow
def test_bench_cli_refuses_a_mismatched_baseline_before_it_reads_or_runs_the_artifact(small_artifacts, tmp_path):
    """The CLI checks the baseline from the manifest first: with a damaged plan.npz in the copy, the refusal is
    the baseline's (a bench would have stopped on the damaged file instead, after verifying every file)."""
    import shutil

    from edgepack.benchmark import compare
    from edgepack.benchmark.run import bench_artifact

    folder = tmp_path / "artifact"
    shutil.copytree(small_artifacts("c-host"), folder)
    compare.write_baseline(tmp_path / "baseline.json", bench_artifact(folder, eval_size=8, count=2, warmup=0))
    with open(folder / "plan.npz", "ab") as f:
        f.write(b"damaged")
    code, out, err, _ = edgepack_cli("bench", folder, "--baseline", tmp_path / "baseline.json", "--eval-size", "16")
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert "measured with eval_images 8, this run has 16" in err
