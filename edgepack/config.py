"""The compile configuration: typed, validated on construction, and light (no torch), so the CLI
refuses a bad flag before any heavy import."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import CheckpointError, ConfigError, DataError
from edgepack.validate import check_alpha, check_classes, check_count, check_memory, check_resolution

DEFAULT_CALIBRATION_IMAGES, DEFAULT_EVAL_IMAGES = 180, 360  # the bundled digits split


class QuantMode(str, enum.Enum):
    PTQ = "ptq"
    QAT = "qat"
    NONE = "none"


class WeightGranularity(str, enum.Enum):
    PER_CHANNEL = "per-channel"
    PER_TENSOR = "per-tensor"


def check_input_path(spec, flag: str) -> None:
    """A data or checkpoint path must exist; say what it is when it is the wrong kind of thing."""
    if spec is None or str(spec) == "digits":
        return
    path = Path(spec)
    error = CheckpointError if flag == "--checkpoint" else DataError
    if not path.exists():
        raise error(f"{flag} {path} does not exist: check the path")
    if flag == "--checkpoint" and not path.is_file():
        raise error(f"{flag} {path} is a folder: pass the state dict file saved with torch.save(model.state_dict(), path)")
    if flag != "--checkpoint" and not (path.is_dir() or path.is_file()):
        raise error(f"{flag} {path} is neither a folder nor a file: pass an ImageFolder directory or an .npz file")


@dataclass
class CompileConfig:
    """Everything a compile depends on (the same config gives byte-identical artifacts)."""

    target: str = "host"
    alpha: float = 0.75
    resolution: int = 224
    classes: int = 10
    checkpoint: str | None = None
    quant: QuantMode = QuantMode.PTQ
    weight_granularity: WeightGranularity = WeightGranularity.PER_CHANNEL
    calibration: str | None = None  # None = bundled digits calibration split
    calib_size: int | None = None
    eval_data: str | None = None  # None = bundled digits eval split
    eval_size: int | None = None
    qat_epochs: int = 1
    output: str | None = None
    force: bool = False  # replace an artifact folder even if files in it were added or changed
    sign_key: str | None = None  # Ed25519 private key (PEM): write manifest.sig (edgepack.signing)

    def __post_init__(self):
        self.alpha = check_alpha(self.alpha)
        self.resolution = check_resolution(self.resolution)
        self.classes = check_classes(self.classes)
        try:
            self.quant = QuantMode(self.quant)
        except ValueError:
            raise ConfigError(f"quantization '{self.quant}' is unknown: use ptq, qat or none")
        try:
            self.weight_granularity = WeightGranularity(self.weight_granularity)
        except ValueError:
            raise ConfigError(f"weight granularity '{self.weight_granularity}' is unknown: use per-channel or per-tensor")
        for name in ("calib_size", "eval_size", "qat_epochs"):
            if getattr(self, name) is not None:
                setattr(self, name, check_count(getattr(self, name), f"--{name.replace('_', '-')}"))
        check_input_path(self.checkpoint, "--checkpoint")
        check_input_path(self.calibration, "--calibration")
        check_input_path(self.eval_data, "--eval-data")
        images = (self.calib_size or DEFAULT_CALIBRATION_IMAGES) + (self.eval_size or DEFAULT_EVAL_IMAGES)
        check_memory(self.alpha, self.resolution, images)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.resolution, self.resolution)

    def default_output(self) -> Path:
        return Path("artifacts") / f"mobilenet_v1_{self.alpha:g}_{self.resolution}_{self.target}_{self.quant.value}"

    def output_path(self) -> Path:
        return (Path(self.output) if self.output else self.default_output()).absolute()
