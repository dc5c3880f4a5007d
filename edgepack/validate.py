"""Checks of user-given values that need no heavy import: the CLI runs them before torch loads,
so a bad flag costs milliseconds and gets one line naming the fix."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgepack.errors import BudgetError, ConfigError
from edgepack.files import kind_of

MIN_RESOLUTION = 32
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841; more makes a classifier of gigabytes, never an edge model
MAX_TIMEOUT = 86_400.0  # one day: a longer wait is a hang, and 1e300 s overflows every clock it reaches
MEMORY_HEADROOM = 0.8  # share of the available memory a compile may plan to use


def shown(value) -> str:
    """A user value as a message shows it: the CLI's "0" and the API's 0 read alike, so both say the same."""
    if isinstance(value, str) and (not value or value != value.strip()):
        return repr(value)
    return str(value)


def check_alpha(alpha, maximum: float = 1.0) -> float:
    """``maximum`` is 1 for MobileNetV1 (the paper's widths shrink only); MobileNetV2's paper goes to 1.4."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha {alpha!r} is not a number: pass a width multiplier in (0, {maximum:g}], e.g. --alpha 0.75")
    if not math.isfinite(value) or not 0.0 < value <= maximum:
        raise ConfigError(f"alpha {alpha!r} is outside (0, {maximum:g}]: pass a width multiplier such as 1.0, 0.75, 0.5 or 0.25")
    return value


def whole_number(value) -> int | None:
    """``value`` as an int if it names a whole number (42, "42", 42.0, "1e3"), else None (never a bool)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    try:
        n = int(value)
        if n != value:
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    return n


def check_resolution(resolution) -> int:
    value = whole_number(resolution)
    if value is None:
        raise ConfigError(f"resolution {resolution!r} is not an integer: pass a multiple of 32 such as 224, 192, 160 or 128")
    if value < MIN_RESOLUTION or value % 32:
        raise ConfigError(f"resolution {value} is not a multiple of 32 from 32 up: use e.g. 224, 192, 160, 128 or 96")
    return value


def check_classes(num_classes) -> int:
    value = whole_number(num_classes)
    if value is None or not 2 <= value <= MAX_CLASSES:
        raise ConfigError(f"classes {shown(num_classes)} must be an integer from 2 to {MAX_CLASSES:,}")
    return value


def check_count(value, flag: str) -> int:
    """A size flag (--eval-size, --count, --images, ...): a positive integer, never a Python slice."""
    n = whole_number(value)
    if n is None or n < 1:
        raise ConfigError(f"{flag} {shown(value)} is not a positive integer: pass a count of at least 1")
    return n


def check_non_negative_count(value, flag: str) -> int:
    """--warmup and the like: a whole number, 0 allowed."""
    n = whole_number(value)
    if n is None or n < 0:
        raise ConfigError(f"{flag} {shown(value)} is not an integer >= 0: pass 0 or a positive count")
    return n


def finite_number(value) -> float | None:
    """``value`` as a finite float (a bool, NaN or infinity is none), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and not isinstance(value, bool) else None


def check_non_negative_number(value, flag: str) -> float:
    """A tolerance (--max-latency-increase, ...): a finite number >= 0."""
    number = finite_number(value)
    if number is None or number < 0:
        raise ConfigError(f"{flag} {shown(value)} is not a number >= 0: pass e.g. {flag} 0.1")
    return number


