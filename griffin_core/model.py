"""The three families in one model: embed, `depth` residual blocks, final RMSNorm, tied logits.

Residual block (pre-norm): x = x + Temporal(RMSNorm(x)); x = x + MLP(RMSNorm(x)), where the
temporal block is recurrent, global MQA or local MQA according to `config.block_types`.

Entry points (all through `model.apply(params, ..., method=...)`):
- `__call__(tokens, segment_pos)`: logits for training and evaluation;
- `prefill(tokens, lengths, cache_size)`: logits and decoding caches after each prompt;
- `step(tokens, pos, cache)`: one decoding step for a batch of sequences at their own positions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init
from griffin_core.attention import AttentionBlock
from griffin_core.config import ModelConfig
from griffin_core.mlp import MLPBlock
from griffin_core.norms import RMSNorm
from griffin_core.recurrent_block import RecurrentBlock

Cache = list[dict[str, jax.Array]]  # one dict per layer


class ResidualBlock(nn.Module):
    config: ModelConfig
    block_type: str
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.temporal_pre_norm = RMSNorm(cfg.norm_eps, self.param_dtype)
        self.channel_pre_norm = RMSNorm(cfg.norm_eps, self.param_dtype)
        if self.block_type == "recurrent":
            self.temporal = RecurrentBlock(cfg, **kw)
        else:
            self.temporal = AttentionBlock(cfg, local=self.block_type == "local_attention", **kw)
        self.mlp = MLPBlock(cfg.width, cfg.mlp_width, cfg.depth, **kw)

    def __call__(self, x, segment_pos, lengths=None, cache_size=0):
        """x: [B, T, D] -> ([B, T, D], this layer's cache if `lengths` is given)."""
        extra = {} if self.block_type == "recurrent" else {"cache_size": cache_size}
        y, cache = self.temporal(self.temporal_pre_norm(x), segment_pos, lengths, **extra)
        x = x + y
        return x + self.mlp(self.channel_pre_norm(x)), cache

    def step(self, x, pos, cache):
        """x: [B, 1, D], pos: [B] -> ([B, 1, D], cache)."""
        y, cache = self.temporal.step(self.temporal_pre_norm(x), pos, cache)
        x = x + y
        return x + self.mlp(self.channel_pre_norm(x)), cache


class Griffin(nn.Module):
    """MQA Transformer, Hawk or Griffin, according to `config.block_pattern`."""

    config: ModelConfig

    def setup(self) -> None:
        cfg = self.config
        self.compute_dtype = jnp.dtype(cfg.dtype)
        self.embedding = self.param("embedding", init.embedding_normal(cfg.width),
                                    (cfg.vocab_size, cfg.width), jnp.dtype(cfg.param_dtype))
        # nn.remat keeps the parameter names: a remat model reads the same checkpoints.
        block_cls = nn.remat(ResidualBlock) if cfg.remat else ResidualBlock
        self.blocks = [block_cls(cfg, kind, self.compute_dtype, jnp.dtype(cfg.param_dtype), name=f"block_{i}")
                       for i, kind in enumerate(cfg.block_types)]
        self.final_norm = RMSNorm(cfg.norm_eps, jnp.dtype(cfg.param_dtype))

    def _embed(self, tokens: jax.Array) -> jax.Array:
        x = jnp.take(self.embedding, tokens, axis=0).astype(self.compute_dtype)
        if self.config.embed_scale:
            # RecurrentGemma's multiplier: sqrt(D) cast to bfloat16 ("to match training"), in
            # fp32 runs too, then applied in the compute dtype (50.5, not 50.596, at D = 2560).
            scale = jnp.sqrt(jnp.asarray(self.config.width, jnp.float32)).astype(jnp.bfloat16)
            x = x * scale.astype(self.compute_dtype)
        return x

    def _logits(self, x: jax.Array) -> jax.Array:
        x = self.final_norm(x)
        logits = jnp.einsum("...d,vd->...v", x, self.embedding.astype(self.compute_dtype),
                            preferred_element_type=jnp.float32)
        cap = self.config.logit_softcap
        return cap * jnp.tanh(logits / cap) if cap > 0 else logits

    def __call__(self, tokens: jax.Array, segment_pos: jax.Array) -> jax.Array:
        """tokens, segment_pos: [B, T] int -> logits [B, T, V] fp32."""
        x = self._embed(tokens)
        for block in self.blocks:
            x, _ = block(x, segment_pos)
        return self._logits(x)

    def prefill(self, tokens: jax.Array, lengths: jax.Array, cache_size: int) -> tuple[jax.Array, Cache]:
        """Prompts right-padded to T, each starting at position 0.

        tokens: [B, T], lengths: [B] (0 <= length <= T), cache_size: the longest sequence
        (prompt + generated) the global-attention caches must hold.
        Returns logits [B, T, V] (rows past a prompt's length are padding) and the caches.
        """
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        x = self._embed(tokens)
        caches = []
        for block in self.blocks:
            x, cache = block(x, positions, lengths, cache_size)
            caches.append(cache)
        return self._logits(x), caches

    def step(self, tokens: jax.Array, pos: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        """tokens: [B] the current token of each sequence, pos: [B] its position.
        Returns logits [B, V] fp32 and the updated caches."""
        x = self._embed(tokens[:, None])
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache):
            x, layer_cache = block.step(x, pos, layer_cache)
            new_cache.append(layer_cache)
        return self._logits(x)[:, 0], new_cache


def init_cache(cfg: ModelConfig, batch: int, cache_size: int) -> Cache:
    """Empty caches (as after an empty prompt). Global attention holds `cache_size` positions."""
    dtype = jnp.dtype(cfg.dtype)
    return [RecurrentBlock.init_cache(cfg, batch, dtype) if kind == "recurrent"
            else AttentionBlock.init_cache(cfg, kind == "local_attention", batch, cache_size, dtype)
            for kind in cfg.block_types]


def init_params(cfg: ModelConfig, rng: jax.Array, seq_len: int = 8) -> Any:
    """Parameters of `cfg`'s model. Shapes do not depend on `seq_len`."""
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    return Griffin(cfg).init(rng, tokens, jnp.zeros((1, seq_len), jnp.int32))["params"]
