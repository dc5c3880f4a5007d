"""One exception tree. Library code raises these; only the CLI turns them into exit codes.

Exit codes: 2 = bad input or a missing tool/device (the user can fix it), 1 = a check failed or a
figure regressed, 3 = an internal error (an edgepack bug: please report it), 130/143 = interrupted.
"""

EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERNAL = 2, 1, 3


class EdgepackError(Exception):
    """Anything the user can fix: the message names the problem and the fix."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(EdgepackError):
    """Bad model configuration or command-line value (alpha, resolution, classes, flags)."""


class TargetError(EdgepackError):
    """Unknown target or malformed target file."""


class CheckpointError(EdgepackError):
    """Missing, corrupt or mismatched checkpoint."""


class DataError(EdgepackError):
    """Empty, unreadable, wrong-shaped or out-of-range calibration / eval data."""


class UnsupportedModelError(EdgepackError):
    """A user model with a layer or topology edgepack cannot lower."""


class ArtifactError(EdgepackError):
    """Missing, partial, tampered or unsigned artifact folder."""


class OutputError(EdgepackError):
    """An output path edgepack may not write: not an artifact, locked by another run, read-only."""


class ToolchainError(EdgepackError):
    """A required compiler, emulator or runtime library is not installed."""


class DeviceError(EdgepackError):
    """A device (emulator, RPC board) failed, hung, timed out or went away."""


class DeviceTimeout(DeviceError):
    """A device program did not finish within its time limit (it was killed with its process group)."""


class DeviceUnavailable(EdgepackError):
    """A step needs a device (board, NPU) that is not attached here."""


class CheckFailed(EdgepackError):
    """A check on the produced artifact failed (bit-exactness, agreement, budget, baseline)."""

    exit_code = EXIT_CHECK_FAILED


class RegressionError(CheckFailed):
    """A benchmark check failed against its expectation or baseline."""


class VerificationError(CheckFailed):
    """A backend's output differs from the int8 reference (or torch, for fp32) at compile."""


class AccuracyGateError(CheckFailed):
    """The int8 model fell past the accuracy gate's limit against its fp32 model (edgepack.gate). The
    artifact is written, complete and signed, and its manifest records the failure: ``artifact`` is its folder,
    ``gate`` the manifest's metrics.accuracy_gate record."""

    artifact = None
    gate: dict | None = None


class BudgetError(CheckFailed):
    """The model does not fit a target's flash / RAM budget: bad input for that target (exit 2), whether the
    early estimate or the compile's own figures find it."""
    exit_code = EXIT_BAD_INPUT


class InternalError(EdgepackError):
    """An edgepack bug (including a generated program that does not build): please report it."""

    exit_code = EXIT_INTERNAL


class BuildError(InternalError):
    """Generated sources failed to compile with an installed toolchain."""



# import name -> PyPI distribution, where they differ
DISTRIBUTIONS = {"tvm": "apache-tvm", "tvm_ffi": "apache-tvm-ffi", "ai_edge_litert": "ai-edge-litert", "PIL": "pillow",
                 "sklearn": "scikit-learn"}


class StopForward(Exception):
    """Control flow, never shown to a user: a forward hook raises it once the layer of interest has run, so the
    rest of the forward pass is skipped (edgepack.quantize.bias_correction)."""


def missing_dependency(e: BaseException, needed_by: str = "edgepack") -> ToolchainError | None:
    """The one-line error for a third-party module missing from this environment, naming the pip command
    (edgepack's own pinned requirement, from the installed package metadata); None for anything else."""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    if not isinstance(e, ModuleNotFoundError) or not e.name or e.name.split(".")[0] == "edgepack":
        return None  # a broken edgepack install or a bug, not a missing dependency
    top = e.name.split(".")[0]
    dist = DISTRIBUTIONS.get(top, top).replace("_", "-").lower()
    try:
        pinned = [r.replace(" ", "") for r in requires("edgepack") or [] if ";" not in r]
    except PackageNotFoundError:
        pinned = []
    spec = next((r for r in pinned if re.match(r"[A-Za-z0-9._-]+", r).group(0).replace("_", "-").lower() == dist), dist)
    return ToolchainError(f"{needed_by} needs the Python module {top}, which is not installed: pip install '{spec}'")
