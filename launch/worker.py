"""What a Ray worker runs for one grid point (JAX is imported here, never in the driver)."""

from __future__ import annotations

import os
import resource
import time
from typing import Any, Mapping


def xla_env(cpus: int) -> dict[str, str]:
    """XLA's CPU thread count matched to the cores a run is given, so runs never fight."""
    threads = max(1, int(cpus))
    flags = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
    return {"XLA_FLAGS": flags, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}


def compile_cache_env(cache_dir: str) -> dict[str, str]:
    """The persistent JAX compilation cache shared by a sweep's runs. Minimum compile time and
    entry size 0: the tiny CPU programs would otherwise never be cached."""
    return {"JAX_COMPILATION_CACHE_DIR": cache_dir, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def redirect_output(log_path: str | None) -> None:
    """Send this process's stdout and stderr (XLA's C++ logs included) to the run's log."""
    if not log_path:
        return
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_point(cfg: Mapping[str, Any], sweep: str, cores: list[int] | None, log_path: str | None) -> dict[str, Any]:
    """Train one run (or find it done / held) and return a small report."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    redirect_output(log_path)
    from experiments.runner import execute, resolve, store_for

    try:
        report = execute(resolve(cfg), store_for(cfg), progress=False, sweep=sweep)
    finally:
        _stop_wandb_service()
    result = report.result or {}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"run_id": report.run_id, "status": report.status, "reason": report.reason,
            "heldout_loss_nats": result.get("heldout_loss_nats"), "wall_time_s": result.get("wall_time_s"),
            "pid": os.getpid(), "cpu_s": usage.ru_utime + usage.ru_stime,
            "process_s": time.time() - _process_start()}


def _stop_wandb_service() -> None:
    """Stop W&B's background service now: Ray ends this worker process after the task
    (max_calls=1), and a service torn down at exit only logs a connection error."""
    import sys

    if "wandb" in sys.modules:
        try:
            sys.modules["wandb"].teardown()
        except Exception:  # noqa: BLE001 - logging must never fail a run
            pass


def _process_start() -> float:
    """Wall-clock time this worker process started (Linux /proc; now elsewhere)."""
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - only a benchmark figure
        return time.time()
