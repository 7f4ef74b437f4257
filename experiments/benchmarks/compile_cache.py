"""JAX's persistent compilation cache for the processes that time compiled programs.

Its own module because two commands share it: `griffin-bench train` (whose malloc children
compile the same steps as their parent) and `griffin-measure` (experiments/measure.py, the
paper's speed measurements). Both turn it on before compiling anything.
"""

from __future__ import annotations

import jax

from experiments.benchmarks import limits


def use_compile_cache(choice: str | None) -> str | None:
    """Turn on JAX's persistent compilation cache (DESIGN.md: compile once), so that child
    processes and repeated runs load compiled programs instead of compiling them again.

    `choice`: a folder; None for the folder JAX is already configured with, else jax-compile/
    beside the limits cache; 'none' to leave the cache off. Every program is cached, however
    small or quick to compile. Returns the folder in use, or None when off."""
    if choice == "none":
        return None
    folder = choice or jax.config.jax_compilation_cache_dir or str(limits.cache_path().parent / "jax-compile")
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(folder)
