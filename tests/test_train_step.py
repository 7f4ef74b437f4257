"""The train step's loss is the masked next-token cross-entropy (against a NumPy log-softmax),
and its memory options change nothing but memory: gradient accumulation over microbatches and
rematerialised blocks give the loss and gradients of the plain step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from griffin_core.config import ModelConfig
from griffin_core.counting import memory_per_device
import reference_numpy as ref
from griffin_core.model import Griffin, init_params
from griffin_core.train_step import eval_step, loss_and_grads, mean_loss


def _cfg(**kw):
    return ModelConfig(family="griffin", vocab_size=40, width=16, depth=3, num_heads=2, lru_width=24,
                       num_gate_blocks=4, local_window=4, **kw)


@pytest.fixture(scope="module")
def batch():
    key = jax.random.PRNGKey(0)
    tokens = jax.random.randint(key, (8, 12), 0, 40)
    mask = (jax.random.uniform(jax.random.PRNGKey(1), (8, 12)) > 0.2).astype(jnp.float32)
    pos = jnp.concatenate([jnp.arange(5), jnp.arange(7)])[None].repeat(8, 0)
    return {"tokens": tokens, "targets": jnp.roll(tokens, -1, 1), "segment_pos": pos, "loss_mask": mask}


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


@pytest.mark.parametrize("extra", [{}, {"logit_softcap": 5.0, "embed_scale": True}, {"big": 40.0}])
def test_losses_match_a_numpy_log_softmax(batch, extra):
    """Mean loss, per-sequence and per-position sums and counts (what evaluation reads) equal a
    float64 NumPy log-softmax of the model's fp32 logits, masked, to fp32 rounding; also with the
    soft-cap and embedding scale on, and with logits of a few tens (an fp32-unsafe exp)."""
    extra = dict(extra)
    big = extra.pop("big", 1.0)
    cfg = _cfg(**extra)
    params = init_params(cfg, jax.random.PRNGKey(4))
    params = {**params, "embedding": params["embedding"] * big}
    logits = np.asarray(Griffin(cfg).apply({"params": params}, batch["tokens"], batch["segment_pos"]))
    assert logits.dtype == np.float32
    if big > 1:
        assert np.abs(logits).max() > 100  # exp would overflow without the max shift
    losses = ref.cross_entropy(logits, np.asarray(batch["targets"]))
    mask = np.asarray(batch["loss_mask"], np.float64)
    tol = dict(rtol=2e-6, atol=2e-6 * max(1.0, float(np.abs(losses).max())))
    np.testing.assert_allclose(float(jax.jit(lambda p, b: mean_loss(cfg, p, b))(params, batch)),
                               np.sum(losses * mask) / np.sum(mask), **tol)
    out = jax.jit(lambda p, b: eval_step(cfg, p, b))(params, batch)
    np.testing.assert_allclose(np.asarray(out["seq_loss"]), np.sum(losses * mask, axis=1), **tol)
    np.testing.assert_allclose(np.asarray(out["pos_loss"]), np.sum(losses * mask, axis=0), **tol)
    np.testing.assert_array_equal(np.asarray(out["seq_count"]), np.sum(mask, axis=1))
    np.testing.assert_array_equal(np.asarray(out["pos_count"]), np.sum(mask, axis=0))


def test_microbatches_equal_the_whole_batch(batch):
    cfg = _cfg()
    params = init_params(cfg, jax.random.PRNGKey(2))
    loss1, g1 = jax.jit(lambda p, b: loss_and_grads(cfg, p, b, 1))(params, batch)
    loss4, g4 = jax.jit(lambda p, b: loss_and_grads(cfg, p, b, 4))(params, batch)
    np.testing.assert_allclose(float(loss4), float(loss1), rtol=1e-6)
    # The slices' gradients are summed in another order: entries move by fp32 rounding of the
    # sums they come from (about 1e-6 of the largest gradient), not of their own size.
    np.testing.assert_allclose(_flat(g4), _flat(g1), rtol=1e-5, atol=1e-5 * np.abs(_flat(g1)).max())


def test_remat_gives_the_same_params_loss_and_gradients(batch):
    plain, remat = _cfg(), _cfg(remat=True)
    params = init_params(plain, jax.random.PRNGKey(3))
    assert jax.tree_util.tree_structure(init_params(remat, jax.random.PRNGKey(3))) == jax.tree_util.tree_structure(params)
    loss_p, g_p = jax.jit(lambda p, b: loss_and_grads(plain, p, b))(params, batch)
    loss_r, g_r = jax.jit(lambda p, b: loss_and_grads(remat, p, b))(params, batch)
    np.testing.assert_allclose(float(loss_r), float(loss_p), rtol=1e-6)
    np.testing.assert_allclose(_flat(g_r), _flat(g_p), rtol=1e-5, atol=1e-7)


def test_memory_model_credits_remat_and_microbatches():
    cfg = _cfg().replace(width=512, lru_width=768, num_heads=8, depth=12, local_window=256)
    base = memory_per_device(cfg, 64, 1024)
    assert memory_per_device(cfg.replace(remat=True), 64, 1024)["activations"] < 0.5 * base["activations"]
    assert memory_per_device(cfg, 64, 1024, microbatches=4)["activations"] == pytest.approx(base["activations"] / 4)
