"""Device program runs: one process runner (its own session, a time limit, its whole process group
killed on timeout, error or a stop signal, a temporary run folder removed in every case), the Device a
runner chooses once (this host, qemu-user, qemu-system, valgrind: device.py), "find this tool or name its
apt package" and the one cache folder (tools.py). Every program edgepack starts (test programs, emulators,
compilers, local RPC servers) goes through here, so a hung one never outlives its limit or edgepack
itself. qemu-user runs with instruction counts are edgepack.devices.qemu; host-clock latency statistics
are edgepack.devices.timing (each imported on its own: numpy)."""
from edgepack.devices.device import NATIVE, Device, Ran, emulated
from edgepack.devices.process import Finished, abandon, adopt, defer_signal, pause, release, run, run_folder, run_tool, start, stop
from edgepack.devices.tools import DEBIAN, SETUP, cache_dir, require

__all__ = ["DEBIAN", "NATIVE", "SETUP", "Device", "Finished", "Ran", "abandon", "adopt", "defer_signal", "cache_dir", "emulated",
           "pause", "release", "require", "run", "run_folder", "run_tool", "start", "stop"]
