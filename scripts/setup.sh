#!/usr/bin/env bash
# Installs everything edgepack needs on a Debian machine with Python 3.11 (as root; idempotent).
#   bash scripts/setup.sh          runtime: toolchains, Python packages, aarch64 TVM runtime libraries
#   bash scripts/setup.sh --test   plus the test extras
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

# Debian toolchains: aarch64 cross compiler + qemu-user (TVM on ARM Linux), arm-none-eabi +
# qemu-system-arm (Cortex-M), chromium (renders HTML reports in tests), llvm (llvm-mca: bench's cycle
# estimate on Cortex-A boards), only what is missing.
debs="g++ g++-aarch64-linux-gnu gcc-aarch64-linux-gnu qemu-user llvm gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm binutils-arm-none-eabi chromium"
missing=""
for d in $debs; do dpkg -s "$d" >/dev/null 2>&1 || missing="$missing $d"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build here.
python3 -m pip install --quiet --disable-pip-version-check torch==2.13.0
python3 -m pip install --quiet --disable-pip-version-check -e ".${extras}"
# aarch64 libtvm_runtime.so / libtvm_ffi.so from the aarch64 wheels of the same versions (cached, never committed)
# (called, not run with -m: the tvm package imports toolchain first, and runpy would warn about a second copy)
python3 -c "from edgepack.backends.tvm.toolchain import main; main(['fetch'])" >/dev/null
# edgepack's QEMU TCG plugin counting guest instructions (bench's cost figure for aarch64), built with the host gcc
python3 -m edgepack.devices.qemu build >/dev/null