def available_memory() -> int | None:
    """MemAvailable in bytes (Linux), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# Channels of each built-in model's widest activation, all at R/2, as (per alpha, at least): MobileNetV1's
# first pointwise layer (64 alpha); MobileNetV2's first 6x expansion of 16 alpha channels (96 alpha, the 16
# rounded up to 8 at least). Peak RSS of `compile --target host --alpha 1.0 --calib-size 64 --eval-size 64`
# (/usr/bin/time -v) grew from 96 to 192 by 0.82 GiB for V1 and 1.10 GiB for V2, 1.34x; these widths
# make the estimate grow 1.42x.
WIDEST_CHANNELS = {"mobilenet_v1": (64, 8), "mobilenet_v2": (96, 48), "mobilenet_v3_large": (64, 8),
                   "mobilenet_v3_small": (16, 8)}


def compile_memory_estimate(alpha: float, resolution: int, images: int, batch: int = 64,
                            architecture: str = "mobilenet_v1") -> int:
    """Bytes a MobileNet-sized compile holds at its peak: the float32 image arrays (3 x R x R each)
    plus one forward batch of the widest activation (WIDEST_CHANNELS at R/2, input and output alive).
    An estimate to refuse the absurd, not a promise."""
    per_alpha, least = WIDEST_CHANNELS.get(architecture, WIDEST_CHANNELS["mobilenet_v1"])
    images_bytes = images * 3 * resolution * resolution * 4
    widest = max(per_alpha * alpha, least) * (resolution // 2) ** 2 * 4
    return int(images_bytes + 2 * batch * widest)


def check_memory(alpha: float, resolution: int, images: int, architecture: str = "mobilenet_v1", batch: int = 64) -> None:
    """Refuse a run whose estimate (compile_memory_estimate) exceeds the memory available here; ``batch`` 1 and
    ``images`` 1 is one forward pass, as `edgepack info` makes."""
    need = compile_memory_estimate(alpha, resolution, images, batch, architecture)
    have = available_memory()
    if have is not None and need > MEMORY_HEADROOM * have:
        fewer = " or fewer images (--calib-size, --eval-size)" if images > 1 else ""
        raise ConfigError(f"resolution {resolution} needs about {need / 2**30:.1f} GiB for {images} image"
                          f"{'s' if images > 1 else ''} (this machine has {have / 2**30:.1f} GiB available): use a "
                          f"lower --resolution{fewer}")


def check_rpc_address(address) -> tuple[str, int]:
    """--rpc HOST:PORT (an RPC tracker's or server's address; IPv6 as [::1]:9190) -> (host, port),
    checked before any connection so that a missing port is not reported as a dead tracker."""
    text = str(address).strip()
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    example = "pass HOST:PORT, e.g. --rpc 192.168.1.20:9190 (the tracker's, or the RPC server's without --key)"
    if not sep:
        raise ConfigError(f"RPC address {text!r} has no port: {example}")
    if not host:
        raise ConfigError(f"RPC address {text!r} has no host: {example}")
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"RPC address {text!r}: port {port!r} is not a number from 1 to 65535: {example}")
    return host, int(port)


def check_timeout(seconds, flag: str = "--timeout") -> float:
    """A wait limit in seconds: > 0 and at most a day (0 or inf would mean "wait forever", the hang it guards;
    1e300 overflows the clocks it is added to)."""
    value = finite_number(seconds)
    if value is None or not 0 < value <= MAX_TIMEOUT:
        raise ConfigError(f"{flag} {shown(seconds)} is not a number of seconds in (0, {MAX_TIMEOUT:.0f}] (one day): "
                          f"pass e.g. {flag} 30")
    return value


def file_kind(path) -> str | None:
    """What ``path`` is when it is not a regular file, following links (edgepack.files.kind_of)."""
    return kind_of(path)


def check_regular_file(path, what: str, error=ConfigError, fix: str = "pass a regular file") -> None:
    """Refuse anything but a regular file (or a missing path: the caller says "does not exist") by what it is."""
    kind = file_kind(path)
    if kind is not None:
        raise error(f"{what} {path} is {kind}, not a regular file: {fix}")


def check_path_argument(value, what: str, error=ConfigError):
    """A file or folder argument of the Python API: a str or os.PathLike, never None or an object."""
    import os

    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise error(f"{what} {shown(value)} is not a path: pass the path of a file or folder (a str or pathlib.Path)")
    return value


def check_target_name(target) -> str:
    """--target / ``target=``: a non-empty name; the target loader then says whether it exists."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"target {shown(target)} is not a target name: pass one such as 'host' "
                          "(`edgepack targets` lists them)")
    return target


def check_key_prefix(prefix) -> str:
    """keygen -o PREFIX writes PREFIX.key and PREFIX.pub: the prefix must end in a file name, or the pair
    becomes hidden files named only by their suffix ('.key', 'keys/.pub')."""
    import os

    text = "" if prefix is None else str(prefix)
    name = os.path.basename(text)
    if name in ("", ".", "..") or not name.strip():
        example = os.path.join(text if name in (".", "..") else os.path.dirname(text), "release")
        raise ConfigError(f"keygen -o {shown(text)} names no file: pass a prefix ending in a name, e.g. -o {example} "
                          f"(writes {example}.key and {example}.pub)")
    return text


