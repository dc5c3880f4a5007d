"""edgepack: MobileNet-style PyTorch CNNs to verified int8 artifacts for edge devices."""
from __future__ import annotations

from edgepack.version import __version__  # first: modules below may read it while this package loads

from edgepack.benchmark.accuracy_gate import enforce
from edgepack.benchmark.report import write_report
from edgepack.compiler import CompileConfig, compile_model
from edgepack.data import check_labels
from edgepack.errors import ConfigError
from edgepack.frontends.tflite import compile_config
from edgepack.inputs import datasets, is_in_memory
from edgepack.interop.tflite_import import is_tflite_spec, read_tflite
from edgepack.validate import (check_count, check_model, check_non_negative_count, check_path_argument,
                               check_rpc_address, check_target_name, check_timeout)

__all__ = ["compile", "bench", "debug", "report", "CompileConfig", "__version__"]


def compile(model=None, target: str = "host", calibration=None, eval_data=None, **options):
    """Compile ``model`` (any supported nn.Module; None = MobileNetV1 with shipped weights; or the path of an
    int8 ``.tflite`` model, imported as its int8 plan: README "Commands") for ``target``.

    ``calibration``: model inputs, used exactly as given: a numpy array or torch tensor (N, C, H, W)
    float ((N, F) vectors for a model of nn.Linear layers: its input_features is F), or any iterable of them (a DataLoader, a list of batches, (input, label) pairs); or a
    file/folder path as on the CLI (pixels mapped by ``mean``/``std``). ``eval_data``: (inputs,
    labels) or an iterable of (input, label) batches, or a path; optional: without it a user model has
    no accuracy figure and fidelity is measured on the last 20% of the calibration inputs (held out
    from calibration, see edgepack.inputs). For a user model the resolution comes from the inputs
    when not given, the class count from its last Linear, and the default folder from its class name.

    Other options are the fields of :class:`edgepack.compiler.CompileConfig` (architecture: the built-in
    model when ``model`` is None, "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small" or
    "mobilenet_v3_large"; alpha, resolution, quant, weight_granularity, equalize (PTQ's cross-layer
    equalization, default True), bias_correction (PTQ: empirical bias correction on the calibration set, default
    False), calibration_method ("histogram" by default, "minmax", "moving-average", "percentile", or "auto": the
    first meeting the accuracy gate), keep_softmax (a model's trailing softmax kept as TFLite's), calib_size, eval_size, qat_epochs, output, mean, std, target_dirs: folders
    of your own target files, searched before the built-in ones (see edgepack.targets), sign_key: an
    Ed25519 private key file that signs the manifest, see edgepack.signing). Returns the artifact folder.

    The accuracy gate (edgepack.gate): ``max_accuracy_drop`` (points, labelled eval data) and
    ``min_fp32_agreement`` (percent, unlabelled) limit how far int8 may fall from fp32, checked as the CLI's
    --max-accuracy-drop / --min-fp32-agreement (default: the target file's [accuracy_gate]). Over the limit the
    artifact is still written (verified, signed, its manifest recording the failure) and this raises
    edgepack.errors.AccuracyGateError (a CheckFailed: the CLI's exit 1) naming the figure, the limit and the
    worst layer; its ``artifact`` is the folder and ``gate`` the manifest's record.
    """
    check_target_name(target)
    if is_tflite_spec(model):
        return _compile_tflite(model, target, eval_data, **options)
    if model is not None:
        check_model(model)
    cal, ev, resolution = datasets(calibration, eval_data, options.get("resolution"))
    given = cal if cal is not None else ev
    if given is not None and given.images.ndim == 2:  # (N, F) vectors: a model of nn.Linear layers
        options.setdefault("input_features", resolution)
    elif isinstance(resolution, tuple):  # (C, H, W) maps other than (3, R, R): taken as they are
        options.setdefault("image_shape", resolution)
        options["resolution"] = resolution[1]
    elif resolution is not None:
        options["resolution"] = resolution
    if model is not None:
        from edgepack.frontends.torch import model_classes

        options.setdefault("model_name", type(model).__name__)
        options["classes"] = model_classes(model, options.get("classes"))
    config = CompileConfig(target=target, calibration=None if is_in_memory(calibration) else calibration,
                           eval_data=None if is_in_memory(eval_data) else eval_data, **options)
    if ev is not None:  # labels 0..classes-1, as the CLI's files are checked (edgepack.data.load_dataset)
        check_labels(ev, config.classes)
    folder = compile_model(config, model, calibration_data=cal, eval_set=ev)
    enforce(folder, model, None if cal is None else cal.images)  # the CLI's exit 1: AccuracyGateError
    return folder


