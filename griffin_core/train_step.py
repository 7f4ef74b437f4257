"""The train and evaluation steps: masked next-token cross-entropy, AdamW update, and the
per-step diagnostics (gradient, parameter and update norms)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from griffin_core.config import ModelConfig
from griffin_core.model import Griffin


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any


def token_losses(cfg: ModelConfig, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """Cross-entropy of every target, [B, T] fp32 (unmasked): optax's, on the model's fp32
    (and, if `logit_softcap` is set, soft-capped) logits. Callers apply `loss_mask`."""
    logits = Griffin(cfg).apply({"params": params}, batch["tokens"], batch["segment_pos"])
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["targets"])


def mean_loss(cfg: ModelConfig, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
    mask = batch["loss_mask"]
    return jnp.sum(token_losses(cfg, params, batch) * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def init_state(params: Any, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


def loss_and_grads(cfg: ModelConfig, params: Any, batch: dict[str, jax.Array], microbatches: int = 1):
    """Mean loss over the batch's scored tokens and its gradient. With microbatches > 1 the
    batch is processed in that many slices whose gradients are summed (fp32) before dividing
    by the total token count: the same mean, with 1/microbatches of the activation memory.
    Microbatch i takes rows i, i + k, i + 2k, ...: every data-parallel shard keeps its rows."""
    if microbatches == 1:
        return jax.value_and_grad(lambda p: mean_loss(cfg, p, batch))(params)

    def split(x):
        return jnp.swapaxes(x.reshape((x.shape[0] // microbatches, microbatches) + x.shape[1:]), 0, 1)

    def summed(p, mb):
        mask = mb["loss_mask"]
        return jnp.sum(token_losses(cfg, p, mb) * mask), jnp.sum(mask)

    def body(carry, mb):
        grad_sum, loss_sum, count = carry
        (loss, n), grads = jax.value_and_grad(summed, has_aux=True)(params, mb)
        return (jax.tree_util.tree_map(jnp.add, grad_sum, grads), loss_sum + loss, count + n), None

    zeros = jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    (grad_sum, loss_sum, count), _ = jax.lax.scan(body, (zeros, 0.0, 0.0), jax.tree_util.tree_map(split, batch))
    count = jnp.maximum(count, 1.0)
    return loss_sum / count, jax.tree_util.tree_map(lambda g, p: (g / count).astype(p.dtype), grad_sum, params)


def train_step(cfg: ModelConfig, optimizer: optax.GradientTransformation, schedule: optax.Schedule,
               state: TrainState, batch: dict[str, jax.Array], microbatches: int = 1
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    loss, grads = loss_and_grads(cfg, state.params, batch, microbatches)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "lr": schedule(state.step), "grad_norm": optax.tree.norm(grads),
               "param_norm": optax.tree.norm(params), "update_norm": optax.tree.norm(updates)}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(cfg: ModelConfig, params: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-sequence loss sums and counts [B] (for a mean and its standard error), per-position
    loss sums and counts [T] (loss by position), and correct-prediction counts [B]."""
    losses = token_losses(cfg, params, batch)
    mask = batch["loss_mask"]
    return {"seq_loss": jnp.sum(losses * mask, axis=1), "seq_count": jnp.sum(mask, axis=1),
            "pos_loss": jnp.sum(losses * mask, axis=0), "pos_count": jnp.sum(mask, axis=0)}


def predictions(cfg: ModelConfig, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """Greedy next-token predictions [B, T] (accuracy on the synthetic tasks)."""
    return jnp.argmax(Griffin(cfg).apply({"params": params}, batch["tokens"], batch["segment_pos"]), axis=-1)
