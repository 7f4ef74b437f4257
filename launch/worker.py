"""What a Ray worker runs for one grid point (JAX is imported here, never in the driver)."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from typing import Any, Mapping


def xla_env(cpus: int) -> dict[str, str]:
    """XLA's CPU thread count matched to the cores a run is given, so runs never fight."""
    threads = max(1, int(cpus))
    flags = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
    return {"XLA_FLAGS": flags, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}


def malloc_env(mode: str, gpus: float = 0.0) -> dict[str, str]:
    """glibc's settings for a worker process (read when it starts): `no_trim` for CPU runs
    (experiments.benchmarks.NO_TRIM_ENV), nothing for `default` or runs with GPUs (their large
    buffers live on the device)."""
    from experiments.benchmarks import NO_TRIM_ENV

    return dict(NO_TRIM_ENV) if mode == "no_trim" and not gpus else {}


def compile_cache_env(cache_dir: str) -> dict[str, str]:
    """The persistent JAX compilation cache shared by a sweep's runs. Minimum compile time and
    entry size 0: the tiny CPU programs would otherwise never be cached."""
    return {"JAX_COMPILATION_CACHE_DIR": cache_dir, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def pin_process(cores: list[int]) -> None:
    """Pin every thread of this process to `cores`. Affinity is per thread on Linux, and a
    reused worker already runs XLA's thread pool from its previous run: pinning only the
    calling thread would leave those threads on the previous run's cores."""
    if not hasattr(os, "sched_setaffinity"):
        return
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # no procfs: the calling thread (and threads it starts later) only
        threads = [0]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:  # the thread ended meanwhile
            pass


@contextlib.contextmanager
def output_to(log_path: str | None):
    """Send this process's stdout and stderr (XLA's C++ logs included) to the run's log, and
    back afterwards, so a reused worker's next run logs to its own file."""
    if not log_path:
        yield
        return
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for target, old in zip((1, 2), saved):
            os.dup2(old, target)
            os.close(old)


def run_point(cfg: Mapping[str, Any], sweep: str, cores: list[int] | None, log_path: str | None) -> dict[str, Any]:
    """Train one run (or find it done / held) and return a small report.

    cpu_s is this task's CPU time; process_cpu_s the worker process's in all (a reused worker
    has run earlier tasks), so a sweep's CPU use is the sum over processes of their last value."""
    if cores:
        pin_process(cores)
    run_setup_hook(cfg["launcher"].get("worker_setup_hook"))
    before = _cpu_seconds()
    with output_to(log_path):
        from experiments.runner import execute, resolve, store_for

        try:
            report = execute(resolve(cfg), store_for(cfg), progress=False, sweep=sweep)
        finally:
            _stop_wandb_service()
    result = report.result
    after = _cpu_seconds()
    return {"run_id": report.run_id, "status": report.status, "reason": report.reason,
            "heldout_loss_nats": result.heldout_loss_nats if result else None,
            "wall_time_s": result.wall_time_s if result else None,
            "loop_s": result.tokens / result.tokens_per_s if result and result.tokens_per_s else None,
            "pid": os.getpid(), "cpu_s": after - before, "process_cpu_s": after,
            "process_s": time.time() - _process_start(), "rss_mb": _resident_mb()}


_HOOKS_RUN: set[str] = set()


def run_setup_hook(hook: str | None) -> None:
    """Call `launcher.worker_setup_hook` ('package.module.function') once in this worker
    process, before its first run: set-up a worker needs that the driver cannot do for it
    (logging handlers, a profiler; the tests inject faults this way)."""
    if not hook or hook in _HOOKS_RUN:
        return
    import importlib

    module, _, name = hook.rpartition(".")
    if not module:
        raise ValueError(f"launcher.worker_setup_hook={hook!r} must be 'module.function'")
    getattr(importlib.import_module(module), name)()
    _HOOKS_RUN.add(hook)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stop_wandb_service() -> None:
    """Stop W&B's background service after each run: a fresh worker process ends after its
    task (a service torn down at exit only logs a connection error), and a reused one must not
    carry one run's service into the next."""
    import sys

    if "wandb" in sys.modules:
        try:
            sys.modules["wandb"].teardown()
        except Exception:  # noqa: BLE001 - logging must never fail a run
            pass


def _resident_mb() -> float | None:
    """This process's resident memory after the run (a reused worker must not grow run by run)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except Exception:  # noqa: BLE001 - only a benchmark figure
        return None


def _process_start() -> float:
    """Wall-clock time this worker process started (Linux /proc; now elsewhere)."""
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - only a benchmark figure
        return time.time()
