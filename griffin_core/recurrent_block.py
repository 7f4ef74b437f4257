"""The recurrent temporal-mixing block (Hawk's only block, two of Griffin's three):

  y = Linear(D_RNN -> D)( GeLU(Linear(D -> D_RNN)(x)) * RG-LRU(Conv1D(Linear(D -> D_RNN)(x))) )
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init
from griffin_core.config import ModelConfig
from griffin_core.conv1d import Conv1D
from griffin_core.rglru import RGLRU
from griffin_core.sharding import constrain

RecurrentCache = dict[str, jax.Array]  # {"rg_lru": [B, D_RNN] fp32, "conv1d": [B, W-1, D_RNN]}


class RecurrentBlock(nn.Module):
    config: ModelConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        def dense(name, features, w_init, names):
            return init.dense(name, features, w_init, names, self.dtype, self.param_dtype)

        # Tensor parallelism splits D_RNN: the input projections on their output, the output
        # projection on its input; the Conv1D and the RG-LRU then work on their own channels.
        self.linear_y = dense("linear_y", cfg.lru_width, init.lecun_normal(), ("embed", "rnn"))
        self.linear_x = dense("linear_x", cfg.lru_width, init.lecun_normal(), ("embed", "rnn"))
        self.linear_out = dense("linear_out", cfg.width, init.final_layer_normal(cfg.depth), ("rnn", "embed"))
        self.conv_1d = Conv1D(cfg.lru_width, cfg.conv_width, dtype=self.dtype, param_dtype=self.param_dtype)
        self.rg_lru = RGLRU(cfg.lru_width, cfg.num_gate_blocks, c=cfg.lru_c, lambda_init=cfg.lambda_init,
                            sqrt_max_grad=cfg.sqrt_max_grad, scan_impl=cfg.scan_impl,
                            scan_unroll=cfg.scan_unroll, dtype=self.dtype, param_dtype=self.param_dtype)

    def __call__(self, x: jax.Array, segment_pos: jax.Array, lengths: jax.Array | None = None
                 ) -> tuple[jax.Array, RecurrentCache | None]:
        """x: [B, T, D], segment_pos: [B, T] -> ([B, T, D], cache at `lengths` if given)."""
        names = ("batch", "length", "act_rnn")
        y = constrain(jax.nn.gelu(self.linear_y(x), approximate=True), names)
        xr = constrain(self.linear_x(x), names)
        conv = self.conv_1d(xr, segment_pos)
        r, h = self.rg_lru(conv, segment_pos)
        out = self.linear_out(r * y)
        if lengths is None:
            return out, None
        # State after the last prompt token (zero for an empty prompt).
        last = jnp.take_along_axis(h, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
        last = jnp.where((lengths > 0)[:, None], last, 0.0)
        return out, {"rg_lru": last, "conv1d": self.conv_1d.prefill_cache(xr, lengths)}

    def step(self, x: jax.Array, pos: jax.Array, cache: RecurrentCache) -> tuple[jax.Array, RecurrentCache]:
        """x: [B, 1, D], pos: [B] -> ([B, 1, D], cache)."""
        y = jax.nn.gelu(self.linear_y(x), approximate=True)
        conv, conv_cache = self.conv_1d.step(self.linear_x(x), pos, cache["conv1d"])
        r, h = self.rg_lru.step(conv, pos, cache["rg_lru"])
        return self.linear_out(r * y), {"rg_lru": h, "conv1d": conv_cache}

    @staticmethod
    def init_cache(cfg: ModelConfig, batch: int, dtype: Any) -> RecurrentCache:
        return {"rg_lru": jnp.zeros((batch, cfg.lru_width), jnp.float32),
                "conv1d": jnp.zeros((batch, cfg.conv_width - 1, cfg.lru_width), dtype)}