def check_model(model) -> None:
    """The Python API's ``model`` (and what a --model file builds): an nn.Module whose weights are float32
    values on the CPU, the form edgepack calibrates and exports; a half-precision or meta-device model
    would fail deep inside torch. Called only with a model in hand, so torch is already loaded."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model {model!r:.80} is a {type(model).__name__}, not a torch.nn.Module: pass an nn.Module, "
                          "the path of an int8 .tflite file, or None for the built-in model "
                          "(architecture='mobilenet_v2' for V2)")
    name = type(model).__name__
    for what, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.device.type == "meta":
            raise ConfigError(f"model {name}: {what} is on the meta device (it has no values): load real weights first, "
                              "e.g. model.to_empty(device='cpu') then model.load_state_dict(...)")
        if tensor.device.type != "cpu":
            raise ConfigError(f"model {name}: {what} is on {tensor.device}: edgepack compiles on the CPU: pass model.cpu()")
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise ConfigError(f"model {name}: {what} is {str(tensor.dtype).replace('torch.', '')}: edgepack quantizes "
                              "from float32 weights: pass model.float()")


# ---------------------------------------------------------------- a target's [budget], before calibration

BIAS_BYTES = 4  # the int8 plan stores one int32 bias per output channel of a conv or fc layer (zeros if it has none)
REQUANT_BYTES = 5  # and at least one int32 multiplier with its int8 shift (backends/c/codegen.weight_bytes)


@dataclass(frozen=True)
class WeightedLayer:
    """A conv or fully connected layer of the fp32 model as the int8 plan will hold it (int8 sizes)."""
    weights: int  # weight values: bytes of flash
    channels: int  # output channels: an int32 bias each
    input_bytes: int  # the activation it reads; 0 for the model input (edgepack_invoke's argument, not the arena)
    output_bytes: int  # the activation it writes; 0 for the model output


@dataclass(frozen=True)
class FootprintEstimate:
    """LOWER bounds of the C backend's measured flash and RAM, so that refusing on them never refuses a model
    the compile accepts: flash counts the constants alone (no code, runtime or libc); RAM the largest input +
    output pair the static arena must hold at once (no scratch, alignment, harness buffers or stack)."""
    flash_bytes: int
    ram_bytes: int
    layers: int
    weights: int


def estimate_footprint(layers) -> FootprintEstimate:
    """Flash from each layer's weights held once (a repeated call has weights 0), RAM from every call."""
    layers = list(layers)
    held = [layer for layer in layers if layer.weights]
    flash = sum(layer.weights + BIAS_BYTES * layer.channels + REQUANT_BYTES for layer in held)
    ram = max((layer.input_bytes + layer.output_bytes for layer in layers), default=0)
    return FootprintEstimate(flash, ram, len(held), sum(layer.weights for layer in held))


def budget_file_fix(target_file: Path, builtin: bool) -> str:
    """How to raise a target's [budget]: never by editing the installed package (an upgrade overwrites it, and
    it may be read-only), but in a copy in a folder of one's own, which --targets puts first on the search path."""
    if builtin:
        return (f"copy {target_file} into a folder of yours, raise [budget] in the copy and pass --targets FOLDER "
                "(target_dirs=[FOLDER] in Python)")
    return f"raise [budget] in {target_file}"


def check_budget_estimate(estimate: FootprintEstimate, flash_max: int | None, ram_max: int | None, target: str,
                          fix, basis: str = "the fp32 model before calibration") -> None:
    """Refuse (BudgetError, as the compile's own check does later) when the lower bounds alone exceed the budget;
    ``fix(flash_over, ram_over)`` says what to change."""
    flash_over = flash_max is not None and estimate.flash_bytes > flash_max
    ram_over = ram_max is not None and estimate.ram_bytes > ram_max
    over = []
    if flash_over:
        over.append(f"flash at least {estimate.flash_bytes:,} bytes > flash_bytes {flash_max:,} "
                    f"(by {estimate.flash_bytes - flash_max:,}; {estimate.weights:,} int8 weights in "
                    f"{estimate.layers} conv/fc layers)")
    if ram_over:
        over.append(f"RAM at least {estimate.ram_bytes:,} bytes > ram_bytes {ram_max:,} "
                    f"(by {estimate.ram_bytes - ram_max:,}; one layer's int8 input + output)")
    if over:
        raise BudgetError(f"the model does not fit target {target}: {' and '.join(over)} [estimated from {basis}: "
                          f"a lower bound]: {fix(flash_over, ram_over)}")
