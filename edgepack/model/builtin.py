"""The built-in architectures, by the name `--model` takes (`edgepack info --model mobilenet_v2`)."""
from __future__ import annotations

from pathlib import Path

from edgepack.errors import ConfigError

# name -> (module, class, largest width multiplier the paper lists)
BUILTIN = {
    "mobilenet_v1": ("edgepack.model.mobilenet", "MobileNetV1", 1.0),
    "mobilenet_v2": ("edgepack.model.mobilenet_v2", "MobileNetV2", 1.4),
    "mobilenet_v3_small": ("edgepack.model.mobilenet_v3", "MobileNetV3Small", 1.0),
    "mobilenet_v3_large": ("edgepack.model.mobilenet_v3", "MobileNetV3Large", 1.0),
}
DEFAULT = "mobilenet_v1"
# the widths `edgepack sweep --model NAME` compiles when no --alpha is given (each paper's own)
SWEEP_ALPHAS = {"mobilenet_v1": [1.0, 0.75, 0.5, 0.25], "mobilenet_v2": [1.0, 0.75, 0.5, 0.35],
                "mobilenet_v3_small": [1.0, 0.75], "mobilenet_v3_large": [1.0, 0.75]}


def check_builtin(name: str) -> str:
    if name not in BUILTIN:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(BUILTIN)}")
    return name


def max_alpha(name: str) -> float:
    return BUILTIN[check_builtin(name)][2]


WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # the shipped digits weights, <name>_<alpha>_digits.npz


def shipped_alphas(name: str = DEFAULT) -> list[float]:
    """The widths the package ships digits weights for, read from the weights folder (no torch import)."""
    prefix, suffix = f"{name}_", "_digits.npz"
    return sorted((float(p.name[len(prefix):-len(suffix)]) for p in WEIGHTS_DIR.glob(f"{prefix}*{suffix}")), reverse=True)


def default_alpha(name: str = DEFAULT) -> float:
    """The width a compile takes without --alpha: 0.75 where its weights ship (or none ship), else the widest
    shipped width (a model shipping only other widths)."""
    shipped = shipped_alphas(check_builtin(name))
    return 0.75 if not shipped or 0.75 in shipped else shipped[0]


def build(name: str, alpha: float, resolution: int, classes: int):
    """The untrained torch module (imports torch)."""
    import importlib

    module, cls, _ = BUILTIN[check_builtin(name)]
    return getattr(importlib.import_module(module), cls)(alpha, resolution, classes)
