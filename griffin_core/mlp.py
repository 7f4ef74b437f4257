"""Gated MLP block: Linear(D -> M D) with GeLU times Linear(D -> M D), then Linear(M D -> D)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init
from griffin_core.sharding import constrain


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
        def dense(name, features, w_init, names):
            return init.dense(name, features, w_init, names, self.dtype, self.param_dtype)

        # Tensor parallelism: the up-projections split on their output, the down-projection on
        # its input, so the block needs one all-reduce (of its output).
        gate = dense("up_gelu", self.expanded_width, init.lecun_normal(), ("embed", "mlp"))(x)
        up = dense("up_linear", self.expanded_width, init.lecun_normal(), ("embed", "mlp"))(x)
        # tanh-approximated GeLU, as in the reference code.
        hidden = constrain(jax.nn.gelu(gate, approximate=True) * up, ("batch", "length", "act_mlp"))
        return dense("down", self.width, init.final_layer_normal(self.depth), ("mlp", "embed"))(hidden)
