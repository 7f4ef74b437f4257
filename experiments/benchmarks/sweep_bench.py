"""`griffin-bench sweep`: what scheduling costs. A sweep of small identical runs (a tiny Hawk,
different seeds) runs twice on the embedded local Ray: once to fill the compilation cache, then
measured. Reported per run: the overhead (the task's wall time minus its training loop: driver,
Ray, process start, imports, compilation from the warm cache, evaluation and checkpoints) and,
for the sweep, how busy it kept the machine (the runs' CPU time / (wall time x cores)).
Targets (issue 4): overhead <= 5 s per run warm, >= 85% busy."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

RUN = ["family=hawk", "size=cpu-30k", "data.seq_len=128", "trainer.batch_size=8", "trainer.budget.rule=steps",
       "trainer.eval_every=0", "data.eval_sequences=8", "data.position_eval_factor=2",
       "data.position_eval_docs=8", "logger.wandb.mode=disabled"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=8, help="runs in the measured sweep")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--warm-runs", type=int, default=None,
                        help="runs of the cache-filling sweep (default: one per core, so every worker slot ran once)")
    parser.add_argument("--root", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Hydra override for every run (repeatable), e.g. data.seq_len=64")


def _sweep(root: str, cache: str, seeds: range, steps: int, extra: list[str]) -> tuple[float, dict[str, Any]]:
    """Plan and run one sweep; its wall time counts the driver's planning too."""
    from launch.grid import expand
    from launch.cli import run_with_progress
    from launch.plan import build_plan

    overrides = [*RUN, f"trainer.budget.value={steps}", f"trainer.checkpoint_every={steps}",
                 f"store.root={root}", f"launcher.compile_cache={cache}", *extra,
                 "trainer.seed=" + ",".join(str(s) for s in seeds)]
    start = time.time()
    _, axes, grid = expand(overrides)
    print(f"sweep of {len(grid)} runs in {root}", flush=True)
    outcomes = run_with_progress(build_plan("sweep-bench", axes, grid), live=False)
    return time.time() - start, outcomes


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    from rich.console import Console
    from rich.table import Table

    from experiments.benchmarks.limits import machine_info
    from griffin_core.run_store import RunStore
    from launch.scheduler import available_cores, start_ray

    scratch = args.root or tempfile.mkdtemp(prefix="griffin-sweep-bench-")
    cache = os.path.join(scratch, "jax-cache")
    cores = len(available_cores())
    started = start_ray({"ray_address": None})  # or the Ray this process is already connected to
    try:
        warm = args.warm_runs or cores
        _sweep(os.path.join(scratch, "warm"), cache, range(100, 100 + warm), args.steps, args.override)
        wall, outcomes = _sweep(os.path.join(scratch, "measured"), cache, range(args.runs), args.steps, args.override)
    finally:
        if started:
            ray.shutdown()
    bad = [o for o in outcomes.values() if o.status != "SUCCESS"]
    if bad:
        raise SystemExit(f"griffin-bench sweep: run {bad[0].run.ref.run_id} ended {bad[0].status} "
                         f"({bad[0].reason}); log: {bad[0].log_path}")
    store = RunStore(os.path.join(scratch, "measured"))
    rows = []
    for outcome in outcomes.values():
        result = store.read_result(outcome.run.ref.run_id)
        loop = result["tokens"] / result["tokens_per_s"]
        rows.append({"run": outcome.run.ref.run_id, "task_s": outcome.seconds, "loop_s": loop,
                     "overhead_s": outcome.seconds - loop, "cpu_s": outcome.report["cpu_s"],
                     "process_s": outcome.report["process_s"], "status": outcome.status})
    busy = sum(r["cpu_s"] for r in rows) / (wall * cores)
    overhead = statistics.median(r["overhead_s"] for r in rows)
    table = Table(title=f"sweep of {args.runs} runs x {args.steps} steps on {cores} cores (warm compile cache)")
    for col in ("run", "task s", "training loop s", "overhead s", "CPU s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["run"], f"{r['task_s']:.1f}", f"{r['loop_s']:.1f}", f"{r['overhead_s']:.1f}", f"{r['cpu_s']:.1f}")
    console = Console()
    console.print(table)
    console.print(f"median overhead per run: {overhead:.1f} s (target <= 5 s); busy: {busy:.0%} of "
                  f"{cores} cores over {wall:.0f} s (target >= 85%)")
    return {"machine": machine_info(), "runs": rows, "wall_s": wall, "cores": cores,
            "median_overhead_s": overhead, "busy_fraction": busy, "steps": args.steps}
