"""One error classifier (launch/errors.py) for the CPU scheduler and the TPU slice runner:
real `ray.exceptions` instances, built here without a cluster, each land on the budget the
docs promise; the scheduler spends that budget (Ray's get is replaced by one that raises), and
a slice's host errors become SliceHostLost or SliceRunFailed by the same rules."""

from __future__ import annotations

import time

import pytest
from ray import exceptions as rx

from griffin_core.config import ConfigError
from run_store.errors import CorruptStoreFile, StoreError
from launch.errors import (CONFIG_ERROR, LOST, OUT_OF_MEMORY, RUN_ERROR, UNSCHEDULABLE, RunLost, budget, classify,
                           describe, retried)
from launch.tpu import SliceConfigError, SliceHostLost, SliceRunFailed, slice_error

OBJECT = "ab" * 28


def task_error(cause: BaseException) -> rx.RayTaskError:
    """What ray.get raises for a task that raised `cause` (as Ray builds it)."""
    return rx.RayTaskError("run_point", "Traceback (most recent call last):\n  ...", cause, proctitle="ray::run_point",
                           pid=1234, ip="127.0.0.1").as_instanceof_cause()


LOST_ERRORS = {
    "worker crashed": rx.WorkerCrashedError(),
    "node died": rx.NodeDiedError("node 10.0.0.2 was preempted"),
    "raylet died": rx.LocalRayletDiedError(),
    "system error": rx.RaySystemError("raylet killed"),
    "actor died": rx.ActorDiedError(),
    "actor unavailable": rx.ActorUnavailableError("connection lost", None),
    "object lost": rx.ObjectLostError(OBJECT, None, ""),
    "owner died": rx.OwnerDiedError(OBJECT, None, ""),
    "object fetch timed out": rx.ObjectFetchTimedOutError(OBJECT, None, ""),
    "reconstruction failed": rx.ObjectReconstructionFailedError(OBJECT),
    "task placement group removed": rx.TaskPlacementGroupRemoved(),
    "actor placement group removed": rx.ActorPlacementGroupRemoved(),
    "a launcher's lost run": RunLost("host 1 lost"),
    "a slice's lost host, raised by its task": task_error(SliceHostLost("process 1 was lost")),
    "a lost worker seen by a task that waited on it": task_error(rx.WorkerCrashedError()),
}
FAILURE_ERRORS = {
    "the run's exception": (task_error(ValueError("loss is nan")), RUN_ERROR),
    "the run's exception, wrapped twice": (task_error(task_error(KeyError("lr"))), RUN_ERROR),
    "a slice's failed run": (task_error(SliceRunFailed("process 0 raised ValueError")), RUN_ERROR),
    "Ray's memory monitor": (rx.OutOfMemoryError("Task was killed due to the node running low on memory."),
                             OUT_OF_MEMORY),
    "MemoryError in the run": (task_error(MemoryError()), OUT_OF_MEMORY),
    "unschedulable task": (rx.TaskUnschedulableError("no node has TPU-v4-16-head"), UNSCHEDULABLE),
    "unschedulable actor": (rx.ActorUnschedulableError("no node left"), UNSCHEDULABLE),
    "actor constructor raised": (rx.ActorDiedError(rx.RayTaskError("Init", "tb", ValueError("x"), "p", 1, "127.0.0.1")),
                                 RUN_ERROR),
    "runtime env setup": (rx.RuntimeEnvSetupError("pip failed"), RUN_ERROR),
    "cancelled": (rx.TaskCancelledError(), RUN_ERROR),
    "get timeout": (rx.GetTimeoutError("timed out"), RUN_ERROR),
    "an unpicklable cause": (rx.RayTaskError("f", "tb", rx.RayError("not serializable"), "p", 1, "127.0.0.1"),
                             RUN_ERROR),
    "anything else": (OSError("disk full"), RUN_ERROR),
    "the run's config error": (task_error(ConfigError("trainer.mesh: data x fsdp x tensor = 4 is not the device count 1")),
                               CONFIG_ERROR),
    "a slice's config error": (task_error(SliceConfigError("process 0 raised ConfigError: trainer.mesh")), CONFIG_ERROR),
    "a corrupt checkpoint": (task_error(CorruptStoreFile("runs/x/ckpt/4: corrupt checkpoint")), CONFIG_ERROR),
    "another store error": (task_error(StoreError("s3://b/runs/x/status.json: cannot read")), RUN_ERROR),
}


