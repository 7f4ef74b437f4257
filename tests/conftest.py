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


def pytest_configure(config):
    import jax

    jax.config.update("jax_compilation_cache_dir", str(_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
