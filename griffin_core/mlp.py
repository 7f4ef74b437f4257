"""Gated MLP block: Linear(D -> M D) with GeLU times Linear(D -> M D), then Linear(M D -> D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init


class MLPBlock(nn.Module):
    width: int
    expanded_width: int
    depth: int
    """Model depth: the down projection's initial variance is (2 / depth) / fan_in."""
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, T, D] -> [B, T, D]."""
        dense = lambda n, features, w_init: nn.Dense(  # noqa: E731
            features, kernel_init=w_init, dtype=self.dtype, param_dtype=self.param_dtype, name=n)
        gate = dense("up_gelu", self.expanded_width, init.lecun_normal())(x)
        up = dense("up_linear", self.expanded_width, init.lecun_normal())(x)
        # tanh-approximated GeLU, as in the reference code.
        hidden = jax.nn.gelu(gate, approximate=True) * up
        return dense("down", self.width, init.final_layer_normal(self.depth))(hidden)
