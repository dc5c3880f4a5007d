"""Moved to edgepack.devices.qemu. This name stays only until benchmarks/bench_arm.py and scripts/setup.sh
(`python3 -m edgepack.qemu build`) use the new one: it is the same module object, not a copy."""
import sys

from edgepack.devices import qemu as _moved

if __name__ == "__main__":
    _moved.main(sys.argv[1:], prog="edgepack.qemu")
else:
    sys.modules[__name__] = _moved
