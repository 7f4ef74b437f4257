"""Which retry budget a failed run's error goes on: one classifier, by exception type, for the
CPU scheduler (launch/scheduler.py) and the TPU slice runner (launch/tpu.py).

- `LOST` (preemption budget, `launcher.preemption_retries`): the run's worker process, its
  raylet or its node went away, or the node was preempted (`WorkerCrashedError`,
  `NodeDiedError`, `LocalRayletDiedError`, `RaySystemError`, a `RayActorError` other than a
  failed constructor, an `ObjectLostError` and its kinds, a removed placement group), and
  `RunLost` raised by a launcher that runs one run as several tasks (a slice's lost host).
- `OUT_OF_MEMORY` (failure budget): Ray's memory monitor killed the run's worker
  (`OutOfMemoryError`), or the run raised `MemoryError`: a run that does not fit will not fit
  on the next try either, so it must not be resumed a thousand times.
- `UNSCHEDULABLE` (failure budget): no node can ever take the task
  (`TaskUnschedulableError`, `ActorUnschedulableError`).
- `CONFIG_ERROR` (failure budget, never retried): the run raised `ConfigError` (e.g. a mesh
  its devices cannot hold) or `CorruptStoreFile` (its latest checkpoint does not read), or a
  launcher that runs one run as several tasks raised `RunConfigError`: the same config and
  files fail the same way on every try. The plan checks what it
  can before anything starts (launch/plan.py); this catches what only the worker can see.
- `RUN_ERROR` (failure budget): every exception the run raises itself, and any other error.

A task's own exception reaches the driver as a `RayTaskError` whose `cause` is the original
exception: the cause is classified (a launcher's task may raise `RunLost`, or let a Ray
system error through). The driver never imports JAX; nor does this module.
"""

from __future__ import annotations

from griffin_core.config import ConfigError  # plain Python, no JAX
from run_store import one_line
from run_store.errors import CorruptStoreFile

LOST = "lost"
OUT_OF_MEMORY = "out_of_memory"
UNSCHEDULABLE = "unschedulable"
RUN_ERROR = "run_error"
CONFIG_ERROR = "config_error"

BUDGET = {LOST: "preemption_retries", OUT_OF_MEMORY: "failure_retries", UNSCHEDULABLE: "failure_retries",
          RUN_ERROR: "failure_retries", CONFIG_ERROR: "failure_retries"}
"""The `launcher.*` retry budget each kind of error is counted against."""
NOT_RETRIED = frozenset({CONFIG_ERROR})
"""Kinds counted on their budget but never retried: a retry would fail the same way."""


class RunLost(RuntimeError):
    """A run's process or machine was lost (raised by launchers that run one run as several
    tasks, e.g. when a host of a TPU slice dies): retried on the preemption budget."""


class RunConfigError(RuntimeError):
    """A run's host raised `ConfigError` (raised by launchers that run one run as several
    tasks): not retried."""


def _lost_types() -> tuple[type, ...]:
    from ray import exceptions as rx

    return (rx.WorkerCrashedError, rx.NodeDiedError, rx.LocalRayletDiedError, rx.RaySystemError,
            rx.RayActorError, rx.ObjectLostError, rx.TaskPlacementGroupRemoved, rx.ActorPlacementGroupRemoved,
            RunLost)


def own_error(err: BaseException) -> BaseException:
    """The exception a task raised itself: `err` unwrapped from Ray's `RayTaskError`s (a
    task that waited on a failed task is wrapped twice)."""
    from ray import exceptions as rx

    for _ in range(8):
        cause = getattr(err, "cause", None) if isinstance(err, rx.RayTaskError) else None
        if cause is None or cause is err:
            break
        err = cause
    return err


def classify(err: BaseException) -> str:
    """LOST, OUT_OF_MEMORY, UNSCHEDULABLE, CONFIG_ERROR or RUN_ERROR (see the module docstring)."""
    from ray import exceptions as rx

    err = own_error(err)
    if isinstance(err, rx.RayTaskError):  # a cause Ray could not keep: the run's own error
        return RUN_ERROR
    if isinstance(err, (ConfigError, RunConfigError, CorruptStoreFile)):
        return CONFIG_ERROR
    if isinstance(err, (rx.OutOfMemoryError, MemoryError)):
        return OUT_OF_MEMORY
    if isinstance(err, (rx.TaskUnschedulableError, rx.ActorUnschedulableError)):
        return UNSCHEDULABLE
    if isinstance(err, rx.RayActorError) and err.actor_init_failed:
        return RUN_ERROR  # the actor's constructor raised: the run's own error
    if isinstance(err, _lost_types()):
        return LOST
    return RUN_ERROR


def budget(err: BaseException) -> str:
    """The `launcher.*` key of the retry budget `err` is counted against."""
    return BUDGET[classify(err)]


def retried(err: BaseException) -> bool:
    """Whether a run that failed with `err` may be retried (within its budget)."""
    return classify(err) not in NOT_RETRIED


def describe(err: BaseException, limit: int = 300) -> str:
    """One line for the summary: the task's own exception (not Ray's wrapper), with its type."""
    return one_line(own_error(err), with_type=True, limit=limit)
