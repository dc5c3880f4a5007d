#!/usr/bin/env bash
# Installs everything edgepack needs on a Debian machine with Python 3.11 (as root, idempotent).
#   bash scripts/setup.sh          runtime: Python packages (torch pinned to the CPU wheel)
#   bash scripts/setup.sh --test   plus the test extras
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build here.
python3 -m pip install --quiet --disable-pip-version-check torch==2.13.0
python3 -m pip install --quiet --disable-pip-version-check -e ".${extras}"
