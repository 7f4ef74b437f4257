"""Rotary position embedding on the first `rope_dims` dimensions of each head (the reference
rotates the first half; the rest pass through). Pairs are (i, i + rope_dims/2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def apply_rope(x: jax.Array, positions: jax.Array, rope_dims: int, base: float = 10_000.0) -> jax.Array:
    """x: [B, T, ..., head_dim], positions: [B, T] -> same shape as x."""
    if rope_dims == 0:
        return x
    half = rope_dims // 2
    x_rot, x_pass = x[..., :rope_dims], x[..., rope_dims:]
    inv_freq = 1.0 / base ** (jnp.arange(half, dtype=jnp.float32) * 2.0 / rope_dims)
    pos = positions.astype(jnp.float32).reshape(positions.shape + (1,) * (x.ndim - 3))
    angle = pos[..., None] * inv_freq  # [B, T, (1,)..., half]
    sin, cos = jnp.sin(angle).astype(x.dtype), jnp.cos(angle).astype(x.dtype)
    first, second = x_rot[..., :half], x_rot[..., half:]
    return jnp.concatenate([first * cos - second * sin, second * cos + first * sin, x_pass], axis=-1)
