"""Schedule a plan's runs on Ray: the embedded local Ray by default, an existing cluster by
address, TPU slices by resource (launch/tpu.py). Failure-isolated and resumable:

- one task per run; CPU-only runs share a pool of worker processes that keep their imports
  and warm caches between runs (`launcher.reuse_workers`); GPU runs, and runs with
  reuse_workers=false, get a fresh process each (`max_calls=1`: the devices are released when
  it ends); TPU slices are launched by launch/tpu.py, a fresh process per host;
- locally, each run is pinned to its own cores (affinity + XLA thread count);
- separate retry budgets, chosen by launch/errors.py: a lost worker or node (preemption) is
  retried up to `launcher.preemption_retries` times; the run's own error, running out of
  memory, or a task no node can take up to `launcher.failure_retries` (a `ConfigError` of the
  run's own is not retried: it would fail the same way); a retried run resumes from its last
  checkpoint; a failed or diverged run never stops others;
- a run held by another driver (its lease is live) is polled until it finishes or its lease
  goes stale, so two drivers on one sweep run each point once.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Any, Callable

from launch.errors import budget, describe, retried
from launch.eta import SweepEstimate
from launch.plan import Plan, PlannedRun
from launch.resources import available_cores, check_address, check_cluster, check_gpus
from launch.resources import is_local as _is_local
from launch.worker import compile_cache_env, malloc_env, run_point, xla_env
from run_store import is_url
from run_store.endpoints import endpoint_env


@dataclasses.dataclass
class Outcome:
    run: PlannedRun
    status: str  # SUCCESS | SKIPPED | FAILED | DIVERGED
    reason: str | None = None
    preemptions: int = 0
    failures: int = 0
    log_path: str | None = None
    seconds: float = 0.0
    report: dict | None = None
    """The worker's last report (CPU seconds, process lifetime, ...)."""


@dataclasses.dataclass
class _Task:
    run: PlannedRun
    cores: list[int] | None
    started: float
    attempt_failures: int = 0
    attempt_preemptions: int = 0


def start_ray(launcher: dict[str, Any], num_cpus: int | None = None) -> bool:
    """Connect to `launcher.ray_address`, or start an embedded local Ray on 127.0.0.1 (no
    dashboard). Returns True if this call started Ray (so the caller shuts it down). An
    address nobody answers at, or a cluster no node of which can hold one run, is a
    UsageError naming the key (launch.resources), with Ray shut down again."""
    import ray

    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports: nothing leaves the machine
    if launcher.get("ray_address"):
        check_address(launcher["ray_address"])
        ray.init(address=launcher["ray_address"], **common, runtime_env=_shipped_code(launcher))
        if "kind" in launcher:
            try:
                check_cluster(ray, launcher)
            except BaseException:
                ray.shutdown()
                raise
    else:
        check_gpus(launcher)
        # Loopback only: this makes Ray advertise 127.0.0.1 for every address it hands out.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(num_cpus=num_cpus or len(available_cores()), _node_ip_address="127.0.0.1", **common)
    return True


def _shipped_code(launcher: dict[str, Any]) -> dict | None:
    """On a cluster without the package installed, ship this project's code to the workers."""
    if not launcher.get("ship_code"):
        return None
    import analysis
    import conf
    import experiments
    import griffin_core
    import launch

    return {"py_modules": [m for m in (griffin_core, experiments, launch, conf, analysis)]}


