"""edgepack tune: MetaSchedule tuning records for a TVM target (later compiles pick them up)."""
from __future__ import annotations

import tempfile

from edgepack.backends.tvm import tune
from edgepack.backends.tvm.lower import int8_kernels, tvm_target
from edgepack.backends.tvm.relax_int8 import plan_to_relax
from edgepack.cli.bench_cmd import check_key, rpc_address
from edgepack.cli.flags import add_targets_flag, positive_int
from edgepack.compiler import CompileConfig, compile_model
from edgepack.model.builtin import max_alpha
from edgepack.plan.plan import Plan
from edgepack.targets import get_target
from edgepack.validate import check_alpha, check_resolution


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="tune a TVM target with MetaSchedule; records land in ~/.cache/edgepack/tuning/<target>/")
    p.add_argument("--target", required=True, help="a TVM target (x86-tvm here; ARM targets need --rpc)")
    p.add_argument("--trials", type=positive_int, default=64, help="global trial budget (default 64)")
    p.add_argument("--model", default="mobilenet_v1", help="the built-in model to tune for: mobilenet_v1 (default) or "
                   "another built-in (records are kept per workload, so several can share a target's database)")
    p.add_argument("--alpha", default="0.75", help="width multiplier of the model to tune for (default 0.75)")
    p.add_argument("--resolution", default="224", help="input resolution (default 224)")
    p.add_argument("--rpc", metavar="HOST:PORT", type=rpc_address, help="RPC tracker that serves the target's boards")
    p.add_argument("--key", help="with --rpc: device key at the tracker (default: the target's [rpc] key)")
    p.add_argument("--retarget-from", metavar="TARGET", help="copy another target's records instead of measuring")
    add_targets_flag(p)
    p.set_defaults(run=run)


def run(args) -> int:
    check_key(args.key, args.rpc)
    check_alpha(args.alpha, max_alpha(args.model)), check_resolution(args.resolution)  # before TVM and torch load
    target = get_target(args.target, args.targets)
    if args.retarget_from:
        tune.retarget(get_target(args.retarget_from, args.targets), target)
        return 0
    key = args.key or target.rpc.key
    tune.check_can_measure(target, args.rpc)
    with tempfile.TemporaryDirectory() as tmp:  # the int8 plan of the model to tune for
        config = CompileConfig(target="host", alpha=args.alpha, resolution=args.resolution, eval_size=8,
                               output=f"{tmp}/a", architecture=args.model)
        plan = Plan.load(compile_model(config, log=lambda *_: None))
    tune.tune(plan_to_relax(plan), target, args.trials, rpc=args.rpc, key=key)
    if int8_kernels(target, plan, tvm_target(target)) == "vnni":
        print(f"note: int8 compiles for {args.target} use the hand-scheduled VNNI kernels on this CPU; these records "
              "serve the generic lowering (fp32, CPUs without VNNI, or [compiler] int8_kernels = \"generic\")")
    return 0
