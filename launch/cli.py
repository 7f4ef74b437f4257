"""`griffin-sweep experiment=NAME [overrides and sweep axes] [--dry-run]`."""

from __future__ import annotations

import sys
from typing import Sequence

from experiments.cli import _guard, overrides_parser
from experiments.configuration import UsageError
from run_store.cli import output_file


def _sweep(argv: Sequence[str]) -> int:
    parser = overrides_parser(
        "griffin-sweep",
        "Plan and run a sweep: griffin-sweep experiment=scaling_cpu [family=hawk,griffin size=glob(cpu-*) ...]",
        {"--dry-run": "print the plan and exit", "--no-live": "no live progress line (logs, CI)",
         "--compile": "compile each run's sharded train step for a simulated mesh of its chips and reject runs "
                      "whose compiled memory per device does not fit (no run is trained by this step)"},
        "Hydra overrides; comma lists, range() and glob() are axes")
    parser.add_argument("--plan-json", metavar="PATH", type=output_file,
                        help="also write the plan as JSON (one object per run)")
    args = parser.parse_intermixed_args(argv)

    from launch.display import console, plan_table, summary_table
    from launch.grid import expand
    from launch.plan import build_plan

    grid = expand(args.overrides)
    from experiments.configuration import compose, to_dict

    base = to_dict(compose(grid.plain))
    name = base["experiment"]["name"]
    plan = build_plan(name, grid.axes, grid.points, require_data=not args.dry_run, check_memory=not args.compile)
    out = console()
    if args.compile:
        compile_with_progress(plan, out)
    out.print(plan_table(plan))
    for key, (preset, mine) in grid.replaced.items():
        out.print(f"axis {key}: the command line's {','.join(mine)} replaces the preset's {','.join(preset)}")
    for (size, key), (preset_value, mine) in plan.replaced.items():
        out.print(f"size {size} {key}: the command line's {','.join(mine)} replaces the preset's {preset_value} "
                  f"(experiment.size_overrides)", markup=False)
    missing = {r.ref.data_error for r in plan.runs if r.ref.data_error}
    for reason in missing:
        out.print(f"[yellow]data not usable here ({reason}): planned without its fingerprint[/yellow]")
    total = sum(r.est_seconds or 0 for r in plan.todo())
    if plan.launcher["kind"] == "tpu":
        chip_hours = sum(r.tpu["chip_hours"] for r in plan.todo())
        out.print(f"TPU total: {chip_hours:,.0f} chip-hours at {plan.launcher['assumed_mfu']:.0%} MFU")
    out.print(f"{len(plan.todo())} to run, {len(plan.runs) - len(plan.todo())} already done; store {plan.store.root}")
    if args.plan_json:
        from launch.compile_check import write_plan_json

        write_plan_json(plan, args.plan_json)
        out.print(f"plan written to {args.plan_json}")
    if args.compile:
        from launch.compile_check import unfit

        bad = unfit(plan)
        if bad:
            raise UsageError(f"{len(bad)} run(s) do not fit: " + "; ".join(bad))
    if args.dry_run:
        return 0
    from launch.scheduler import start_ray

    # Ray first: an address nobody answers at, or a cluster without a node for one run, is refused
    # before the store is written (the plan has read and checked the store's files already).
    started = start_ray(plan.launcher)
    try:
        manifest = plan.store.write_sweep(name, {"config": base, "grid": {"axes": grid.axes, "points": grid.points},
                                                 "runs": [r.ref.run_id for r in plan.runs]})
        outcomes = run_with_progress(plan, live=not args.no_live and out.is_terminal)
    finally:
        if started:
            import ray

            ray.shutdown()
    out.print(summary_table(plan, outcomes))
    for outcome in outcomes.values():  # whole, unwrapped: a reason and a log path to copy
        if outcome.status in ("FAILED", "DIVERGED"):
            log = f" (log {outcome.log_path})" if outcome.log_path else ""
            print(f"{outcome.run.ref.run_id} {outcome.status}: {outcome.reason or 'no reason given'}{log}", flush=True)
    out.print(f"sweep manifest: {manifest}" + (f" (estimated {total / 60:.1f} min)" if total else ""))
    failed = [o for o in outcomes.values() if o.status == "FAILED"]
    return 1 if failed else 0


sweep_main = _guard(_sweep, "griffin-sweep")


def compile_with_progress(plan, out) -> None:
    from rich.progress import Progress

    from launch.compile_check import compile_plan

    with Progress(console=out, transient=True) as bar:
        task = bar.add_task("compiling the sharded train steps", total=len(plan.runs))
        compile_plan(plan, on_result=lambda run: bar.advance(task))


def run_with_progress(plan, live: bool = True) -> dict:
    """Run a plan on the connected Ray, showing progress: a live line on a terminal, else one
    printed line whenever the counts change."""
    from launch.display import console, progress_line
    from launch.scheduler import Scheduler

    if not live:
        last = [""]

        def show(s):
            line = progress_line(s)
            if line.split("| elapsed")[0] != last[0]:
                last[0] = line.split("| elapsed")[0]
                print(line, flush=True)

        return Scheduler(plan, on_change=show).run()
    from rich.live import Live

    with Live(console=console(), refresh_per_second=2) as live_display:
        return Scheduler(plan, on_change=lambda s: live_display.update(progress_line(s))).run()


if __name__ == "__main__":
    sys.exit(sweep_main())
