"""The compile configuration: typed, validated on construction, and light (no torch), so the CLI
refuses a bad flag before any heavy import."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import CheckpointError, ConfigError, DataError
from edgepack.model.builtin import default_alpha, max_alpha
from edgepack.validate import (check_alpha, check_classes, check_count, check_memory, check_path_argument, finite_number,
                               check_resolution, check_target_name, file_kind, shown)

DEFAULT_CALIBRATION_IMAGES, DEFAULT_EVAL_IMAGES = 180, 360  # the bundled digits split
SHIPPED_CLASSES = 10  # the shipped weights classify the 10 digits


class QuantMode(str, enum.Enum):
    PTQ = "ptq"
    QAT = "qat"
    NONE = "none"


class WeightGranularity(str, enum.Enum):
    PER_CHANNEL = "per-channel"
    PER_TENSOR = "per-tensor"


class CalibrationMethod(str, enum.Enum):
    """How PTQ picks each activation's int8 range from the calibration inputs (edgepack.quantize.quantizer)."""
    HISTOGRAM = "histogram"  # the range that minimizes the quantization error of the observed histogram (default)
    MINMAX = "minmax"  # the smallest and largest value seen: no clipping, coarser steps
    MOVING_AVERAGE = "moving-average"  # min/max averaged over calibration batches (TensorFlow's QAT observer)
    PERCENTILE = "percentile"  # the 0.01% and 99.99% points of the histogram: rare outliers are clipped
    AUTO = "auto"  # search the others (and the weight granularity, if not given) on the calibration set


def check_calibration_method(method, quant: QuantMode) -> CalibrationMethod | None:
    """PTQ's activation observer (histogram when not given); QAT learns its ranges, fp32 has none."""
    if method is None:
        return CalibrationMethod.HISTOGRAM if quant == QuantMode.PTQ else None
    try:
        method = CalibrationMethod(method)
    except ValueError:
        raise ConfigError(f"calibration method '{method}' is unknown: use "
                          f"{', '.join(m.value for m in CalibrationMethod)}") from None
    if quant != QuantMode.PTQ:
        raise ConfigError(f"--calibration-method {method.value} applies to PTQ, not --quant {quant.value} "
                          "(QAT learns its activation ranges): drop it")
    return method


def check_bias_correction(value, quant: QuantMode) -> None:
    """Bias correction measures PTQ's rounded weights on the calibration set (edgepack.quantize.bias_correction);
    QAT trains its biases with the rounding in the loop, and fp32 rounds nothing."""
    if not isinstance(value, bool):
        raise ConfigError(f"bias_correction={value!r} is not valid: pass True or False")
    if value and quant != QuantMode.PTQ:
        raise ConfigError(f"--bias-correction applies to PTQ, not --quant {quant.value} (QAT learns its biases with "
                          "the int8 rounding in the loop): drop --bias-correction or use --quant ptq")


def _percentage(value) -> float | None:
    """``value`` as a number from 0 to 100 (a bool, NaN or infinity is none), else None."""
    number = finite_number(value)
    return number if number is not None and 0 <= number <= 100 else None


def check_max_accuracy_drop(value, flag: str = "--max-accuracy-drop") -> float:
    """The accuracy gate's limit on int8's accuracy below fp32, in points (edgepack.gate)."""
    number = _percentage(value)
    if number is None:
        raise ConfigError(f"{flag} {shown(value)} is not a number of points from 0 to 100: pass e.g. {flag} 1.0 "
                          "(how far int8 accuracy may fall below fp32)")
    return number


def check_min_fp32_agreement(value, flag: str = "--min-fp32-agreement") -> float:
    """The accuracy gate's limit on int8's top-1 agreement with fp32 (unlabelled eval data), in percent: a value
    in (0, 1] is refused as a fraction given where a percentage belongs (it would turn the gate off)."""
    number = _percentage(value)
    if number is None or 0 < number <= 1:
        raise ConfigError(f"{flag} {shown(value)} is not a percentage from 0 to 100 (above 1, or 0 for no limit): "
                          f"pass e.g. {flag} 97, not the fraction 0.97")
    return number


def check_input_path(spec, flag: str) -> None:
    """A data or checkpoint path must exist; say what it is when it is the wrong kind of thing."""
    if spec is None or str(spec) == "digits":
        return
    check_path_argument(spec, flag)
    path = Path(spec)
    error = CheckpointError if flag == "--checkpoint" else DataError
    kind = file_kind(path)  # by stat: opening a FIFO would wait forever
    if kind is None and not path.exists():
        raise error(f"{flag} {path} does not exist: check the path")
    if flag == "--checkpoint" and kind is not None:
        raise error(f"{flag} {path} is {kind}, not a regular file: pass the state dict file saved with "
                    "torch.save(model.state_dict(), path)")
    if flag != "--checkpoint" and kind not in (None, "a folder"):
        raise error(f"{flag} {path} is {kind}, not a regular file or a folder: pass an ImageFolder directory or "
                    "an .npz file")


