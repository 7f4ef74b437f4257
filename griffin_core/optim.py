"""optax AdamW with linear warmup, cosine decay to a fraction of the peak over the run's own
horizon, and global-norm clipping. Weight decay applies to matrices (kernels, embedding,
Conv1D and gate weights), not to biases, norm scales or the RG-LRU's Lambda."""

from __future__ import annotations

from typing import Any

import jax
import optax

from griffin_core.optim_config import OptimSpec

_DECAYED = ("kernel", "embedding", "w")


def learning_rate_schedule(spec: OptimSpec) -> optax.Schedule:
    """0 -> lr linearly over warmup_steps, then cosine to min_lr_ratio * lr at total_steps."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=spec.lr, warmup_steps=spec.warmup_steps,
        decay_steps=max(spec.total_steps, spec.warmup_steps + 1), end_value=spec.lr * spec.min_lr_ratio)


def weight_decay_mask(params: Any) -> Any:
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) in _DECAYED, params)


def make_optimizer(spec: OptimSpec) -> optax.GradientTransformation:
    adamw = optax.adamw(learning_rate_schedule(spec), b1=spec.beta1, b2=spec.beta2, eps=spec.eps,
                        weight_decay=spec.weight_decay, mask=weight_decay_mask)
    return optax.chain(optax.clip_by_global_norm(spec.clip_norm), adamw) if spec.clip_norm > 0 else adamw
