"""Moved by concept: the target's C settings are spec.py, sources and build build.py, sizes elf.py, runs
runner.py. These names stay only for the tests that still import them from here (test_c_backend,
test_add_op, test_tflite_heads); new code imports the modules above."""
from edgepack.backends.c.build import RUNTIME, Built, build, require_tools, tool_version, write_sources
from edgepack.backends.c.elf import footprint
from edgepack.backends.c.runner import RunResult, callgrind_instructions, run_images
from edgepack.backends.c.spec import CROSS_EXE, FIRMWARE, HOST_EXE, HOST_LIB, BuildSpec

__all__ = ["CROSS_EXE", "FIRMWARE", "HOST_EXE", "HOST_LIB", "RUNTIME", "BuildSpec", "Built", "RunResult", "build",
           "callgrind_instructions", "footprint", "require_tools", "run_images", "tool_version", "write_sources"]