@pytest.mark.parametrize("name", LOST_ERRORS)
def test_lost_workers_nodes_and_hosts_go_on_the_preemption_budget(name):
    err = LOST_ERRORS[name]
    assert classify(err) == LOST and budget(err) == "preemption_retries"


@pytest.mark.parametrize("name", FAILURE_ERRORS)
def test_out_of_memory_unschedulable_and_the_runs_own_errors_go_on_the_failure_budget(name):
    err, kind = FAILURE_ERRORS[name]
    assert classify(err) == kind and budget(err) == "failure_retries"
    assert retried(err) == (kind != CONFIG_ERROR)  # the same config fails the same way: no retry


def test_the_reason_is_the_tasks_own_exception_on_one_line():
    assert describe(task_error(ValueError("loss is\nnan"))) == "ValueError: loss is nan"
    assert describe(task_error(task_error(KeyError("lr")))) == "KeyError: 'lr'"
    assert describe(rx.OutOfMemoryError("killed: node low on memory")).startswith("OutOfMemoryError: killed")


def test_a_slices_lost_host_outranks_its_peers_errors_and_out_of_memory_is_a_failure():
    host = {"process_id": 1, "worker_id": 1, "slice_name": "s0"}
    peer = {"process_id": 0, "worker_id": 0, "slice_name": "s0"}
    lost = slice_error([(peer, task_error(RuntimeError("collective failed"))), (host, rx.WorkerCrashedError())])
    assert isinstance(lost, SliceHostLost) and "process 1" in str(lost) and "1 other host(s)" in str(lost)
    oom = slice_error([(host, rx.OutOfMemoryError("Task was killed due to the node running low on memory."))])
    assert isinstance(oom, SliceRunFailed) and "OutOfMemoryError" in str(oom)
    raised = slice_error([(host, task_error(ValueError("bad config")))])
    assert isinstance(raised, SliceRunFailed) and "raised ValueError: bad config" in str(raised)
    assert not isinstance(raised, SliceConfigError)
    config = slice_error([(host, task_error(ConfigError("trainer.mesh.data=4")))])
    assert isinstance(config, SliceConfigError) and "raised ConfigError: trainer.mesh.data=4" in str(config)
    assert not retried(task_error(config))
    assert budget(task_error(lost)) == "preemption_retries" and budget(task_error(oom)) == "failure_retries"


def test_the_scheduler_spends_the_budget_each_error_belongs_to(tmp_path, monkeypatch):
    """Out of memory no longer resumes a run a thousand times: two failure retries, then FAILED."""
    import ray

    from launch.plan import build_plan
    from launch.scheduler import Scheduler, _Task

    overrides = ["family=hawk", "size=cpu-30k", f"store.root={tmp_path}", "launcher.failure_retries=2",
                 "launcher.preemption_retries=1000", "logger.wandb.mode=disabled"]
    plan = build_plan("errors", {}, [overrides])
    scheduler = Scheduler(plan)
    (run,) = plan.runs
    run_id = run.ref.run_id
    raised = []

    def get(ref):
        raise raised[-1]

    monkeypatch.setattr(ray, "get", get)

    def attempt(err):
        raised.append(err)
        scheduler.queue.clear()
        scheduler._collect(object(), _Task(run, None, time.time()))
        return bool(scheduler.queue)  # requeued for a retry

    assert all(attempt(rx.NodeDiedError("preempted")) for _ in range(5))
    assert (scheduler.preemptions[run_id], scheduler.failures[run_id]) == (5, 0)
    oom = rx.OutOfMemoryError("Task was killed due to the node running low on memory.")
    assert attempt(oom) and attempt(oom)
    assert not attempt(oom)
    outcome = scheduler.outcomes[run_id]
    assert outcome.status == "FAILED" and outcome.reason.startswith("OutOfMemoryError: Task was killed")
    assert (outcome.preemptions, outcome.failures) == (5, 3)
    # A config error the run raised (its mesh on a worker's devices, say) fails at once.
    scheduler.failures.clear()
    assert not attempt(task_error(ConfigError("trainer.mesh: data x fsdp x tensor = 4 is not the device count 1")))
    outcome = scheduler.outcomes[run_id]
    assert outcome.status == "FAILED" and outcome.reason.startswith("ConfigError: trainer.mesh") and outcome.failures == 1
