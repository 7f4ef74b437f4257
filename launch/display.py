"""What a person looks at: the plan table, a live progress line, and the final summary."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from launch.plan import Plan


def _si(x: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def plan_table(plan: Plan) -> Table:
    tpu = plan.launcher["kind"] == "tpu"
    table = Table(title=f"sweep {plan.name}: {len(plan.runs)} runs ({len(plan.todo())} to do)")
    columns = ["run", "params", "tokens", "steps", "FLOPs (exact)", "est. time", "resources", "state"]
    compiled = any(run.compiled for run in plan.runs)
    if tpu:
        columns[5:5] = ["chips", "chip-hours", "mesh", "planned/device"] + (["compiled/device"] if compiled else [])
    for col in columns:
        table.add_column(col, justify="left" if col in ("run", "resources", "state") else "right")
    for run in plan.runs:
        spec = run.ref.spec
        row = [run.ref.run_id, _si(spec.params().total), _si(spec.schedule.tokens), str(spec.schedule.steps),
               _si(run.flops), _duration(run.est_seconds),
               " ".join(f"{k}={v:g}" for k, v in run.resources.items()), "done" if run.done else run.state.lower()]
        if tpu:
            t = run.tpu
            mesh = f"{t['strategy']} " + "x".join(str(v) for v in t["mesh"].values())
            row[5:5] = [f"{t['chips']} ({t['pod_type']})", f"{t['chip_hours']:.3g} @ {t['mfu']:.0%} MFU", mesh,
                        f"{t['memory']['total'] / 2**30:.1f}/{t['hbm'] / 2**30:.0f} GiB"]
            if compiled:
                row.insert(9, _compiled(run.compiled, t["hbm"]))
        table.add_row(*row)
    return table


def _compiled(compiled: dict | None, hbm: float) -> str:
    if not compiled:
        return "-"
    if "error" in compiled:
        return "[red]error[/red]"
    total = compiled["compiled_bytes"]["total"]
    text = f"{total / 2**30:.1f} GiB ({compiled['compile_seconds']:.0f}s)"
    return text if total <= hbm else f"[red]{text}[/red]"


def progress_line(scheduler) -> str:
    """Counts, elapsed time and the ETA (launch.eta: measured from the sweep's own runs; "?"
    while some run's time is unknown)."""
    done = sum(o.status in ("SUCCESS", "SKIPPED") for o in scheduler.outcomes.values())
    bad = sum(o.status in ("FAILED", "DIVERGED") for o in scheduler.outcomes.values())
    eta = scheduler.eta.remaining(scheduler)
    return (f"done {done} | running {len(scheduler.running)} | queued {len(scheduler.queue) + len(scheduler.waiting)}"
            f" | failed {bad} | elapsed {_duration(time.time() - scheduler.started_at)} | ETA {_duration(eta)}")


def summary_table(plan: Plan, outcomes) -> Table:
    table = Table(title=f"sweep {plan.name}: summary")
    for col in ("run", "status", "held-out nats", "time", "retries", "reason / log"):
        table.add_column(col)
    for run in plan.runs:
        outcome = outcomes.get(run.ref.run_id)
        if outcome is None:
            table.add_row(run.ref.run_id, "NOT RUN", "", "", "", "")
            continue
        result = plan.store.read_result(run.ref.run_id) if outcome.status in ("SUCCESS", "SKIPPED", "DIVERGED") else None
        loss = result.heldout_loss_nats if result else None
        detail = ""
        if outcome.status in ("FAILED", "DIVERGED"):
            detail = f"{outcome.reason or ''} ({outcome.log_path})" if outcome.log_path else (outcome.reason or "")
        elif outcome.status == "SKIPPED":
            detail = outcome.reason or "already done"
        retries = f"{outcome.preemptions}p/{outcome.failures}e" if outcome.preemptions or outcome.failures else ""
        table.add_row(run.ref.run_id, outcome.status, f"{loss:.4f}" if loss is not None else "",
                      _duration(outcome.seconds) if outcome.seconds else "", retries, detail)
    return table


def console() -> Console:
    import sys

    return Console(width=None if sys.stdout.isatty() else 200)
