"""MetaSchedule tuning: records as a JSON database per target, picked up by later compiles.

On this host the x86-tvm target is measured for real. ARM targets need a device over RPC;
without one, tune says it cannot measure and offers to re-target x86 records (they build and
run correctly on the A72, though they were timed on x86).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from edgepack.backends.tvm.runner import use_all_cores
from edgepack.backends.tvm.lower import database_dir, tvm_target
from edgepack.backends.tvm.spec import TvmSpec
from edgepack.devices.tools import copy_atomically
from edgepack.errors import ConfigError, DeviceUnavailable
from edgepack.targets import Target


def _in_process_builder():
    """Build candidates in this process: fresh builder workers spend ~19 s importing TVM and time out on 2 cores."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder import BuilderResult
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for item in build_inputs:
                try:
                    results.append(BuilderResult(default_export(default_build(item.mod, item.target, None)), None))
                except Exception as e:  # a candidate that does not build is a result, not a crash
                    results.append(BuilderResult(None, f"{type(e).__name__}: {e}"))
            return results

    return InProcessBuilder()


def _runner(rpc: str | None, key: str | None):
    from tvm.s_tir import meta_schedule as ms

    if rpc is None:
        return ms.runner.LocalRunner(timeout_sec=60, evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=0))
    host, _, port = rpc.rpartition(":")
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=int(port), tracker_key=key, session_timeout_sec=120)
    return ms.runner.RPCRunner(config, evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=0))


def check_can_measure(target: Target, rpc: str | None) -> None:
    if target.backend != "tvm":
        raise ConfigError(f"target {target.name} uses the {target.backend} backend: tuning is for TVM targets")
    spec = TvmSpec.from_target(target)
    if spec.cross and rpc is None:
        raise DeviceUnavailable(
            f"cannot measure {target.name} ({spec.arch}) here without a device: pass --rpc HOST:PORT --key "
            f"{spec.rpc_key or 'KEY'}, or `edgepack tune --target {target.name} --retarget-from x86-tvm` "
            "to reuse x86 records (they build and run correctly, tuned for the wrong CPU)")


def tune(mod, target: Target, trials: int, rpc: str | None = None, key: str | None = None, log=print) -> Path:
    """Tune ``mod`` (a Relax module) for ``target``; merge the records into the target's database."""
    from tvm.s_tir import meta_schedule as ms

    check_can_measure(target, rpc)
    if trials < 1:
        raise ConfigError("--trials must be at least 1")
    from tvm import relax

    out = database_dir(target)
    tvm_tgt = tvm_target(target)
    if rpc is None:
        use_all_cores()  # measure candidates with the threads deployment will use
    with tvm_tgt:  # legalize + fuse first, or task extraction finds nothing to tune
        fused = relax.get_pipeline("zero")(mod)
    with tempfile.TemporaryDirectory() as work:
        db = ms.relax_integration.tune_relax(
            mod=fused, params={}, target=tvm_tgt, work_dir=work, max_trials_global=trials,
            num_trials_per_iter=min(4, trials), builder=_in_process_builder(), runner=_runner(rpc, key),
            seed=0)
        merged = _merge(db, out)
    log(f"{len(merged)} tuning records for {target.name} in {out}")
    return out


def _merge(new_db, out: Path):
    """Append ``new_db``'s records to the JSON database in ``out`` (created if missing)."""
    from tvm.s_tir import meta_schedule as ms

    out.mkdir(parents=True, exist_ok=True)
    db = ms.database.JSONDatabase(work_dir=str(out))
    for record in new_db.get_all_tuning_records():
        db.commit_workload(record.workload.mod)
        db.commit_tuning_record(ms.database.TuningRecord(
            record.trace, db.commit_workload(record.workload.mod), record.run_secs, record.target, record.args_info))
    return db


def retarget(source: Target, target: Target, log=print) -> Path:
    """Copy ``source``'s records for ``target``: they are applied by workload, compiled for the new CPU."""
    source_name, target_name = source.name, target.name
    src, dst = database_dir(source), database_dir(target)
    if not (src / "database_workload.json").exists():
        raise ConfigError(f"no tuning records for {source_name} in {src}: run `edgepack tune --target {source_name}` first")
    for name in ("database_workload.json", "database_tuning_record.json"):  # a compile reading meanwhile sees whole files
        copy_atomically(src / name, dst / name)
    log(f"copied {source_name} records to {dst}: compiles for {target_name} now use them (timed on {source_name}, not measured on the board)")
    return dst
