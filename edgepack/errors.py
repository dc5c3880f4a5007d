"""One exception tree. Library code raises these; only the CLI turns them into exit codes."""


class EdgepackError(Exception):
    """Anything the user can fix: the message names the problem and the fix."""

    exit_code = 2


class ConfigError(EdgepackError):
    """Bad model configuration or command-line value (alpha, resolution, classes, flags)."""


class TargetError(EdgepackError):
    """Unknown target or malformed target file."""


class CheckpointError(EdgepackError):
    """Missing, corrupt or mismatched checkpoint."""


class DataError(EdgepackError):
    """Empty, unreadable or wrong-shaped calibration / eval data."""


class UnsupportedModelError(EdgepackError):
    """A user model with a layer or topology edgepack cannot lower."""


class ArtifactError(EdgepackError):
    """Missing, partial or tampered artifact folder."""


class ToolchainError(EdgepackError):
    """A required compiler, emulator or runtime library is not installed."""


class RegressionError(EdgepackError):
    """A benchmark check failed against its expectation or baseline."""

    exit_code = 1


class DeviceUnavailable(EdgepackError):
    """A step needs a device (board, NPU) that is not attached here."""
