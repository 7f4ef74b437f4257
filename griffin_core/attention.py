"""Multi-query attention (H query heads, one shared key/value head), global or local.

Local attention follows the reference's mask: query t sees keys s with t - window <= s <= t
(window + 1 keys, itself included). It is computed in query blocks of size Bq, each attending
to the keys of its own block and the ceil(window / Bq) blocks before it, so its cost is
O(T * (window + Bq)) and never a full T x T product. Logits and softmax are fp32.

Packed documents: `segment_pos` is the position within the document (0 at its start); the
segment id is the running count of starts, and a query attends only within its segment.

Decoding caches:
- global: keys/values of every position so far, [B, L, head_dim] with L the cache size;
- local: a ring buffer of `window` slots, slot = position mod window. A decode step attends
  to the cache plus the current token, and writes the current token afterwards.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init
from griffin_core.attention_plan import AttentionPlan, attention_plan
from griffin_core.config import ModelConfig
from griffin_core.rope import apply_rope
from griffin_core.sharding import constrain

AttentionCache = dict[str, jax.Array]  # {"k": [B, S, head_dim], "v": [B, S, head_dim]}
_MASKED = -1e30
_Q_NAMES = ("batch", "length", "act_heads", "act_kv")
_KV_NAMES = ("batch", "length", "act_kv")


def segment_ids(segment_pos: jax.Array) -> jax.Array:
    """[B, T] positions within documents -> [B, T] document index (starts counted so far)."""
    return jnp.cumsum(segment_pos == 0, axis=-1)


def attention_mask(q_idx, k_idx, q_seg, k_seg, window: int | None) -> jax.Array:
    """Boolean mask [..., Tq, Tk] from indices in the packed row [..., Tq] / [..., Tk].
    Keys with a negative index are padding."""
    q_idx, q_seg = q_idx[..., :, None], q_seg[..., :, None]
    k_idx, k_seg = k_idx[..., None, :], k_seg[..., None, :]
    mask = (k_idx <= q_idx) & (k_idx >= 0) & (q_seg == k_seg)
    if window is not None:
        mask &= q_idx - k_idx <= window
    return mask


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """q: [..., Tq, H, hd], k, v: [..., Tk, hd], mask: [..., Tq, Tk] -> [..., Tq, H, hd].

    The logits are laid out [..., Tq, H, Tk], the order in which a matmul of q ([..., Tq * H, hd])
    by k^T produces them, and in which the second matmul consumes the probabilities. With one
    shared key/value head, each query row (t, h) is just another row of that matmul. A
    [..., H, Tq, Tk] layout made XLA transpose the largest arrays of the step (the logits and
    their gradients, B H T^2 elements each): docs/benchmarks.md, "Training step".
    """
    logits = jnp.einsum("...qhd,...kd->...qhk", q, k, preferred_element_type=jnp.float32)
    # The mask as an additive bias (0 or -1e30) rather than a select: the same logits to the
    # bit (|logit| is far below half an ulp of 1e30, so logit - 1e30 rounds to -1e30), but XLA
    # fuses an add of a broadcast [..., Tq, 1, Tk] operand into the scaling instead of writing
    # the masked logits out once more (MQA's CPU training step 1-5% faster; docs/benchmarks.md).
    logits = logits * (q.shape[-1] ** -0.5) + jnp.where(mask, 0.0, _MASKED)[..., :, None, :]
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("...qhk,...kd->...qhd", probs, v)


def _blocks_with_history(a: jax.Array, block: int, history: int, fill) -> jax.Array:
    """[B, N*block, ...] -> [B, N, (history+1)*block, ...]: block n preceded by the `history`
    blocks before it, oldest first (front-padded with `fill`)."""
    n = a.shape[1] // block
    pad = [(0, 0)] * a.ndim
    pad[1] = (history * block, 0)
    a = jnp.pad(a, pad, constant_values=fill)
    parts = [a[:, j * block: j * block + n * block].reshape((a.shape[0], n, block) + a.shape[2:])
             for j in range(history + 1)]
    return jnp.concatenate(parts, axis=2)


def local_attention_blocked(q, k, v, seg, window: int, block: int) -> jax.Array:
    """q: [B, T, H, hd], k, v: [B, T, hd], seg: [B, T] -> [B, T, H, hd], O(T (window + block))."""
    b, t = seg.shape
    n = -(-t // block)
    pad_t = n * block - t
    if pad_t:
        q = jnp.pad(q, ((0, 0), (0, pad_t), (0, 0), (0, 0)))
        k, v = (jnp.pad(a, ((0, 0), (0, pad_t), (0, 0))) for a in (k, v))
        seg = jnp.pad(seg, ((0, 0), (0, pad_t)), constant_values=-1)
    history = -(-window // block)
    idx = jnp.broadcast_to(jnp.arange(n * block), (b, n * block))
    q_blocks = q.reshape((b, n, block) + q.shape[2:])
    k_blocks = _blocks_with_history(k, block, history, 0)
    v_blocks = _blocks_with_history(v, block, history, 0)
    mask = attention_mask(idx.reshape(b, n, block), _blocks_with_history(idx, block, history, -1),
                          seg.reshape(b, n, block), _blocks_with_history(seg, block, history, -1), window)
    out = attend(q_blocks, k_blocks, v_blocks, mask)
    return out.reshape((b, n * block) + out.shape[3:])[:, :t]


def attention_sliced(q, k, v, seg, slices, window: int | None) -> jax.Array:
    """q: [B, T, H, hd], k, v: [B, T, hd], seg: [B, T] -> [B, T, H, hd], causal: each query
    block attends to its own key range only (griffin_core.attention_plan). Every query's
    softmax is over the keys a dense product would leave unmasked, so results differ from it
    only by summation order."""
    b, t = seg.shape
    idx = jnp.broadcast_to(jnp.arange(t), (b, t))
    outs = []
    for q_lo, q_hi, k_lo, k_hi in slices:
        mask = attention_mask(idx[:, q_lo:q_hi], idx[:, k_lo:k_hi], seg[:, q_lo:q_hi], seg[:, k_lo:k_hi], window)
        outs.append(attend(q[:, q_lo:q_hi], k[:, k_lo:k_hi], v[:, k_lo:k_hi], mask))
    return jnp.concatenate(outs, axis=1) if len(outs) > 1 else outs[0]


def causal_attention(q, k, v, seg, plan: AttentionPlan, window: int | None) -> jax.Array:
    """Attention of a whole sequence as `plan` says: slices, or batched local blocks."""
    if plan.slices:
        return attention_sliced(q, k, v, seg, plan.slices, window)
    return local_attention_blocked(q, k, v, seg, window, plan.block)


class AttentionBlock(nn.Module):
    config: ModelConfig
    local: bool
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        def dense(name, features, w_init, names, bias):
            return init.dense(name, features, w_init, names, self.dtype, self.param_dtype, bias)

        # Tensor parallelism splits the query heads (and the output projection's input); the
        # one key/value head is replicated.
        self.proj_q = dense("proj_q", cfg.width, init.lecun_normal(), ("embed", "q_heads"), False)
        self.proj_k = dense("proj_k", cfg.head_dim, init.lecun_normal(), ("embed", "kv"), False)
        self.proj_v = dense("proj_v", cfg.head_dim, init.lecun_normal(), ("embed", "kv"), False)
        self.proj_final = dense("proj_final", cfg.width, init.final_layer_normal(cfg.depth), ("q_heads", "embed"),
                                True)

    @property
    def window(self) -> int | None:
        return self.config.local_window if self.local else None

    def _qkv(self, x: jax.Array, positions: jax.Array):
        cfg = self.config
        q = self.proj_q(x).reshape(x.shape[:2] + (cfg.num_heads, cfg.head_dim))
        q = constrain(apply_rope(q, positions, cfg.rope_dims, cfg.rope_base), _Q_NAMES)
        k = constrain(apply_rope(self.proj_k(x), positions, cfg.rope_dims, cfg.rope_base), _KV_NAMES)
        return q, k, constrain(self.proj_v(x), _KV_NAMES)

    def __call__(self, x: jax.Array, segment_pos: jax.Array, lengths: jax.Array | None = None,
                 cache_size: int = 0) -> tuple[jax.Array, AttentionCache | None]:
        """x: [B, T, D], segment_pos: [B, T] -> ([B, T, D], cache at `lengths` if given)."""
        b, t, _ = x.shape
        q, k, v = self._qkv(x, segment_pos)
        out = causal_attention(q, k, v, segment_ids(segment_pos), attention_plan(self.config, self.local, t),
                               self.window)
        y = self.proj_final(constrain(out, _Q_NAMES).reshape(b, t, -1))
        if lengths is None:
            return y, None
        return y, self._prefill_cache(k, v, lengths, cache_size)

    def _prefill_cache(self, k, v, lengths, cache_size) -> AttentionCache:
        b, t, _ = k.shape
        if self.local:
            w = self.config.local_window
            # Slot s holds the latest position p < length with p = s (mod window).
            slot_pos = lengths[:, None] - 1 - jnp.mod(lengths[:, None] - 1 - jnp.arange(w)[None], w)
            valid = (slot_pos >= 0)[..., None]
            gather = lambda a: jnp.where(valid, jnp.take_along_axis(a, jnp.maximum(slot_pos, 0)[..., None], 1), 0)  # noqa: E731
            return {"k": gather(k).astype(self.dtype), "v": gather(v).astype(self.dtype)}
        if cache_size < t:
            raise ValueError(f"cache_size={cache_size} must be at least the prompt length {t}")
        valid = (jnp.arange(t)[None] < lengths[:, None])[..., None]
        pad = ((0, 0), (0, cache_size - t), (0, 0))
        return {"k": jnp.pad(jnp.where(valid, k, 0), pad).astype(self.dtype),
                "v": jnp.pad(jnp.where(valid, v, 0), pad).astype(self.dtype)}

    def step(self, x: jax.Array, pos: jax.Array, cache: AttentionCache) -> tuple[jax.Array, AttentionCache]:
        """One decoding step. x: [B, 1, D], pos: [B] -> ([B, 1, D], cache)."""
        b = x.shape[0]
        q, k, v = self._qkv(x, pos[:, None])
        slots = cache["k"].shape[1]
        slot_idx = jnp.arange(slots)[None]
        rows = jnp.arange(b)

        def write(slot):
            # A scatter of B rows (in place in the decode loop's donated buffers), not a select
            # over the whole cache: a step then reads the cache once, in `attend`.
            return {"k": cache["k"].at[rows, slot].set(k[:, 0].astype(self.dtype)),
                    "v": cache["v"].at[rows, slot].set(v[:, 0].astype(self.dtype))}

        if self.local:
            # The window's `w` past keys live in the ring, whose slot for `pos` still holds
            # position pos - w, which the reference attends to (window + 1 keys): attend over
            # ring + current key before overwriting that slot.
            w = self.config.local_window
            slot_pos = pos[:, None] - 1 - jnp.mod(pos[:, None] - 1 - slot_idx, w)
            mask = jnp.concatenate([slot_pos >= 0, jnp.ones((b, 1), bool)], axis=1)[:, None]
            keys = jnp.concatenate([cache["k"], k.astype(self.dtype)], axis=1)
            values = jnp.concatenate([cache["v"], v.astype(self.dtype)], axis=1)
            out = attend(q, keys, values, mask)
            new_cache = write(jnp.mod(pos, w))
        else:
            new_cache = write(pos)
            out = attend(q, new_cache["k"], new_cache["v"], (slot_idx <= pos[:, None])[:, None])
        return self.proj_final(out.reshape(b, 1, -1)), new_cache

    @staticmethod
    def init_cache(cfg: ModelConfig, local: bool, batch: int, cache_size: int, dtype: Any) -> AttentionCache:
        slots = cfg.local_window if local else cache_size
        zeros = jnp.zeros((batch, slots, cfg.head_dim), dtype)
        return {"k": zeros, "v": zeros}
