"""JAX's persistent compilation cache for the benchmarks and griffin-measure
(experiments/benchmarks/compile_cache.py): off on request, a given folder, or the one JAX
already has; every program cached however small. The settings are restored afterwards."""

from __future__ import annotations

import jax
import pytest

from experiments.benchmarks.compile_cache import use_compile_cache

KEYS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture
def restore_jax_config():
    saved = {k: getattr(jax.config, k) for k in KEYS}
    yield
    for k, v in saved.items():
        jax.config.update(k, v)


def test_none_leaves_the_cache_alone(restore_jax_config):
    before = jax.config.jax_compilation_cache_dir
    assert use_compile_cache("none") is None
    assert jax.config.jax_compilation_cache_dir == before


def test_a_folder_is_used_and_every_program_cached(restore_jax_config, tmp_path):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    assert use_compile_cache(str(tmp_path)) == str(tmp_path)
    assert jax.config.jax_compilation_cache_dir == str(tmp_path)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == 0


def test_default_is_the_configured_folder_else_beside_the_limits_cache(restore_jax_config, tmp_path, monkeypatch):
    from experiments.benchmarks import limits

    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "configured"))
    assert use_compile_cache(None) == str(tmp_path / "configured")
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path / "limits"))
    assert use_compile_cache(None) == str(tmp_path / "limits" / "jax-compile")
