"""edgepack: MobileNet-style PyTorch CNNs to verified int8 artifacts for edge devices."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["compile", "bench", "CompileConfig", "__version__"]


def compile(model=None, target: str = "host", **options):
    """Compile ``model`` (any supported nn.Module; None = MobileNetV1 with shipped weights) for ``target``.

    Options are the fields of :class:`edgepack.compiler.CompileConfig` (alpha, resolution, classes,
    quant, weight_granularity, calibration, calib_size, eval_data, eval_size, qat_epochs, output,
    sign_key: an Ed25519 private key file that signs the manifest, see edgepack.signing).
    Returns the artifact folder.
    """
    from edgepack.compiler import CompileConfig, compile_model

    return compile_model(CompileConfig(target=target, **options), model)


def bench(artifact, **options):
    """Verify and measure an artifact folder; returns the report dict (see edgepack.benchmark.run)."""
    from edgepack.benchmark.run import bench_artifact

    return bench_artifact(artifact, **options)


def __getattr__(name):
    if name == "CompileConfig":
        from edgepack.compiler import CompileConfig

        return CompileConfig
    raise AttributeError(name)
