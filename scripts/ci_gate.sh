#!/usr/bin/env bash
# The board gate of docs/ci.md, on loopback: compile, bench over a local TVM RPC tracker
# against the committed baseline, write the JUnit file. Exit code is the bench's.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-ci-gate}"
rm -rf "$out" && mkdir -p "$out"
edgepack compile --target x86-tvm --alpha 0.25 --resolution 64 --eval-size 120 -o "$out/artifact"
# latency is timed on a shared CI host: gate it loosely; accuracy and agreement use the target's tolerances
python3 -m edgepack.backends.tvm.rpc_local --key x86 -- \
  edgepack bench "$out/artifact" --rpc "{tracker}" --key x86 --count 20 \
  --baseline benchmarks/baselines/x86-tvm-0.25-64.json --max-latency-increase 4.0 \
  --junit "$out/bench.xml" --json "$out/bench.json"
