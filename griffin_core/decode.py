"""Compiled decoding: prefill the prompts, then sample one token at a time inside `lax.scan`
(one XLA program for the whole loop; no per-token Python dispatch).

Caches have a fixed size: recurrent layers keep [B, D_RNN] state plus the last Conv1D inputs,
local attention a ring of `window` slots; only global attention grows with `cache_size`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from griffin_core.config import ModelConfig
from griffin_core.layer_layout import to_layout
from griffin_core.model import Cache, Griffin, init_cache


def unrolled(cfg: ModelConfig, params: Any) -> tuple[ModelConfig, Any]:
    """Decoding runs the unrolled layout (per-layer caches): a scanned model's parameters are
    sliced into it (inside the caller's jit, once per call)."""
    if not cfg.scan_layers:
        return cfg, params
    return cfg.replace(scan_layers=False), to_layout(params, cfg, scanned=False)


def sample(logits: jax.Array, rng: jax.Array, temperature: float) -> jax.Array:
    """logits: [B, V] -> tokens [B]. temperature 0 is greedy."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(rng, logits / temperature, axis=-1).astype(jnp.int32)


def prefill(cfg: ModelConfig, params: Any, tokens: jax.Array, lengths: jax.Array, cache_size: int
            ) -> tuple[jax.Array, Cache]:
    """tokens: [B, T] right-padded prompts, lengths: [B] -> (logits at each prompt's last token
    [B, V], caches)."""
    cfg, params = unrolled(cfg, params)
    logits, cache = Griffin(cfg).apply({"params": params}, tokens, lengths, cache_size,
                                       method=Griffin.prefill)
    last = jnp.take_along_axis(logits, jnp.maximum(lengths - 1, 0)[:, None, None], axis=1)[:, 0]
    return last, cache


def decode_steps(cfg: ModelConfig, params: Any, tokens: jax.Array, start_pos: jax.Array, cache: Cache
                 ) -> tuple[jax.Array, Cache]:
    """Teacher-forced decoding: feed tokens[:, i] at position start_pos + i.

    tokens: [B, S], start_pos: [B] -> (logits [B, S, V], final caches).
    """
    cfg, params = unrolled(cfg, params)
    model = Griffin(cfg)

    def body(cache, inputs):
        token, i = inputs
        logits, cache = model.apply({"params": params}, token, start_pos + i, cache, method=Griffin.step)
        return cache, logits

    steps = jnp.arange(tokens.shape[1])
    cache, logits = jax.lax.scan(body, cache, (jnp.swapaxes(tokens, 0, 1), steps))
    return jnp.swapaxes(logits, 0, 1), cache


@functools.partial(jax.jit, static_argnames=("cfg", "num_steps", "cache_size", "temperature"))
def generate(cfg: ModelConfig, params: Any, prompts: jax.Array, lengths: jax.Array, rng: jax.Array,
             num_steps: int, cache_size: int = 0, temperature: float = 0.0) -> jax.Array:
    """Sample `num_steps` tokens after each prompt.

    prompts: [B, T] right-padded, lengths: [B] with 1 <= length <= T (the first sampled token
    needs a prompt token to condition on). cache_size defaults to T + num_steps.
    Returns tokens [B, num_steps] int32.
    """
    cache_size = cache_size or prompts.shape[1] + num_steps
    cfg, params = unrolled(cfg, params)
    model = Griffin(cfg)
    logits, cache = prefill(cfg, params, prompts, lengths, cache_size)
    rng, first_rng = jax.random.split(rng)
    first = sample(logits, first_rng, temperature)

    def body(carry, step_rng):
        token, pos, cache = carry
        logits, cache = model.apply({"params": params}, token, pos, cache, method=Griffin.step)
        nxt = sample(logits, step_rng, temperature)
        return (nxt, pos + 1, cache), token

    (_, _, _), out = jax.lax.scan(body, (first, lengths, cache), jax.random.split(rng, num_steps))
    return jnp.swapaxes(out, 0, 1)


__all__ = ["decode_steps", "generate", "init_cache", "prefill", "sample", "unrolled"]
