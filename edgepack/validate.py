"""Checks of user-given values that need no heavy import: the CLI runs them before torch loads,
so a bad flag costs milliseconds and gets one line naming the fix."""
from __future__ import annotations

import math

from edgepack.errors import ConfigError

MIN_RESOLUTION = 32
MEMORY_HEADROOM = 0.8  # share of the available memory a compile may plan to use


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
    """``value`` as an int if it names a whole number (42, "42", 42.0), else None (never a bool)."""
    try:
        n = int(value)
        if isinstance(value, bool) or n != float(value):
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
    if value is None or value < 2:
        raise ConfigError(f"classes {num_classes!r} must be an integer >= 2")
    return value


def check_count(value, flag: str) -> int:
    """A size flag (--eval-size, --count, --images, ...): a positive integer, never a Python slice."""
    n = whole_number(value)
    if n is None or n < 1:
        raise ConfigError(f"{flag} {value!r} is not a positive integer: pass a count of at least 1")
    return n


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
WIDEST_CHANNELS = {"mobilenet_v1": (64, 8), "mobilenet_v2": (96, 48)}


def compile_memory_estimate(alpha: float, resolution: int, images: int, batch: int = 64,
                            architecture: str = "mobilenet_v1") -> int:
    """Bytes a MobileNet-sized compile holds at its peak: the float32 image arrays (3 x R x R each)
    plus one forward batch of the widest activation (WIDEST_CHANNELS at R/2, input and output alive).
    An estimate to refuse the absurd, not a promise."""
    per_alpha, least = WIDEST_CHANNELS.get(architecture, WIDEST_CHANNELS["mobilenet_v1"])
    images_bytes = images * 3 * resolution * resolution * 4
    widest = max(per_alpha * alpha, least) * (resolution // 2) ** 2 * 4
    return int(images_bytes + 2 * batch * widest)


def check_memory(alpha: float, resolution: int, images: int, architecture: str = "mobilenet_v1") -> None:
    need = compile_memory_estimate(alpha, resolution, images, architecture=architecture)
    have = available_memory()
    if have is not None and need > MEMORY_HEADROOM * have:
        raise ConfigError(f"resolution {resolution} needs about {need / 2**30:.1f} GiB for {images} images "
                          f"(this machine has {have / 2**30:.1f} GiB available): use a lower --resolution or fewer "
                          "images (--calib-size, --eval-size)")


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
    """A wait limit in seconds: finite and > 0 (0 or inf would mean "wait forever", the hang it guards)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag} {seconds!r} is not a number of seconds > 0: pass e.g. {flag} 30")
    return value
