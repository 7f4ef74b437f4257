"""The three families in one model: embed, `depth` residual blocks, final RMSNorm, tied logits.

Residual block (pre-norm): x = x + Temporal(RMSNorm(x)); x = x + MLP(RMSNorm(x)), where the
temporal block is recurrent, global MQA, local MQA or a Mamba-2 mixer according to
`config.block_types`; with mlp_expansion = 0 there is no MLP half (the Mamba-2 authors' stack).

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
from griffin_core.layer_layout import SCAN_NAME, scan_groups, to_layout
from griffin_core.mamba2_block import Mamba2Block
from griffin_core.mlp import MLPBlock
from griffin_core.norms import RMSNorm
from griffin_core.recurrent_block import RecurrentBlock
from griffin_core.sharding import constrain, logical_names

Cache = list[dict[str, jax.Array]]  # one dict per layer
_RESIDUAL = ("batch", "length", "act_embed")


class ResidualBlock(nn.Module):
    config: ModelConfig
    block_type: str
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.temporal_pre_norm = RMSNorm(cfg.norm_eps, self.param_dtype)
        if self.block_type == "recurrent":
            self.temporal = RecurrentBlock(cfg, **kw)
        elif self.block_type == "mamba2":
            self.temporal = Mamba2Block(cfg, **kw)
        else:
            self.temporal = AttentionBlock(cfg, local=self.block_type == "local_attention", **kw)
        if cfg.mlp_width:
            self.channel_pre_norm = RMSNorm(cfg.norm_eps, self.param_dtype)
            self.mlp = MLPBlock(cfg.width, cfg.mlp_width, cfg.depth, **kw)

    def _channel(self, x):
        """The MLP half of the block (none in a model without MLPs)."""
        return x + self.mlp(self.channel_pre_norm(x)) if self.config.mlp_width else x

    def __call__(self, x, segment_pos, lengths=None, cache_size=0):
        """x: [B, T, D] -> ([B, T, D], this layer's cache if `lengths` is given)."""
        attention = self.block_type in ("attention", "local_attention")
        extra = {"cache_size": cache_size} if attention else {}
        y, cache = self.temporal(self.temporal_pre_norm(x), segment_pos, lengths, **extra)
        x = constrain(x + y, _RESIDUAL)
        return constrain(self._channel(x), _RESIDUAL), cache

    def step(self, x, pos, cache):
        """x: [B, 1, D], pos: [B] -> ([B, 1, D], cache)."""
        y, cache = self.temporal.step(self.temporal_pre_norm(x), pos, cache)
        return self._channel(x + y), cache


REMAT_POLICIES = {"none": None, "full": jax.checkpoint_policies.nothing_saveable,
                  "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}
"""`model.remat`: keep every activation ('none'), recompute each residual block's in the
backward pass ('full': one residual stream per layer is kept), or keep only the matmul outputs
('dots': the elementwise work is recomputed, the matmuls are not)."""


def block_class(cfg: ModelConfig, scanned: bool) -> type[ResidualBlock]:
    if cfg.remat == "none":
        return ResidualBlock
    # nn.remat keeps the parameter names: a remat model reads the same checkpoints. Inside a
    # scan, XLA cannot merge the recomputation with the forward pass, so CSE need not be
    # prevented (JAX's advice for remat in loops).
    return nn.remat(ResidualBlock, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not scanned)


class PatternGroup(nn.Module):
    """One repeat of the block pattern: the body of the scan over layers."""

    config: ModelConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cls = block_class(self.config, scanned=True)
        self.blocks = [cls(self.config, kind, self.dtype, self.param_dtype, name=f"block_{j}")
                       for j, kind in enumerate(self.config.block_pattern)]

    def __call__(self, x, segment_pos):
        """x: [B, T, D] -> ([B, T, D], None): the scan's carry and (no) output."""
        for block in self.blocks:
            x, _ = block(x, segment_pos)
        return x, None


class Griffin(nn.Module):
    """MQA Transformer, Hawk, Griffin or Mamba-2, according to `config.block_pattern`."""

    config: ModelConfig

    def setup(self) -> None:
        cfg = self.config
        self.compute_dtype = jnp.dtype(cfg.dtype)
        param_dtype = jnp.dtype(cfg.param_dtype)
        self.embedding = self.param("embedding", init.named(init.embedding_normal(cfg.width), "vocab", "embed"),
                                    (cfg.vocab_size, cfg.width), param_dtype)
        groups, period = scan_groups(cfg) if cfg.scan_layers else (0, len(cfg.block_pattern))
        if groups:
            # One traced and compiled body for all repeats of the pattern (a 40-layer model
            # compiles like a 3-layer one); parameters stacked on a leading 'layers' axis.
            self.layers = nn.scan(PatternGroup, variable_axes={"params": 0}, split_rngs={"params": True},
                                  in_axes=(nn.broadcast,), length=groups,
                                  metadata_params={nn.PARTITION_NAME: "layers"})(
                cfg, self.compute_dtype, param_dtype, name=SCAN_NAME)
        cls = block_class(cfg, scanned=False)
        self.blocks = [cls(cfg, cfg.block_types[i], self.compute_dtype, param_dtype, name=f"block_{i}")
                       for i in range(groups * period, cfg.depth)]
        self.final_norm = RMSNorm(cfg.norm_eps, param_dtype)

    def _unrolled_only(self, entry: str) -> None:
        if self.config.scan_layers and scan_groups(self.config)[0]:
            raise ValueError(f"Griffin.{entry} runs the unrolled layout: convert the parameters with "
                             "griffin_core.layer_layout.to_layout(params, cfg, scanned=False) and use "
                             "cfg.replace(scan_layers=False) (griffin_core.decode does)")

    def _embed(self, tokens: jax.Array) -> jax.Array:
        x = jnp.take(self.embedding, tokens, axis=0).astype(self.compute_dtype)
        x = constrain(x, _RESIDUAL)
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
        # Split over the vocabulary under tensor parallelism: the loss's log-sum-exp then
        # reduces across devices and no device holds the whole [B, T, V].
        logits = constrain(logits, _RESIDUAL[:-1] + ("act_vocab",)) if logits.ndim == 3 else logits
        cap = self.config.logit_softcap
        return cap * jnp.tanh(logits / cap) if cap > 0 else logits

    def __call__(self, tokens: jax.Array, segment_pos: jax.Array) -> jax.Array:
        """tokens, segment_pos: [B, T] int -> logits [B, T, V] fp32."""
        x = self._embed(tokens)
        if hasattr(self, "layers"):
            x, _ = self.layers(x, segment_pos)
        for block in self.blocks:
            x, _ = block(x, segment_pos)
        return self._logits(x)

    def prefill(self, tokens: jax.Array, lengths: jax.Array, cache_size: int) -> tuple[jax.Array, Cache]:
        """Prompts right-padded to T, each starting at position 0.

        tokens: [B, T], lengths: [B] (0 <= length <= T), cache_size: the longest sequence
        (prompt + generated) the global-attention caches must hold.
        Returns logits [B, T, V] (rows past a prompt's length are padding) and the caches.
        """
        self._unrolled_only("prefill")
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
        self._unrolled_only("step")
        x = self._embed(tokens[:, None])
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache):
            x, layer_cache = block.step(x, pos, layer_cache)
            new_cache.append(layer_cache)
        return self._logits(x)[:, 0], new_cache


def init_cache(cfg: ModelConfig, batch: int, cache_size: int) -> Cache:
    """Empty caches (as after an empty prompt). Global attention holds `cache_size` positions."""
    dtype = jnp.dtype(cfg.dtype)

    def layer(kind: str):
        if kind == "recurrent":
            return RecurrentBlock.init_cache(cfg, batch, dtype)
        if kind == "mamba2":
            return Mamba2Block.init_cache(cfg, batch, dtype)
        return AttentionBlock.init_cache(cfg, kind == "local_attention", batch, cache_size, dtype)

    return [layer(kind) for kind in cfg.block_types]


def init_params(cfg: ModelConfig, rng: jax.Array, seq_len: int = 8) -> Any:
    """Parameters of `cfg`'s model. Shapes do not depend on `seq_len`.

    A scanned model gets the unrolled model's values, stacked: the same seed gives the same
    network whatever `scan_layers` says."""
    tokens = jnp.zeros((1, seq_len), jnp.int32)
    params = nn.unbox(Griffin(cfg.replace(scan_layers=False)).init(rng, tokens, tokens)["params"])
    return to_layout(params, cfg, scanned=cfg.scan_layers)


def param_logical_names(cfg: ModelConfig) -> Any:
    """The logical axis names of every parameter of `cfg`'s model (griffin_core.parallelism),
    a tree shaped like its parameters with a tuple per array. Abstract: allocates nothing."""
    tokens = jnp.zeros((1, 8), jnp.int32)
    boxed = jax.eval_shape(lambda: Griffin(cfg).init(jax.random.PRNGKey(0), tokens, tokens)["params"])
    return logical_names(boxed)
