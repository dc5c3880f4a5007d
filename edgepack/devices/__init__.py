"""Device program runs: one process runner (its own session, a time limit, its whole process group
killed on timeout, error or a stop signal, a temporary run folder removed in every case) and the
"find this tool or name its apt package" lookup. Every device program edgepack runs (native test
programs, qemu-user, qemu-system, valgrind) goes through here, so a hung one never outlives its limit
or edgepack itself. Host-clock latency statistics are edgepack.devices.timing (imported on its own: numpy)."""
from edgepack.devices.process import Finished, abandon, adopt, release, run, run_folder
from edgepack.devices.tools import find_tool

__all__ = ["Finished", "abandon", "adopt", "find_tool", "release", "run", "run_folder"]
