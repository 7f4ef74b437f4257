"""The SSD algorithm of Mamba-2 (Dao & Gu, arXiv 2405.21060), with document resets.

Per head (scalar decay A < 0, state [P, N]):

  h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T        x_t: [P], B_t, C_t: [N], dt_t > 0
  y_t = h_t C_t                                     (the D skip is added by the caller)

and at a document start (position 0) the decay is 0: no state crosses a document.

`ssd_chunked` computes it in O(T) memory: the sequence is cut into chunks of Q steps; inside a
chunk the outputs are one masked [Q, Q] "attention" product (quadratic in Q, matmuls), and the
states at chunk ends follow a linear recurrence over the T / Q chunks. Decays are handled in
log space: the decay from step j to step i of one chunk is exp(cum_i - cum_j), cum the running
sum of dt A, so no product of small numbers underflows. A reset inside a chunk splits it into
segments: (i, j) pairs of different segments are masked, and the state entering the chunk
reaches only the steps before the chunk's first reset. Everything from dt on is fp32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _heads_of_groups(v: jax.Array, heads: int) -> jax.Array:
    """[..., G, N] -> [..., H, N]: each head reads its group's B or C (H / G heads per group)."""
    return jnp.repeat(v, heads // v.shape[-2], axis=-2)


def ssd_chunked(x: jax.Array, dt: jax.Array, a: jax.Array, b: jax.Array, c: jax.Array, reset: jax.Array,
                chunk: int, h0: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """x: [B, T, H, P], dt: [B, T, H] (after softplus), a: [H] (negative), b, c: [B, T, G, N],
    reset: [B, T] bool (document starts), h0: [B, H, P, N] or None (zeros).

    Returns y [B, T, H, P] fp32 (without the D skip) and the state after the last step
    [B, H, P, N] fp32. `chunk` need not divide T (the tail is padded with dt = 0, which leaves
    the state unchanged)."""
    batch, t, heads, p = x.shape
    n = b.shape[-1]
    q = max(1, min(chunk, t))
    pad = -t % q
    if pad:
        x, dt, b, c = (jnp.pad(v, [(0, 0), (0, pad)] + [(0, 0)] * (v.ndim - 2)) for v in (x, dt, b, c))
        reset = jnp.pad(reset, [(0, 0), (0, pad)])
    nc = (t + pad) // q
    split = lambda v: v.reshape((batch, nc, q) + v.shape[2:])  # noqa: E731
    x, dt, reset = split(x), split(dt.astype(jnp.float32)), split(reset)
    b, c = split(_heads_of_groups(b, heads)), split(_heads_of_groups(c, heads))  # [B, nc, Q, H, N]

    cum = jnp.cumsum(dt * a.astype(jnp.float32), axis=2)  # [B, nc, Q, H]: log decay from chunk start
    segment = jnp.cumsum(reset.astype(jnp.int32), axis=2)  # [B, nc, Q]: 0 until the chunk's first reset
    xdt = x.astype(jnp.float32) * dt[..., None]  # [B, nc, Q, H, P]

    # Inside each chunk: y_i += sum_{j <= i, same segment} exp(cum_i - cum_j) (C_i . B_j) dt_j x_j.
    causal = jnp.tril(jnp.ones((q, q), bool))
    same = (segment[..., :, None] == segment[..., None, :]) & causal  # [B, nc, Q(i), Q(j)]
    log_decay = cum.transpose(0, 1, 3, 2)[..., :, None] - cum.transpose(0, 1, 3, 2)[..., None, :]  # [B, nc, H, i, j]
    decay = jnp.exp(jnp.where(same[:, :, None], log_decay, -jnp.inf))
    scores = jnp.einsum("bcihn,bcjhn->bchij", c, b, preferred_element_type=jnp.float32)
    y = jnp.einsum("bchij,bcjhp->bcihp", scores * decay, xdt)

    # Each chunk's own contribution to the state at its end, and the decay across the chunk.
    last = segment[..., -1:]  # [B, nc, 1]
    to_end = jnp.where((segment == last)[..., None], jnp.exp(cum[:, :, -1:] - cum), 0.0)  # [B, nc, Q, H]
    local = jnp.einsum("bcjh,bcjhp,bcjhn->bchpn", to_end, xdt, b.astype(jnp.float32))
    across = jnp.where(last == 0, jnp.exp(cum[:, :, -1]), 0.0)  # [B, nc, H]

    def carry_state(state, inputs):  # the state entering chunk c -> the state entering c + 1
        across_c, local_c = inputs
        return across_c[..., None, None] * state + local_c, state

    init = jnp.zeros((batch, heads, p, n), jnp.float32) if h0 is None else h0.astype(jnp.float32)
    final, entering = jax.lax.scan(carry_state, init, (jnp.moveaxis(across, 1, 0), jnp.moveaxis(local, 1, 0)))
    entering = jnp.moveaxis(entering, 0, 1)  # [B, nc, H, P, N]

    # The entering state reaches step i decayed by exp(cum_i), if no reset came before it.
    from_start = jnp.where((segment == 0)[..., None], jnp.exp(cum), 0.0)  # [B, nc, Q, H]
    y = y + jnp.einsum("bcih,bchpn,bcihn->bcihp", from_start, entering, c.astype(jnp.float32))
    return y.reshape(batch, nc * q, heads, p)[:, :t], final


def ssd_step(x: jax.Array, dt: jax.Array, a: jax.Array, b: jax.Array, c: jax.Array, reset: jax.Array,
             h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One step of the recurrence. x: [B, H, P], dt: [B, H], a: [H], b, c: [B, G, N],
    reset: [B] bool, h: [B, H, P, N] fp32 -> (y [B, H, P] fp32 without the D skip, h)."""
    heads = x.shape[1]
    dt = dt.astype(jnp.float32)
    decay = jnp.where(reset[:, None], 0.0, jnp.exp(dt * a.astype(jnp.float32)))
    b, c = (_heads_of_groups(v, heads).astype(jnp.float32) for v in (b, c))
    h = decay[..., None, None] * h + jnp.einsum("bhp,bhn->bhpn", x.astype(jnp.float32) * dt[..., None], b)
    return jnp.einsum("bhpn,bhn->bhp", h, c), h


__all__ = ["ssd_chunked", "ssd_step"]
