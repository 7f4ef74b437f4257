"""Layers as a scan: the same network as the unrolled model (logits, gradients, init), every
remat policy, and checkpoint trees converted between the two layouts both ways."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from griffin_core.config import ConfigError, ModelConfig
from griffin_core.decode import generate
from griffin_core.layer_layout import scan_groups, to_layout
from griffin_core.model import Griffin, init_params, param_logical_names
from griffin_core.optim import make_optimizer
from griffin_core.optim_config import OptimSpec
from griffin_core.train_step import init_state, mean_loss

# Depth 5: one scanned group of Griffin's pattern of 3, then two unrolled blocks.
GRIFFIN = ModelConfig(family="griffin", vocab_size=32, width=16, depth=5, num_heads=2, lru_width=16,
                      num_gate_blocks=4, local_window=4)


def _batch(b=2, t=12):
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, 32, (b, t)), jnp.int32)
    pos = jnp.asarray(np.concatenate([np.arange(7), np.arange(t - 7)])[None].repeat(b, 0), jnp.int32)
    return {"tokens": tokens, "targets": jnp.roll(tokens, -1, 1), "segment_pos": pos,
            "loss_mask": jnp.ones((b, t), jnp.float32)}


def test_groups_and_remainder():
    assert scan_groups(GRIFFIN) == (1, 3)
    params = init_params(GRIFFIN.replace(scan_layers=True), jax.random.PRNGKey(0))
    assert sorted(k for k in params if k.startswith("block_")) == ["block_3", "block_4"]
    assert params["layers"]["block_0"]["temporal"]["rg_lru"]["a_param"].shape == (1, 16)
    names = param_logical_names(GRIFFIN.replace(scan_layers=True))
    assert names["layers"]["block_2"]["mlp"]["up_gelu"]["kernel"] == ("layers", "embed", "mlp")
    assert names["block_3"]["temporal"]["rg_lru"]["a_gate"]["w"] == ("rnn_block", "rnn_gate", None)


@pytest.mark.parametrize("family, depth, remat", [("griffin", 5, "none"), ("griffin", 5, "dots"), ("hawk", 3, "full"),
                                                  ("mqa", 2, "none")])
def test_scanned_model_equals_unrolled(family, depth, remat):
    cfg = GRIFFIN.replace(family=family, block_pattern=(), depth=depth)
    scanned = cfg.replace(scan_layers=True, remat=remat)
    params = init_params(cfg, jax.random.PRNGKey(1))
    stacked = init_params(scanned, jax.random.PRNGKey(1))
    # Same seed, same network, whatever the layout.
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(to_layout(stacked, cfg, False))):
        np.testing.assert_array_equal(a, b)
    batch = _batch()
    loss_a, grads_a = jax.jit(jax.value_and_grad(lambda p: mean_loss(cfg, p, batch)))(params)
    loss_b, grads_b = jax.jit(jax.value_and_grad(lambda p: mean_loss(scanned, p, batch)))(stacked)
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    grads_b = to_layout(grads_b, cfg, scanned=False)
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(grads_a), jax.tree_util.tree_leaves(grads_b)
    for (path, a), b in zip(flat_a, flat_b):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-7, err_msg=jax.tree_util.keystr(path))


def test_layouts_convert_both_ways_inside_an_optimizer_state():
    cfg = GRIFFIN.replace(depth=7)  # two groups and one left over
    optimizer = make_optimizer(OptimSpec(total_steps=10, lr=1e-3, warmup_steps=1))
    state = init_state(init_params(cfg, jax.random.PRNGKey(2)), optimizer)
    scanned = to_layout(state, cfg, scanned=True)
    assert "layers" in scanned.params and "layers" in scanned.opt_state[1][0].mu
    assert scanned.params["layers"]["block_1"]["temporal"]["linear_x"]["kernel"].shape == (2, 16, 16)
    back = to_layout(scanned, cfg, scanned=False)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(a, b)
    assert to_layout(back, cfg, scanned=False) is not None  # already unrolled: unchanged


def test_decoding_a_scanned_model_runs_the_unrolled_program():
    cfg = GRIFFIN.replace(scan_layers=True)
    params = init_params(cfg, jax.random.PRNGKey(3))
    prompts, lengths = jnp.ones((2, 6), jnp.int32), jnp.array([6, 3])
    a = generate(cfg, params, prompts, lengths, jax.random.PRNGKey(0), num_steps=4)
    b = generate(cfg.replace(scan_layers=False), to_layout(params, cfg, False), prompts, lengths,
                 jax.random.PRNGKey(0), num_steps=4)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="runs the unrolled layout"):
        Griffin(cfg).apply({"params": params}, prompts, lengths, 16, method=Griffin.prefill)


def test_remat_settings():
    assert GRIFFIN.replace(remat=True).remat == "full"
    assert GRIFFIN.replace(remat="False").remat == "none"
    with pytest.raises(ConfigError, match=r"model.remat='some' is invalid: one of \['none', 'full', 'dots'\]"):
        GRIFFIN.replace(remat="some")
