"""The one interface bench runs every backend through: ``Runner(folder, manifest, **options)``.

A backend's Runner subclasses :class:`Runner` and overrides what its device offers; the defaults say
"not available" (None), so bench never probes for methods. ``OPTIONS`` declares, on the class, the
device options it accepts (bench's ``--device``, ``--rpc``, ...); :meth:`Runner.check_options`
refuses any other option, or a bad value, with one ConfigError line before the runner is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from edgepack.devices.timing import latency_stats
from edgepack.errors import ConfigError
from edgepack.plan.plan import QParams
from edgepack.validate import check_timeout


@dataclass(frozen=True)
class Option:
    """One device option: ``parse`` turns the given value into the runner's argument (raising
    ValueError/TypeError when it is not one), ``choices`` lists the allowed values when they are fixed."""

    help: str
    parse: Callable = str
    choices: tuple[str, ...] | None = None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class Runner:
    """Runs an artifact on its device. ``device`` names where it runs ("host", "qemu-aarch64",
    "rpc 127.0.0.1:9190 key rpi4", ...)."""

    OPTIONS: ClassVar[dict[str, Option]] = {}
    device: str = "host"

    def __init__(self, folder, manifest: dict, **options):
        self.folder, self.manifest = folder, manifest

    @classmethod
    def check_options(cls, backend: str, options: dict) -> dict:
        """The options, parsed; an option this runner does not take, or a bad value, is a ConfigError.
        ``timeout`` (bench --timeout, always given) is checked and dropped for runners that take none."""
        accepted = ", ".join(flag(n) for n in cls.OPTIONS) or "no device options"
        parsed = {}
        for name, value in options.items():
            option = cls.OPTIONS.get(name)
            if option is None and name == "timeout":  # it bounds device programs: an in-process runner starts none
                check_timeout(value)
                continue
            if option is None:
                raise ConfigError(f"the {backend} backend does not take {flag(name)}: it accepts {accepted}")
            try:
                parsed[name] = option.parse(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{flag(name)} {value!r} is not valid for the {backend} backend: {option.help}")
            if option.choices is not None and str(parsed[name]) not in option.choices:
                raise ConfigError(f"{flag(name)} '{value}' is unknown for the {backend} backend: use "
                                  f"{' or '.join(option.choices)}")
        return parsed

    def run_int8(self, x: np.ndarray) -> np.ndarray | None:
        """int8 input -> int8 output, where the device computes in integers (bench then checks it bit
        for bit against the reference); None on runners that compute in float."""
        return None

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Float logits for float NCHW images; integer runners quantize and dequantize with the plan."""
        plan = self.manifest.get("plan")
        if not plan:
            raise NotImplementedError(f"{type(self).__module__}.Runner runs no float artifacts")
        in_q, out_q = QParams(**plan["input"]), QParams(**plan["output"])
        return out_q.dequantize(self.run_int8(in_q.quantize(images)))

    def time_one(self, image: np.ndarray) -> Callable[[], object] | None:
        """A zero-argument callable running one batch-1 inference, for the host timer; None when the
        device's wall-clock time is no latency (emulators) or it keeps its own clock (see latency)."""
        return None

    def latency(self, image: np.ndarray, warmup: int, count: int) -> dict | None:
        """Latency statistics (edgepack.devices.timing.latency_stats), or None on emulated devices.
        The default times time_one() with the host's clock; boards over RPC use their own."""
        timer = self.time_one(image)
        return None if timer is None else latency_stats(timer, warmup=warmup, count=count)

    def cost(self) -> dict | None:
        """A deterministic cost figure (instructions, cycles) for emulated devices; None elsewhere."""
        return None

    def details(self) -> dict | None:
        """Device facts for the report (load time, kernels in use): {"summary": one line, ...}, or None."""
        return None
