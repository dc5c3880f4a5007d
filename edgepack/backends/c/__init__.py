"""The C backend: generated int8 C (model.c/model.h + kernels) for Cortex-M and any C99 compiler.

``lower(build, folder)`` generates, builds and checks the project (see lower.py); ``Runner``
runs the built binary for bench (QEMU mps2 with semihosting for Cortex-M, native or
qemu-aarch64 for c-host).
"""
from edgepack.backends.c.lower import lower
from edgepack.backends.c.runner import Runner

__all__ = ["lower", "Runner"]
