#!/usr/bin/env bash
# The board gate of docs/ci.md, on loopback: compile, bench over a local TVM RPC tracker
# against the committed baseline for the kernels this CPU compiled, write the JUnit file.
# Exit code is the bench's. `scripts/ci_gate.sh OUT --update-baseline` re-measures that baseline instead.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-ci-gate}"
rm -rf "$out" && mkdir -p "$out"
edgepack compile --target x86-tvm --alpha 0.25 --resolution 64 --eval-size 120 -o "$out/artifact"
# one baseline per int8 kernel choice: "vnni" on CPUs with AVX512-VNNI, "generic" elsewhere
# (EDGEPACK_TVM_INT8_KERNELS=generic forces it); a baseline of the other choice would be refused
kernels=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["backend_info"]["kernels"])' "$out/artifact/manifest.json")
baseline="benchmarks/baselines/x86-tvm-0.25-64-$kernels.json"
if [ "${2:-}" = "--update-baseline" ]; then gate=(--update-baseline "$baseline"); else gate=(--baseline "$baseline"); fi
echo "gate: $kernels int8 kernels, ${gate[*]}"
# latency is timed on a shared CI host: gate it loosely; accuracy and agreement use the target's tolerances
python3 -m edgepack.backends.tvm.rpc_local --key x86 -- \
  edgepack bench "$out/artifact" --rpc "{tracker}" --key x86 --count 20 \
  "${gate[@]}" --max-latency-increase 4.0 \
  --junit "$out/bench.xml" --json "$out/bench.json"
