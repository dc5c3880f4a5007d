"""Silence third-party noise where it is emitted, for the span of one call or import only.

torchao logs "Failed to load ..._C_*.so" for optional CUDA kernels this CPU build lacks, and its
import makes torch's pytree log a deprecation for an Enum: neither is ours to show, and a
one-line error must be the whole stderr.
"""
from __future__ import annotations

import contextlib
import logging
import warnings

IMPORT_NOISE = ("torchao", "torch.utils._pytree")


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR):
    """Raise the named loggers to ``level`` and ignore warnings inside the block; restore both after."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, before):
            lg.setLevel(lvl)


def import_torchao() -> None:
    """Import torchao's PT2E stack without its optional-kernel and deprecation messages."""
    with quiet_loggers(*IMPORT_NOISE):
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