class Scheduler:
    def __init__(self, plan: Plan, on_change: Callable[["Scheduler"], None] = lambda s: None):
        self.plan = plan
        self.launcher = plan.launcher
        self.on_change = on_change
        self.local = _is_local(self.launcher.get("ray_address")) and self.launcher["kind"] != "tpu"
        self.queue: collections.deque[PlannedRun] = collections.deque()
        self.running: dict[Any, _Task] = {}
        self.waiting: list[tuple[float, PlannedRun]] = []  # held by another driver: (next poll, run)
        self.outcomes: dict[str, Outcome] = {}
        self.failures: collections.Counter[str] = collections.Counter()
        self.preemptions: collections.Counter[str] = collections.Counter()
        self.started_at = time.time()
        self.eta = SweepEstimate(plan.store)
        cpus = max(1, int(self.launcher["cpus_per_run"]))
        cores = available_cores()
        self.free_slots = [cores[i:i + cpus] for i in range(0, len(cores) - cpus + 1, cpus)] if self.local else []
        self.max_parallel = self.launcher["max_parallel"] or (len(self.free_slots) if self.local else 10**9)
        cache = self.launcher.get("compile_cache") or _default_cache(plan)
        self.env = {**xla_env(cpus), **(compile_cache_env(cache) if cache else {}), **endpoint_env(),
                    **malloc_env(self.launcher["malloc"], gpus=float(self.launcher["gpus_per_run"]))}

    # -- the loop
    def run(self) -> dict[str, Outcome]:
        import ray

        for run in self.plan.runs:
            if run.done:
                self.outcomes[run.ref.run_id] = Outcome(run, "SKIPPED", "already succeeded")
            else:
                self.queue.append(run)
        reuse = reuses_workers(self.launcher)
        # Ray hands an idle worker to any task with the same runtime environment, so the two
        # kinds of worker get different ones: a single-use task never lands in a shared process.
        env = {**self.env, "GRIFFIN_WORKER_PROCESS": "shared" if reuse else "single-use"}
        remote = ray.remote(max_calls=0 if reuse else 1)(run_point).options(
            num_cpus=float(self.launcher["cpus_per_run"]), num_gpus=float(self.launcher["gpus_per_run"]),
            max_retries=0, runtime_env={"env_vars": env})
        self.on_change(self)
        while self.queue or self.running or self.waiting:
            while self.queue and len(self.running) < self.max_parallel and (self.free_slots or not self.local):
                self._submit(remote, self.queue.popleft())
            if self.running:
                ready, _ = ray.wait(list(self.running), num_returns=1, timeout=0.5)
                for ref in ready:
                    self._collect(ref, self.running.pop(ref))
            else:
                time.sleep(min(0.5, self.launcher["poll_s"]))
            self._poll_waiting()
            self.on_change(self)
        return self.outcomes

    def _submit(self, remote, run: PlannedRun) -> None:
        cores = self.free_slots.pop(0) if self.local else None
        log = self._log_path(run)
        if self.launcher["kind"] == "tpu":
            from launch.tpu import submit_slice_run

            ref = submit_slice_run(run.config, self.plan.name, run.config["launcher"], self.env)
        else:
            ref = remote.remote(run.config, self.plan.name, cores, log)
        self.running[ref] = _Task(run, cores, time.time())

    def _collect(self, ref, task: _Task) -> None:
        import ray

        if task.cores is not None:
            self.free_slots.append(task.cores)
            self.free_slots.sort()
        run, run_id = task.run, task.run.ref.run_id
        try:
            report = ray.get(ref)
        except Exception as err:  # noqa: BLE001 - classified by launch.errors
            key = budget(err)
            counter = self.preemptions if key == "preemption_retries" else self.failures
            counter[run_id] += 1
            if retried(err) and counter[run_id] <= self.launcher[key]:
                self.queue.appendleft(run)  # retried first; it resumes from its last checkpoint
            else:
                self._finish(run, "FAILED", describe(err), task)
            return
        if report["status"] == "BUSY":
            self.waiting.append((time.time() + self.launcher["poll_s"], run))
        elif report["status"] in ("SUCCESS", "SKIPPED", "DIVERGED"):
            self._finish(run, report["status"], report.get("reason"), task, report)
        else:
            self._finish(run, "FAILED", report.get("reason") or report["status"], task, report)

    def _poll_waiting(self) -> None:
        now = time.time()
        still = []
        for due, run in self.waiting:
            if due > now:
                still.append((due, run))
                continue
            status = self.plan.store.status(run.ref.run_id)
            if status.state in ("SUCCESS", "DIVERGED", "FAILED"):
                label = "SKIPPED" if status.state == "SUCCESS" else status.state
                self._finish(run, label, "finished by another driver" if label == "SKIPPED" else status.reason, None)
            elif status.state != "RUNNING" or status.is_stale(self.plan.store.lease_timeout_s):
                self.queue.append(run)  # free again, or its owner went silent: try to take it
            else:
                still.append((now + self.launcher["poll_s"], run))
        self.waiting = still

    def _finish(self, run: PlannedRun, status: str, reason: str | None, task: _Task | None,
                report: dict | None = None) -> None:
        run_id = run.ref.run_id
        self.outcomes[run_id] = Outcome(run, status, reason, self.preemptions[run_id], self.failures[run_id],
                                        self._log_path(run), time.time() - task.started if task else 0.0, report)

    def _log_path(self, run: PlannedRun) -> str | None:
        root = self.plan.store.root
        return None if is_url(root) else os.path.join(self.plan.store.run_dir(run.ref.run_id), "logs", "worker.log")


def reuses_workers(launcher: dict[str, Any]) -> bool:
    """Worker processes may train several runs in turn: CPU-only runs that allow it. (A process
    that has initialised a GPU keeps it, and its next run may be given another; TPU slices go
    through launch/tpu.py.) Every run of a sweep has the same XLA thread count, set in the
    workers' environment, so a reused process is configured right for each of its runs."""
    return bool(launcher["reuse_workers"]) and not float(launcher["gpus_per_run"]) and launcher["kind"] != "tpu"


def _default_cache(plan: Plan) -> str | None:
    """The cache the environment names (JAX_COMPILATION_CACHE_DIR, as for any JAX program),
    else <root>/jax-cache for a local store, else none."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    root = plan.store.root
    return None if is_url(root) else os.path.abspath(os.path.join(root, "jax-cache"))
