"""Causal depthwise Conv1D over time, with document masking and a decoding cache.

y_t = b + sum_{s=0}^{W-1} w[W-1-s] * x_{t-s} * [pos_t >= s]

`w[W-1]` multiplies the current token (the reference's convention). The factor
[pos_t >= s] drops inputs from before the current document's start (pos_t is the position of
token t within its document), so packed documents never mix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init


class Conv1D(nn.Module):
    width: int
    """Channels (D_RNN)."""
    temporal_width: int = 4
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    channel_axis: str = "rnn"
    """Logical axis of the channels (griffin_core.parallelism)."""

    def setup(self) -> None:
        self.w = self.param("w", init.named(init.conv1d_normal(self.temporal_width), "conv", self.channel_axis),
                            (self.temporal_width, self.width), self.param_dtype)
        self.b = self.param("b", init.zeros(self.channel_axis), (self.width,), self.param_dtype)

    def __call__(self, x: jax.Array, segment_pos: jax.Array) -> jax.Array:
        """x: [B, T, C], segment_pos: [B, T] -> [B, T, C]."""
        w = self.w.astype(self.dtype)
        y = jnp.zeros_like(x, dtype=self.dtype) + self.b.astype(self.dtype)
        t = x.shape[1]
        for shift in range(min(self.temporal_width, t)):
            shifted = jnp.pad(x[:, : t - shift], ((0, 0), (shift, 0), (0, 0)))
            keep = (segment_pos >= shift)[..., None].astype(self.dtype)
            y = y + shifted.astype(self.dtype) * keep * w[self.temporal_width - 1 - shift]
        return y

    def prefill_cache(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
        """The last W-1 inputs before each sequence's length (zeros before position 0).

        x: [B, T, C] (a prompt starting at position 0), lengths: [B] -> [B, W-1, C].
        """
        k = self.temporal_width - 1
        padded = jnp.pad(x, ((0, 0), (k, 0), (0, 0)))  # padded index j = original j - k
        idx = lengths[:, None] + jnp.arange(k)[None, :]  # original positions len-k .. len-1
        return jnp.take_along_axis(padded, idx[..., None], axis=1).astype(self.dtype)

    def step(self, x: jax.Array, pos: jax.Array, cache: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One decoding step. x: [B, 1, C], pos: [B], cache: [B, W-1, C] -> (y [B, 1, C], cache)."""
        window = jnp.concatenate([cache.astype(self.dtype), x.astype(self.dtype)], axis=1)  # [B, W, C]
        lag = self.temporal_width - 1 - jnp.arange(self.temporal_width)  # lag of each window slot
        keep = (pos[:, None] >= lag[None, :])[..., None].astype(self.dtype)
        y = jnp.sum(window * keep * self.w.astype(self.dtype)[None], axis=1, keepdims=True)
        y = y + self.b.astype(self.dtype)
        return y, window[:, 1:]
