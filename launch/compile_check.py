"""`griffin-sweep ... --dry-run --compile`: compile each planned run's sharded train step for a
simulated mesh of its own chip count, and put XLA's memory per device beside the plan's.

The driver never imports JAX: runs are grouped by chip count and each group goes to one
`python -m experiments.compile_probe` subprocess started with that many simulated CPU devices.
A run whose compiled memory does not fit its chip is rejected (the command exits 2 naming it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from typing import Any, Callable

from experiments.configuration import UsageError
from launch.plan import Plan, PlannedRun


def chips_of(run: PlannedRun) -> int:
    return int(run.tpu["chips"]) if run.tpu else 1


def probe_env(devices: int) -> dict[str, str]:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    return {**os.environ, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])}


def compile_plan(plan: Plan, on_result: Callable[[PlannedRun], None] = lambda run: None) -> None:
    """Fill `run.compiled` ({mesh, strategy, compiled_bytes, compile_seconds} or {error}) for
    every run of the plan, one subprocess per chip count."""
    groups: dict[int, list[PlannedRun]] = defaultdict(list)
    for run in plan.runs:
        groups[chips_of(run)].append(run)
    for devices, runs in sorted(groups.items()):
        proc = subprocess.Popen([sys.executable, "-m", "experiments.compile_probe"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=probe_env(devices))
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps([run.config for run in runs]))
        proc.stdin.close()
        for run in runs:
            line = proc.stdout.readline()
            if not line:
                break
            run.compiled = json.loads(line)
            on_result(run)
        err = proc.stderr.read() if proc.stderr else ""
        if proc.wait() != 0 or any(run.compiled is None for run in runs):
            last = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or ["no output"]
            raise UsageError(f"compiling the runs on {devices} simulated devices failed: {last[0]}")


def unfit(plan: Plan) -> list[str]:
    """Runs whose compiled step does not fit their chip's memory, or did not compile."""
    bad = []
    for run in plan.runs:
        c = run.compiled or {}
        if "error" in c:
            bad.append(f"{run.ref.run_id}: {c['error']}")
        elif run.tpu and c["compiled_bytes"]["total"] > run.tpu["hbm"]:
            bad.append(f"{run.ref.run_id}: {c['compiled_bytes']['total'] / 2**30:.1f} GiB compiled per device > "
                       f"{run.tpu['hbm'] / 2**30:.0f} GiB HBM")
    return bad


def plan_records(plan: Plan) -> list[dict[str, Any]]:
    """PLAN.json: one object per run."""
    out = []
    for run in plan.runs:
        spec, c = run.ref.spec, run.compiled or {}
        out.append({
            "run": run.ref.run_id, "family": spec.family, "size": spec.size, "chips": chips_of(run),
            "pod_type": run.tpu["pod_type"] if run.tpu else None,
            "mesh": c.get("mesh") or (run.tpu or {}).get("mesh"), "strategy": c.get("strategy") or spec.trainer["strategy"],
            "microbatches": spec.trainer["microbatches"], "batch_size": spec.schedule.batch_size,
            "planned_bytes_per_device": (run.tpu or {}).get("memory", {}).get("total"),
            "compiled_bytes_per_device": (c.get("compiled_bytes") or {}).get("total"),
            "compiled_breakdown": c.get("compiled_bytes"), "compile_seconds": c.get("compile_seconds"),
            "replicated_state_bytes": c.get("replicated_state_bytes"),
            "hbm_bytes_per_chip": (run.tpu or {}).get("hbm"), "error": c.get("error")})
    return out


def write_plan_json(plan: Plan, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(plan_records(plan), f, indent=1)
        f.write("\n")
