"""TVM backend (ARM Linux CPUs, Raspberry Pi, this host): the int8 plan lowered to integer-only
Relax, or the folded fp32 model through ``from_exported_program``; exported as a shared library
(cross-compiled for ARM) and run on the host, under qemu-aarch64, or on a board over TVM RPC."""
from edgepack.backends.tvm.lower import lower
from edgepack.backends.tvm.runner import Runner

__all__ = ["lower", "Runner"]
