"""The Mamba-2 mixer (Dao & Gu, arXiv 2405.21060, the authors' `Mamba2` module), as a temporal
block of this project's residual stack:

  z, x, B, C, dt = Linear(D -> ...)(u)                (no biases)
  x, B, C = SiLU(Conv1D(x)), SiLU(Conv1D(B)), SiLU(Conv1D(C))   (causal, depthwise, width 4)
  dt = softplus(dt + dt_bias);  A = -exp(A_log)       (one scalar decay per head)
  y = SSD(x, dt, A, B, C) + D * x                     (griffin_core.ssd; state [H, P, N], fp32)
  out = Linear(RMSNorm_groups(y * SiLU(z)))           (the gated RMSNorm, per group of heads)

Two things differ in form, not in function, from the authors' code: the input projection is
four dense layers (z, x, B and C, dt) and the Conv1D two (x; B and C), where the authors
concatenate them; a depthwise convolution and a dense layer split by output channels compute
the same, and the split lets tensor parallelism shard x and z by heads while B and C (shared
by the heads of a group) stay whole. The gated norm's gain is (1 + scale), scale initialised to
0, as the other norms here (the authors' gain starts at 1 too). Dense layers follow this
project's initialisation (one recipe for all families); A, dt and D follow the authors'.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init
from griffin_core.config import ModelConfig
from griffin_core.conv1d import Conv1D
from griffin_core.sharding import constrain
from griffin_core.ssd import ssd_chunked, ssd_step

Mamba2Cache = dict[str, jax.Array]
"""{"ssm": [B, H, P, N] fp32, "conv_x": [B, W-1, H P], "conv_bc": [B, W-1, 2 G N]}."""


class Mamba2Block(nn.Module):
    config: ModelConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        inner, bc, heads = cfg.ssm_inner, 2 * cfg.ssm_groups * cfg.ssm_state, cfg.ssm_heads

        def dense(name, features, w_init, names):  # no biases, as the authors'
            return init.dense(name, features, w_init, names, self.dtype, self.param_dtype, bias=False)

        self.in_z = dense("in_z", inner, init.lecun_normal(), ("embed", "ssm_inner"))
        self.in_x = dense("in_x", inner, init.lecun_normal(), ("embed", "ssm_inner"))
        self.in_bc = dense("in_bc", bc, init.lecun_normal(), ("embed", "ssm_bc"))
        self.in_dt = dense("in_dt", heads, init.lecun_normal(), ("embed", "ssm_heads"))
        conv = dict(temporal_width=cfg.conv_width, dtype=self.dtype, param_dtype=self.param_dtype)
        self.conv_x = Conv1D(inner, channel_axis="ssm_inner", **conv)
        self.conv_bc = Conv1D(bc, channel_axis="ssm_bc", **conv)
        self.a_log = self.param("a_log", init.named(init.ssm_a_log(), "ssm_heads"), (heads,), self.param_dtype)
        self.dt_bias = self.param("dt_bias", init.named(init.ssm_dt_bias(), "ssm_heads"), (heads,), self.param_dtype)
        self.d_skip = self.param("d_skip", init.named(nn.initializers.ones_init(), "ssm_heads"), (heads,),
                                 self.param_dtype)
        self.norm_scale = self.param("norm_scale", init.zeros("ssm_inner"), (inner,), self.param_dtype)
        self.out = dense("out", cfg.width, init.final_layer_normal(cfg.depth), ("ssm_inner", "embed"))

    def _inputs(self, u: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """u: [..., D] -> z [..., H P], x [..., H P] (before the Conv1D), B and C [..., 2 G N]."""
        return self.in_z(u), self.in_x(u), self.in_bc(u)

    def _dt(self, u: jax.Array) -> jax.Array:
        """u: [..., D] -> dt [..., H] fp32, positive."""
        return jax.nn.softplus(self.in_dt(u).astype(jnp.float32) + self.dt_bias.astype(jnp.float32))

    def _split(self, x: jax.Array, bc: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x [..., H P], bc [..., 2 G N] -> x [..., H, P], B and C [..., G, N]."""
        cfg = self.config
        b, c = jnp.split(bc, 2, axis=-1)
        groups = (cfg.ssm_groups, cfg.ssm_state)
        return (x.reshape(x.shape[:-1] + (cfg.ssm_heads, cfg.ssm_head_dim)),
                b.reshape(b.shape[:-1] + groups), c.reshape(c.shape[:-1] + groups))

    def _output(self, y: jax.Array, x: jax.Array, z: jax.Array) -> jax.Array:
        """y, x: [..., H, P] (fp32, compute dtype), z: [..., H P] -> [..., D]: the D skip, the
        gated RMSNorm (per group of heads, in fp32) and the output projection."""
        cfg = self.config
        y = y + self.d_skip.astype(jnp.float32)[:, None] * x.astype(jnp.float32)
        gated = y.reshape(z.shape) * jax.nn.silu(z.astype(jnp.float32))
        groups = gated.reshape(gated.shape[:-1] + (cfg.ssm_groups, -1))
        normed = groups * jax.lax.rsqrt(jnp.mean(jnp.square(groups), axis=-1, keepdims=True) + cfg.norm_eps)
        normed = normed.reshape(z.shape) * (1.0 + self.norm_scale.astype(jnp.float32))
        return self.out(normed.astype(self.dtype))

    def __call__(self, u: jax.Array, segment_pos: jax.Array, lengths: jax.Array | None = None
                 ) -> tuple[jax.Array, Mamba2Cache | None]:
        """u: [B, T, D], segment_pos: [B, T] -> ([B, T, D], the cache at `lengths` if given)."""
        names = ("batch", "length", "act_ssm")
        z, x_in, bc_in = self._inputs(u)
        z, x_in = constrain(z, names), constrain(x_in, names)
        x = jax.nn.silu(self.conv_x(x_in, segment_pos))
        bc = jax.nn.silu(self.conv_bc(bc_in, segment_pos))
        dt = self._dt(u)
        if lengths is not None:
            # Steps past a prompt's end get dt = 0: no input and decay 1, so the final state is
            # the state after the prompt's last token (zero for an empty prompt).
            dt = jnp.where(jnp.arange(u.shape[1])[None, :, None] < lengths[:, None, None], dt, 0.0)
        x, b, c = self._split(x, bc)
        a = -jnp.exp(self.a_log.astype(jnp.float32))
        # Each device runs its own heads (tensor parallelism): no communication in the SSD.
        with jax.named_scope("ssd"):
            y, state = ssd_chunked(x, dt, a, b, c, segment_pos == 0, self.config.ssm_chunk)
        out = self._output(y, x, z)
        if lengths is None:
            return out, None
        return out, {"ssm": state, "conv_x": self.conv_x.prefill_cache(x_in, lengths),
                     "conv_bc": self.conv_bc.prefill_cache(bc_in, lengths)}

    def step(self, u: jax.Array, pos: jax.Array, cache: Mamba2Cache) -> tuple[jax.Array, Mamba2Cache]:
        """u: [B, 1, D], pos: [B] -> ([B, 1, D], cache)."""
        z, x_in, bc_in = self._inputs(u)
        x, conv_x = self.conv_x.step(x_in, pos, cache["conv_x"])
        bc, conv_bc = self.conv_bc.step(bc_in, pos, cache["conv_bc"])
        x, b, c = self._split(jax.nn.silu(x[:, 0]), jax.nn.silu(bc[:, 0]))
        a = -jnp.exp(self.a_log.astype(jnp.float32))
        y, state = ssd_step(x, self._dt(u[:, 0]), a, b, c, pos == 0, cache["ssm"])
        return self._output(y, x, z[:, 0])[:, None], {"ssm": state, "conv_x": conv_x, "conv_bc": conv_bc}

    @staticmethod
    def init_cache(cfg: ModelConfig, batch: int, dtype: Any) -> Mamba2Cache:
        k = cfg.conv_width - 1
        return {"ssm": jnp.zeros((batch, cfg.ssm_heads, cfg.ssm_head_dim, cfg.ssm_state), jnp.float32),
                "conv_x": jnp.zeros((batch, k, cfg.ssm_inner), dtype),
                "conv_bc": jnp.zeros((batch, k, 2 * cfg.ssm_groups * cfg.ssm_state), dtype)}
