"""Linear recurrences h_t = a_t * h_{t-1} + b_t, the core of the RG-LRU.

The scan is memory-bound (per element: read a, read b, write h), so the layout matters more
than the arithmetic. Implementations, selected by `ModelConfig.scan_impl`:

- 'sequential': `lax.scan` over time on time-major [T, B, D] arrays. Each step touches one
  contiguous [B, D] slab. The unroll is tuned per device (`default_unroll`): the reference's
  128 suits TPU; on CPU a small unroll is several times faster (see docs/benchmarks.md).
- 'associative': `lax.associative_scan` with the operator (a1, b1) . (a2, b2) =
  (a1 a2, a2 b1 + b2); O(T log T) work but parallel in T, for GPUs.
- 'auto': the best measured choice for the current backend.

All variants compute in fp32 whatever the inputs' dtype: the state accumulates over thousands of
steps and bf16 would lose the slow-decaying channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SCAN_IMPLS = ("sequential", "associative")

# Sequential-scan unroll per backend. TPU: the reference code's setting. GPU defaults to the
# associative scan. CPU: 1, the fastest in `griffin-bench scan` at [T, B, D] = [2048, 8, 1024]
# fp32 (docs/benchmarks.md). XLA:CPU fuses an unrolled body's k steps into one loop fusion
# that recomputes the chain for each of its k outputs (about k/2 multiply-adds per element),
# so speed falls with k: unroll 2 ran at ~0.8x of unroll 1, 8 at ~0.25x, 128 at ~0.02x.
_DEFAULT_UNROLL = {"tpu": 128, "cpu": 1, "gpu": 8}


def default_impl(backend: str | None = None) -> str:
    backend = backend or jax.default_backend()
    return "associative" if backend in ("gpu", "cuda", "rocm") else "sequential"


def default_unroll(backend: str | None = None) -> int:
    return _DEFAULT_UNROLL.get(backend or jax.default_backend(), 1)


def resolve(impl: str, unroll: int) -> tuple[str, int]:
    """Turn 'auto' / 0 into this device's concrete (impl, unroll)."""
    impl = default_impl() if impl == "auto" else impl
    if impl not in SCAN_IMPLS:
        raise ValueError(f"scan_impl={impl!r}: expected one of {SCAN_IMPLS} or 'auto'")
    return impl, (unroll or default_unroll())


def sequential_scan_time_major(
    a: jax.Array, b: jax.Array, h0: jax.Array | None = None, unroll: int = 1
) -> tuple[jax.Array, jax.Array]:
    """h_t = a_t h_{t-1} + b_t over the leading (time) axis.

    Args:
      a, b: [T, ...] (cast to fp32).
      h0: [...] initial state or None (zeros).
      unroll: `lax.scan` unroll; True unrolls fully.
    Returns:
      h: [T, ...] fp32, and the last state [...] fp32.
    """
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    h0 = jnp.zeros(a.shape[1:], jnp.float32) if h0 is None else h0.astype(jnp.float32)

    def step(h, ab):
        a_t, b_t = ab
        h = a_t * h + b_t
        return h, h

    h_last, h = jax.lax.scan(step, h0, (a, b), unroll=unroll)
    return h, h_last


def associative_scan(
    a: jax.Array, b: jax.Array, h0: jax.Array | None = None, axis: int = 0
) -> tuple[jax.Array, jax.Array]:
    """Same recurrence as `sequential_scan_time_major`, along `axis`, by a parallel prefix scan."""
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    if h0 is not None:
        # Fold the initial state into the first input: h_0' = a_0 h0 + b_0.
        first = jax.lax.index_in_dim(a, 0, axis) * jnp.expand_dims(h0.astype(jnp.float32), axis)
        b = b + jnp.concatenate([first, jnp.zeros_like(jax.lax.slice_in_dim(b, 1, None, axis=axis))], axis)

    def combine(left, right):
        a_l, b_l = left
        a_r, b_r = right
        return a_l * a_r, a_r * b_l + b_r

    _, h = jax.lax.associative_scan(combine, (a, b), axis=axis)
    return h, jax.lax.index_in_dim(h, -1, axis, keepdims=False)


def linear_scan(
    a: jax.Array, b: jax.Array, h0: jax.Array | None = None, impl: str = "auto", unroll: int = 0,
    time_major: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Dispatch to a scan implementation. Arrays are [T, B, D] if time_major else [B, T, D]."""
    impl, unroll = resolve(impl, unroll)
    if impl == "associative":
        return associative_scan(a, b, h0, axis=0 if time_major else 1)
    if not time_major:
        a, b = jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1)
    h, h_last = sequential_scan_time_major(a, b, h0, unroll)
    return (h if time_major else jnp.swapaxes(h, 0, 1)), h_last
