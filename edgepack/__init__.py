"""edgepack: MobileNet-style PyTorch CNNs to verified int8 artifacts for edge devices."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["compile", "bench", "CompileConfig", "__version__"]


def compile(model=None, target: str = "host", calibration=None, eval_data=None, **options):
    """Compile ``model`` (any supported nn.Module; None = MobileNetV1 with shipped weights) for ``target``.

    ``calibration``: model inputs, used exactly as given: a numpy array or torch tensor (N, C, H, W)
    float, or any iterable of them (a DataLoader, a list of batches, (input, label) pairs); or a
    file/folder path as on the CLI (pixels mapped by ``mean``/``std``). ``eval_data``: (inputs,
    labels) or an iterable of (input, label) batches, or a path; optional: without it a user model has
    no accuracy figure and fidelity is measured on the last 20% of the calibration inputs (held out
    from calibration, see edgepack.inputs). For a user model the resolution comes from the inputs
    when not given, the class count from its last Linear, and the default folder from its class name.

    Other options are the fields of :class:`edgepack.compiler.CompileConfig` (alpha, resolution,
    quant, weight_granularity, calib_size, eval_size, qat_epochs, output, mean, std, sign_key: an
    Ed25519 private key file that signs the manifest, see edgepack.signing). Returns the artifact folder.
    """
    from edgepack.compiler import CompileConfig, compile_model
    from edgepack.inputs import datasets, is_in_memory

    cal, ev, resolution = datasets(calibration, eval_data, options.get("resolution"))
    if resolution is not None:
        options["resolution"] = resolution
    if model is not None:
        from edgepack.compiler import model_classes

        options.setdefault("model_name", type(model).__name__)
        options["classes"] = model_classes(model, options.get("classes"))
    config = CompileConfig(target=target, calibration=None if is_in_memory(calibration) else calibration,
                           eval_data=None if is_in_memory(eval_data) else eval_data, **options)
    return compile_model(config, model, calibration_data=cal, eval_set=ev)


def bench(artifact, **options):
    """Verify and measure an artifact folder; returns the report dict (see edgepack.benchmark.run)."""
    from edgepack.benchmark.run import bench_artifact

    return bench_artifact(artifact, **options)


def __getattr__(name):
    if name == "CompileConfig":
        from edgepack.compiler import CompileConfig

        return CompileConfig
    raise AttributeError(name)
