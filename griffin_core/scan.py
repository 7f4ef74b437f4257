"""Linear recurrences h_t = a_t * h_{t-1} + b_t, the core of the RG-LRU.

The scan is memory-bound (per element: read a, read b, write h), so the layout matters more
than the arithmetic. Implementations, selected by `ModelConfig.scan_impl`:

- 'sequential': `lax.scan` over time on time-major [T, B, D] arrays. Each step touches one
  contiguous [B, D] slab. The unroll is tuned per device (`default_unroll`): the reference's
  128 suits TPU; on CPU a small unroll is several times faster (see docs/benchmarks.md).
- 'associative': `lax.associative_scan` with the operator (a1, b1) . (a2, b2) =
  (a1 a2, a2 b1 + b2); O(T log T) work but parallel in T.
- 'chunked': sequential within chunks of `CHUNK` steps (all chunks at once), associative
  across the chunks' summaries, then one correction pass: pure JAX, parallel in T / CHUNK.
- 'pallas': the Pallas kernels of `scan_pallas` (Mosaic on TPU, Triton on CUDA GPUs, interpret
  mode on CPU), one read of a and b and one write of h per element.
- 'auto': chosen per platform when the program is lowered (a primitive with one lowering per
  platform): the Pallas kernel on TPU and CUDA; on CPU the measured-best variant, a sequential
  loop writing h in place over x's buffer (`scan_pallas._sequential`: 1.26x the streaming
  triad where lax.scan reaches 0.62x, docs/benchmarks.md). One exported program carries each
  platform's choice.

All variants compute in fp32 whatever the inputs' dtype: the state accumulates over thousands of
steps and bf16 would lose the slow-decaying channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from griffin_core.scan_pallas import PLATFORMS

SCAN_IMPLS = ("sequential", "associative", "chunked", "pallas")
CHUNK = 64
"""Steps per chunk of the 'chunked' scan."""

# Sequential-scan unroll per backend. TPU: the reference code's setting. GPU defaults to the
# associative scan. CPU: 1, the fastest in `griffin-bench scan` at [T, B, D] = [2048, 8, 1024]
# fp32 (docs/benchmarks.md). XLA:CPU fuses an unrolled body's k steps into one loop fusion
# that recomputes the chain for each of its k outputs (about k/2 multiply-adds per element),
# so speed falls with k: unroll 2 ran at ~0.8x of unroll 1, 8 at ~0.25x, 128 at ~0.02x.
_DEFAULT_UNROLL = {"tpu": 128, "cpu": 1, "gpu": 8, "cuda": 8, "rocm": 8}


def default_unroll(backend: str | None = None) -> int:
    return _DEFAULT_UNROLL.get(backend or jax.default_backend(), 1)


def current_platform() -> str:
    """The lowering platform of the default device: 'cpu', 'tpu', 'cuda' or 'rocm'."""
    backend = jax.default_backend()
    if backend != "gpu":
        return backend
    version = jax.devices()[0].client.platform_version.lower()
    return "rocm" if "rocm" in version or "hip" in version else "cuda"


KERNEL_IMPLS = ("pallas", "pallas_fused")
"""The Pallas kernels: the bare scan, and the RG-LRU with its gates inside (`rglru_fused`)."""


def check_platform(impl: str, platform: str) -> None:
    """ValueError naming the platforms when `impl` cannot run on `platform`."""
    known = SCAN_IMPLS + ("pallas_fused", "auto")
    if impl not in known:
        raise ValueError(f"model.scan_impl={impl!r} is invalid: one of {list(known)}")
    if impl in KERNEL_IMPLS and platform not in PLATFORMS:
        raise ValueError(f"model.scan_impl={impl!r} has no kernel on platform {platform!r}: "
                         f"supported {list(PLATFORMS)} (cpu in interpret mode); use 'auto' or 'chunked'")


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


def chunked_scan(a: jax.Array, b: jax.Array, h0: jax.Array | None = None, chunk: int = CHUNK
                 ) -> tuple[jax.Array, jax.Array]:
    """Same recurrence along the leading (time) axis, in chunks of `chunk` steps.

    1. Within every chunk at once (a `lax.scan` over the chunk's steps on [n, ...] slabs):
       the local state from zero, and the running product of a.
    2. Across chunks: the state entering each chunk, by an associative scan of the chunks'
       (total decay, local last state) pairs, h0 folded into the first.
    3. h = local state + running product x the entering state.
    """
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    t, rest = a.shape[0], a.shape[1:]
    h0 = jnp.zeros(rest, jnp.float32) if h0 is None else h0.astype(jnp.float32)
    pad = -t % chunk
    if pad:  # zeros at the end: met after every real step
        a, b = (jnp.pad(v, [(0, pad)] + [(0, 0)] * len(rest)) for v in (a, b))
    n = a.shape[0] // chunk
    a_c = jnp.swapaxes(a.reshape((n, chunk) + rest), 0, 1)  # [chunk, n, ...]
    b_c = jnp.swapaxes(b.reshape((n, chunk) + rest), 0, 1)

    def step(carry, ab):
        h, decay = carry
        a_t, b_t = ab
        h, decay = a_t * h + b_t, a_t * decay
        return (h, decay), (h, decay)

    zeros = jnp.zeros((n,) + rest, jnp.float32)
    (last, total), (local, running) = jax.lax.scan(step, (zeros, zeros + 1.0), (a_c, b_c))
    # State entering chunk k: h_in[0] = h0, h_in[k] = total[k-1] h_in[k-1] + last[k-1].
    entering, _ = associative_scan(total[:-1], last[:-1], h0, axis=0) if n > 1 else (zeros[:0], None)
    entering = jnp.concatenate([h0[None], entering])  # [n, ...]
    h = local + running * entering[None]
    h = jnp.swapaxes(h, 0, 1).reshape((n * chunk,) + rest)[:t]
    return h, h[-1]


def _time_major(impl: str, unroll: int, a, b, h0):
    if impl == "associative":
        return associative_scan(a, b, h0, axis=0)
    if impl == "chunked":
        return chunked_scan(a, b, h0)
    if impl == "sequential":
        return sequential_scan_time_major(a, b, h0, unroll or default_unroll())
    from griffin_core.scan_pallas import pallas_scan

    h0 = jnp.zeros(a.shape[1:], jnp.float32) if h0 is None else h0
    # pallas: the kernel everywhere (interpret mode on CPU); auto: the kernel on TPU and CUDA,
    # the in-place sequential loop on CPU. Chosen per platform at lowering.
    return pallas_scan(a, b, h0, "interpret" if impl == "pallas" else "sequential")


def linear_scan(
    a: jax.Array, b: jax.Array, h0: jax.Array | None = None, impl: str = "auto", unroll: int = 0,
    time_major: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """h_t = a_t h_{t-1} + b_t by `impl`. Arrays are [T, B, D] if time_major else [B, T, D].
    Returns h (fp32, same layout) and the last state [B, D] fp32."""
    if impl not in SCAN_IMPLS + ("auto",):
        raise ValueError(f"scan_impl={impl!r}: expected one of {SCAN_IMPLS} or 'auto'")
    if not time_major:
        a, b = jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1)
    h, h_last = _time_major(impl, unroll, a, b, h0)
    return (h if time_major else jnp.swapaxes(h, 0, 1)), h_last
