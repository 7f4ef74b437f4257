"""Shared test set-up: JAX on CPU with the persistent compilation cache (minimum compile time 0,
or the many tiny programs here would never be cached)."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
# Ray: every node of a test cluster on loopback (Ray otherwise advertises the machine's address).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".cache" / "jax-tests"
# Subprocesses and Ray workers import the tests' own helpers (faults.py: fault injection).
_TESTS = str(pathlib.Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_TESTS, os.environ.get("PYTHONPATH")) if p)
# The same cache for every process the tests start (griffin-train, sweep workers, mesh checks):
# most compile the same tiny programs, and a tiny run spends two thirds of its time compiling.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_configure(config):
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if os.environ["JAX_PLATFORMS"] != "cpu":
        # `make device-check` on a TPU or GPU: fp32 matmuls in full precision (TPUs default to
        # bf16 passes, Ampere GPUs to TF32), so the equality tolerances mean what they do on CPU.
        jax.config.update("jax_default_matmul_precision", "highest")


SLOW_FIRST = (
    "test_launch.py", "test_store_buckets.py", "test_launch_tpu.py", "test_sharding_meshes.py",
    "test_resume_and_mesh.py", "test_paper_tasks.py", "test_bench_device.py", "test_data_prepare.py",
    "test_paper_speed.py", "test_ray_jobs.py", "test_bench_train.py", "test_train.py",
    "test_data_multihost.py", "test_scan_export.py", "test_compile_check.py", "test_numerics_golden.py",
    "test_bad_input.py",
)
"""Modules that take a minute or more. pytest-xdist (`--dist loadfile`) hands whole modules to
its two workers in collection order, so these go first: a long module collected last would
leave one core idle at the end (the suite's wall time was 20.8 min with 75% of both cores busy)."""


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order inside a module kept
