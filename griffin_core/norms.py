"""RMSNorm with a (1 + scale) gain, scale initialised to 0 (so the gain starts at 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * (1 + scale). Computed in fp32 (the reference uses the
    parameter dtype; fp32 keeps bf16 runs' normalisation exact), returned in x's dtype."""

    eps: float = 1e-6
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [..., D] -> [..., D]."""
        scale = self.param("scale", init.zeros("embed"), (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(var + self.eps) * (1.0 + scale.astype(jnp.float32))
        return y.astype(x.dtype)
