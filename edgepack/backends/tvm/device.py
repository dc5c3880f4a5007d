"""The TVM runner's old module name: tests and benchmarks still import Runner, run_on_qemu, output_size and
qemu_cpu from here. Everything lives in runner.py (every backend's Runner is in <backend>/runner.py);
delete this file once nothing imports edgepack.backends.tvm.device."""
from edgepack.backends.tvm.runner import (VM, LocalSession, QemuUser, RemoteSession, Runner, output_size, qemu_cpu,
                                          run_on_qemu, use_all_cores)

__all__ = ["VM", "LocalSession", "QemuUser", "RemoteSession", "Runner", "output_size", "qemu_cpu", "run_on_qemu",
           "use_all_cores"]