def check_pixel_mapping(values, flag: str, positive: bool) -> tuple[float, float, float]:
    """--mean/--std: one value or three (R, G, B), finite; std strictly positive."""
    import math

    if isinstance(values, str):
        values = values.split(",")
    try:
        numbers = tuple(float(v) for v in (values if isinstance(values, (tuple, list)) else [values]))
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) == 1:
        numbers *= 3
    if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers) or (positive and min(numbers) <= 0):
        kind = "positive numbers" if positive else "numbers"
        raise ConfigError(f"{flag} {values!r} is not valid: give one or three comma-separated {kind} "
                          "(applied to pixels scaled to 0..1), e.g. 0.485,0.456,0.406")
    return numbers


@dataclass
class CompileConfig:
    """Everything a compile depends on (the same config gives byte-identical artifacts)."""

    target: str = "host"
    alpha: float | None = None  # None: 0.75, or the shipped width of a model without 0.75 weights
    resolution: int = 224
    classes: int = 10
    checkpoint: str | None = None
    quant: QuantMode = QuantMode.PTQ
    weight_granularity: WeightGranularity | None = None  # None: per-channel (and --calibration-method auto may try both)
    calibration: str | None = None  # None = bundled digits calibration split
    calib_size: int | None = None
    eval_data: str | None = None  # None = bundled digits eval split
    eval_size: int | None = None
    qat_epochs: int = 4  # the QAT recipe (quantize/qat.py): BatchNorm frozen after epoch 1, observers after 2, best epoch kept
    output: str | None = None
    force: bool = False  # replace an artifact folder even if files in it were added or changed
    sign_key: str | None = None  # Ed25519 private key (PEM): write manifest.sig (edgepack.signing)
    mean: tuple = (0.5, 0.5, 0.5)  # file pixels -> inputs: (pixel / 255 - mean) / std per channel (edgepack.data)
    std: tuple = (0.5, 0.5, 0.5)
    random_head: bool = False  # allow --classes N != 10 without --checkpoint: an untrained classifier
    model_name: str | None = None  # a user module's class name (Python API): names the default folder
    target_dirs: tuple = ()  # folders of your own target files, searched first (--targets; edgepack.targets)
    model_spec: str | None = None  # the CLI's --model FILE.py:NAME, recorded so debug can rebuild the model
    tflite_model: str | None = None  # an int8 .tflite to import (edgepack.interop.tflite_import): no torch model
    architecture: str = "mobilenet_v1"  # the built-in model (--model mobilenet_v2; edgepack.model.builtin)
    equalize: bool = True  # PTQ: cross-layer equalization before quantizing (--no-equalize; quantize.equalize)
    max_accuracy_drop: float | None = None  # the accuracy gate's limits (edgepack.gate); None: the target
    min_fp32_agreement: float | None = None  # file's [accuracy_gate], else the gate's defaults
    calibration_method: CalibrationMethod | None = None  # PTQ activation ranges (--calibration-method); None: histogram
    input_features: int | None = None  # a model of F-value vectors (nn.Linear first; the API's (N, F) inputs), not images
    image_shape: tuple | None = None  # a user model's (C, H, W) when not (3, R, R): the API's (N, C, H, W) inputs as given
    keep_softmax: bool = False  # a trailing SOFTMAX (.tflite) / softmax (user torch model) kept as the plan's last layer
    bias_correction: bool = False  # PTQ: biases absorb int8 weight rounding's mean shift (--bias-correction)

    def __post_init__(self):
        self.target = check_target_name(self.target)
        self.alpha = check_alpha(default_alpha(self.architecture) if self.alpha is None else self.alpha,
                                 max_alpha(self.architecture))
        # the multiple-of-32 rule is the built-in MobileNets' own recommendation; an imported .tflite or a user's
        # module takes any square size its layers accept
        builtin = not (self.tflite_model or self.model_name or self.model_spec)
        self.resolution = check_resolution(self.resolution) if builtin else check_count(self.resolution, "resolution")
        self.classes = check_classes(self.classes)
        if isinstance(self.target_dirs, (str, Path)):
            self.target_dirs = (self.target_dirs,)
        self.target_dirs = tuple(str(d) for d in self.target_dirs or ())
        try:
            self.quant = QuantMode(self.quant)
        except ValueError:
            raise ConfigError(f"quantization '{self.quant}' is unknown: use ptq, qat or none")
        given = self.weight_granularity
        self.weight_granularity_given = given is not None  # --calibration-method auto searches it when not given
        try:
            self.weight_granularity = WeightGranularity(WeightGranularity.PER_CHANNEL if given is None else given)
        except ValueError:
            raise ConfigError(f"weight granularity '{self.weight_granularity}' is unknown: use per-channel or per-tensor")
        self.calibration_method = check_calibration_method(self.calibration_method, self.quant)
        if not isinstance(self.keep_softmax, bool):
            raise ConfigError(f"keep_softmax={self.keep_softmax!r} is not valid: pass True or False")
        if self.keep_softmax and builtin:
            raise ConfigError("--keep-softmax applies to an imported .tflite or a PyTorch model of your own that ends "
                              "in a softmax (--model FILE.tflite|FILE.py:NAME): the built-in models end in their "
                              "logits; drop the flag")
        if not isinstance(self.equalize, bool):
            raise ConfigError(f"equalize={self.equalize!r} is not valid: pass True or False")
        check_bias_correction(self.bias_correction, self.quant)
        if self.max_accuracy_drop is not None:
            self.max_accuracy_drop = check_max_accuracy_drop(self.max_accuracy_drop)
        if self.min_fp32_agreement is not None:
            self.min_fp32_agreement = check_min_fp32_agreement(self.min_fp32_agreement)
        for name in ("calib_size", "eval_size", "qat_epochs", "input_features"):
            if getattr(self, name) is not None:
                setattr(self, name, check_count(getattr(self, name), f"--{name.replace('_', '-')}"))
        if self.image_shape is not None:
            if not isinstance(self.image_shape, (tuple, list)) or len(self.image_shape) != 3:
                raise ConfigError(f"image_shape {self.image_shape!r} is not (C, H, W): pass three positive integers")
            self.image_shape = tuple(check_count(d, "image_shape") for d in self.image_shape)
        check_input_path(self.checkpoint, "--checkpoint")
        self.mean = check_pixel_mapping(self.mean, "--mean", positive=False)
        self.std = check_pixel_mapping(self.std, "--std", positive=True)
        if (self.model_name is None and self.checkpoint is None and self.classes != SHIPPED_CLASSES
                and self.quant != QuantMode.NONE and not self.random_head):
            raise ConfigError(f"--classes {self.classes} needs --checkpoint (trained weights): the shipped weights cover "
                              f"the {SHIPPED_CLASSES} digits classes only; pass --random-head to build an untrained classifier anyway")
        check_input_path(self.calibration, "--calibration")
        check_input_path(self.eval_data, "--eval-data")
        images = (self.calib_size or DEFAULT_CALIBRATION_IMAGES) + (self.eval_size or DEFAULT_EVAL_IMAGES)
        check_memory(self.alpha, self.resolution, images, self.architecture)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(3, R, R) images, (F,) for a model of vectors (``input_features``), or a user model's own (C, H, W)
        (``image_shape``: a 49x10 spectrogram, one channel)."""
        if self.input_features:
            return (self.input_features,)
        return self.image_shape or (3, self.resolution, self.resolution)

    def default_output(self) -> Path:
        if self.tflite_model:  # an imported .tflite: named after its file
            return Path("artifacts") / f"{Path(self.tflite_model).stem.lower()}_{self.resolution}_{self.target}_int8"
        if self.model_name:  # a user module: named after its class
            return Path("artifacts") / f"{self.model_name.lower()}_{self.resolution}_{self.target}_{self.quant.value}"
        return Path("artifacts") / f"{self.architecture}_{self.alpha:g}_{self.resolution}_{self.target}_{self.quant.value}"

    @property
    def preprocessing(self) -> dict:
        """How file pixels become inputs, recorded in the manifest for bench and debug."""
        return {"pixels": "(pixel / 255 - mean) / std, per channel", "mean": list(self.mean), "std": list(self.std)}

    def output_path(self) -> Path:
        return (Path(self.output) if self.output else self.default_output()).absolute()

    @property
    def inputs(self) -> dict:
        """What this compile reads, by flag: the output folder must hold none of them (replacing it deletes them)."""
        module = self.model_spec.rsplit(":", 1)[0] if self.model_spec and ".py:" in self.model_spec else None
        paths = {"--checkpoint": self.checkpoint, "--calibration": self.calibration, "--eval-data": self.eval_data,
                 "--model": self.tflite_model or module, "--sign-key": self.sign_key}
        paths.update({f"--targets {d}": d for d in self.target_dirs})
        return {flag: path for flag, path in paths.items() if path}
