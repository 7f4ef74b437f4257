"""`griffin-bench sweep`: what scheduling costs. Small runs of a tiny Hawk on the embedded local
Ray, in two sweeps of equal training work:

- seeds: one model, a seed per run. A worker's next run finds the previous run's jitted
  programs in the process (seed and learning-rate sweeps, repeated grid points);
- learning rates: a peak learning rate per run. Every run traces and lowers its own programs
  and loads them from the persistent compilation cache (as every point of a size grid does).

Each runs twice: once to fill the compilation cache, then measured on a fresh Ray, so the
measured sweep's first run on each core pays the worker process's start and imports, and later
runs reuse that process (`launcher.reuse_workers`). Reported per run: the overhead (the task's
wall time minus its training loop: driver, Ray, process start, imports, tracing and loading the
programs, evaluation and checkpoints), the worker's pid and resident memory (reuse, and no
growth run by run); per sweep, how busy it kept the machine (the runs' CPU time / (wall time x
cores)). Targets (issue 4): overhead <= 5 s per run warm, >= 85% busy.

It lives in `launch/` (it drives the sweep scheduler) and joins `griffin-bench` through the
`griffin_scaling.bench` entry-point group (pyproject.toml), so `experiments/` never imports
`launch/`."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

from run_store.cli import positive_int

RUN = ["family=hawk", "size=cpu-30k", "data.seq_len=128", "trainer.batch_size=8", "trainer.budget.rule=steps",
       "trainer.eval_every=0", "data.eval_sequences=8", "data.position_eval_factor=2",
       "data.position_eval_docs=8", "logger.wandb.mode=disabled"]
KINDS = ("seeds", "learning_rates")


HELP = "scheduling overhead per run and how busy a sweep of small runs keeps the cores"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=positive_int, default=8, help="runs in each measured sweep")
    parser.add_argument("--steps", type=positive_int, default=300, help="training steps per run")
    parser.add_argument("--warm-runs", type=positive_int, default=None,
                        help="runs of the seeds sweep's cache-filling pass (default: one per core, so every "
                             "worker slot ran once); the learning-rate sweep's pass runs every rate once")
    parser.add_argument("--sweeps", type=_kinds, default=list(KINDS),
                        help=f"which sweeps, comma-separated: {', '.join(KINDS)}")
    parser.add_argument("--root", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Hydra override for every run (repeatable), e.g. data.seq_len=64")


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(KINDS)}")
    return kinds


def _axes(kind: str, runs: int, warm: bool, warm_runs: int) -> list[str]:
    """The sweep axis of one pass. The cache-filling pass of the learning-rate sweep compiles
    every rate (each is its own program); of the seeds sweep, one run per worker is enough."""
    if kind == "seeds":
        seeds = range(100, 100 + warm_runs) if warm else range(runs)
        return ["trainer.seed=" + ",".join(str(s) for s in seeds)]
    rates = ",".join(f"{1 + 0.01 * i:.2f}" for i in range(runs))
    return [f"optim.lr_multiplier={rates}", f"trainer.seed={100 if warm else 0}"]


def _sweep(root: str, cache: str, axes: list[str], steps: int, extra: list[str]) -> tuple[float, dict[str, Any]]:
    """Plan and run one sweep; its wall time counts the driver's planning too."""
    from launch.cli import run_with_progress
    from launch.grid import expand
    from launch.plan import build_plan

    overrides = [*RUN, f"trainer.budget.value={steps}", f"trainer.checkpoint_every={steps}",
                 f"store.root={root}", f"launcher.compile_cache={cache}", *extra, *axes]
    start = time.time()
    grid = expand(overrides)
    print(f"sweep of {len(grid.points)} runs in {root}", flush=True)
    outcomes = run_with_progress(build_plan("sweep-bench", grid.axes, grid.points), live=False)
    return time.time() - start, outcomes


def _measure(kind: str, args: argparse.Namespace, scratch: str, cores: int, own_ray: bool) -> dict[str, Any]:
    """Fill the cache, restart Ray (if this process owns it), run the measured sweep."""
    import ray

    from run_store import RunStore
    from launch.scheduler import start_ray

    cache = os.path.join(scratch, kind, "jax-cache")
    warm_runs = args.warm_runs or cores
    _sweep(os.path.join(scratch, kind, "warm"), cache, _axes(kind, args.runs, True, warm_runs), args.steps,
           args.override)
    if own_ray:  # only the compilation cache is warm: the measured sweep starts its own workers
        ray.shutdown()
        start_ray({"ray_address": None})
    measured = os.path.join(scratch, kind, "measured")
    wall, outcomes = _sweep(measured, cache, _axes(kind, args.runs, False, warm_runs), args.steps, args.override)
    bad = [o for o in outcomes.values() if o.status != "SUCCESS"]
    if bad:
        raise SystemExit(f"griffin-bench sweep: run {bad[0].run.ref.run_id} ended {bad[0].status} "
                         f"({bad[0].reason}); log: {bad[0].log_path}")
    store = RunStore(measured)
    rows = []
    for outcome in outcomes.values():
        result = store.read_result(outcome.run.ref.run_id)
        loop = result.tokens / result.tokens_per_s
        report = outcome.report
        rows.append({"run": outcome.run.ref.run_id, "task_s": outcome.seconds, "loop_s": loop,
                     "overhead_s": outcome.seconds - loop, "cpu_s": report["cpu_s"], "process_s": report["process_s"],
                     "pid": report["pid"], "rss_mb": report.get("rss_mb"), "status": outcome.status})
    return {"runs": rows, "wall_s": wall, "median_overhead_s": statistics.median(r["overhead_s"] for r in rows),
            "busy_fraction": sum(r["cpu_s"] for r in rows) / (wall * cores)}


def _print(kind: str, sweep: dict[str, Any], args: argparse.Namespace, cores: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{kind}: {args.runs} runs x {args.steps} steps on {cores} cores (warm compile cache)")
    for col in ("run", "worker pid", "task s", "training loop s", "overhead s", "CPU s", "RSS MiB"):
        table.add_column(col, justify="right")
    for r in sweep["runs"]:
        rss = f"{r['rss_mb']:.0f}" if r["rss_mb"] is not None else "-"
        table.add_row(r["run"], str(r["pid"]), f"{r['task_s']:.1f}", f"{r['loop_s']:.1f}", f"{r['overhead_s']:.1f}",
                      f"{r['cpu_s']:.1f}", rss)
    console = Console()
    console.print(table)
    console.print(f"{kind}: median overhead per run {sweep['median_overhead_s']:.1f} s (target <= 5 s); busy "
                  f"{sweep['busy_fraction']:.0%} of {cores} cores over {sweep['wall_s']:.0f} s (target >= 85%)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from experiments.benchmarks.limits import machine_info
    from launch.scheduler import available_cores, start_ray

    kinds = args.sweeps
    scratch = args.root or tempfile.mkdtemp(prefix="griffin-sweep-bench-")
    cores = len(available_cores())
    own_ray = start_ray({"ray_address": None})  # or the Ray this process is already connected to
    sweeps = {}
    try:
        for kind in kinds:
            sweeps[kind] = _measure(kind, args, scratch, cores, own_ray)
    finally:
        if own_ray:
            ray.shutdown()
    for kind, sweep in sweeps.items():
        _print(kind, sweep, args, cores)
    return {"machine": machine_info(), "cores": cores, "steps": args.steps, "sweeps": sweeps}