def _compile_tflite(path, target: str, eval_data=None, **options):
    """``compile("model.tflite", target)``: the int8 plan read from the file (edgepack.frontends.tflite);
    resolution and classes come from the file, ``eval_data`` is optional (default: the digits split, or seeded
    random inputs for a model that takes no image, unlabelled: fidelity only; an array of inputs alone is taken
    unlabelled too); without ``mean``/``std`` pixels map onto the range of the file's input quantization."""
    imported = read_tflite(path, keep_softmax=options.get("keep_softmax", False))
    for name, value in (("resolution", imported.resolution), ("classes", imported.classes)):
        if options.setdefault(name, value) != value:
            raise ConfigError(f"{name}={options[name]} but {imported.path.name} has {value}: drop {name} (it comes from the file)")
    _, ev, _ = datasets(None, eval_data, imported.resolution, unlabelled_ok=True)
    config = compile_config(imported, target, eval_data=None if is_in_memory(eval_data) else eval_data, **options)
    return compile_model(config, eval_set=ev)


def bench(artifact, eval_size: int | None = None, count: int = 50, warmup: int = 5, eval_data=None, **device_options):
    """Verify and measure an artifact folder; returns the report dict (see edgepack.benchmark.run).
    The arguments are checked as `edgepack bench` checks its flags, with the same messages."""
    from edgepack.benchmark.run import bench_artifact

    check_path_argument(artifact, "artifact")
    eval_size = None if eval_size is None else check_count(eval_size, "--eval-size")
    count, warmup = check_count(count, "--count"), check_non_negative_count(warmup, "--warmup")
    if eval_data is not None:
        check_path_argument(eval_data, "eval_data")
    if device_options.get("rpc") is not None:
        check_rpc_address(device_options["rpc"])
    if device_options.get("timeout") is not None:
        device_options["timeout"] = check_timeout(device_options["timeout"])
    return bench_artifact(artifact, eval_size=eval_size, count=count, warmup=warmup, eval_data=eval_data,
                          **device_options)


def debug(artifact, model=None, calibration=None, images: int = 32):
    """Per-layer int8 vs fp32 error of an artifact (see edgepack.benchmark.debug); ``model`` is needed for
    an artifact compiled from an in-memory model (the nn.Module) or from --model (its "FILE.py:NAME":
    debug runs no code an artifact names), ``calibration`` overrides the inputs."""
    from edgepack.benchmark.debug import debug_artifact

    return debug_artifact(artifact, images=images, model=model, calibration=calibration)


def report(artifact, output=None, model=None, bench=None, eval_size: int | None = None, images: int = 32,
           eval_data=None, rebench: bool = False):
    """Write the HTML report of an artifact (or sweep folder) as `edgepack report` does; returns its path.
    ``bench``: a bench report dict (what edgepack.bench returned) or a `bench --json` file; without it the
    bench result `edgepack bench` kept beside the artifact is shown when it matches, else bench runs (as with
    ``rebench``). ``model``: as for edgepack.debug (the nn.Module of an in-memory model, for the per-layer
    section); ``images``: its input count (debug's default); the counts are checked as the CLI's flags."""
    check_path_argument(artifact, "artifact")
    eval_size = None if eval_size is None else check_count(eval_size, "--eval-size")
    images = check_count(images, "--images")
    for value, what in ((output, "output"), (eval_data, "eval_data")):
        if value is not None:
            check_path_argument(value, what)
    if bench is not None and not isinstance(bench, dict):
        check_path_argument(bench, "bench")
    return write_report(artifact, output, eval_data=eval_data, model=model, bench=bench, eval_size=eval_size,
                        images=images, rebench=rebench)

