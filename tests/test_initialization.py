"""Initial parameter statistics follow the reference code's rules."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from griffin_core.config import ModelConfig
from griffin_core.model import init_params


@pytest.fixture(scope="module")
def params():
    cfg = ModelConfig(family="griffin", vocab_size=512, width=128, depth=6, num_heads=4, lru_width=256,
                      num_gate_blocks=16)
    return cfg, jax.tree_util.tree_map(np.asarray, init_params(cfg, jax.random.PRNGKey(0)))


def std(a):
    return float(np.std(a))


def test_dense_embedding_and_final_layers(params):
    cfg, p = params
    rec, attn = p["block_0"]["temporal"], p["block_2"]["temporal"]
    assert std(p["embedding"]) == pytest.approx(1 / math.sqrt(cfg.width), rel=0.05)
    assert std(rec["linear_x"]["kernel"]) == pytest.approx(1 / math.sqrt(cfg.width), rel=0.05)
    assert std(attn["proj_q"]["kernel"]) == pytest.approx(1 / math.sqrt(cfg.width), rel=0.05)
    final = math.sqrt(2 / cfg.depth)
    assert std(rec["linear_out"]["kernel"]) == pytest.approx(final / math.sqrt(cfg.lru_width), rel=0.05)
    assert std(attn["proj_final"]["kernel"]) == pytest.approx(final / math.sqrt(cfg.width), rel=0.05)
    assert std(p["block_0"]["mlp"]["down"]["kernel"]) == pytest.approx(final / math.sqrt(cfg.mlp_width), rel=0.05)
    assert std(rec["conv_1d"]["w"]) == pytest.approx(math.sqrt(0.01 / cfg.conv_width), rel=0.1)
    assert not np.any(rec["linear_x"]["bias"]) and not np.any(p["final_norm"]["scale"])


def test_gate_fan_in_is_the_whole_layer(params):
    """Block-diagonal gates [16, 16, 16] use variance 1 / D_RNN, not 1 / (D_RNN / 16)."""
    cfg, p = params
    w = p["block_0"]["temporal"]["rg_lru"]["a_gate"]["w"]
    assert w.shape == (16, 16, 16)
    assert std(w) == pytest.approx(1 / math.sqrt(cfg.lru_width), rel=0.05)


@pytest.mark.parametrize("kind", ["ring", "uniform_ac"])
def test_lambda_init(kind):
    cfg = ModelConfig(family="hawk", vocab_size=8, width=8, depth=1, num_heads=1, lru_width=4096,
                      num_gate_blocks=16, lambda_init=kind)
    a_param = np.asarray(init_params(cfg, jax.random.PRNGKey(1))["block_0"]["temporal"]["rg_lru"]["a_param"], np.float64)
    a = np.exp(-np.log1p(np.exp(a_param)))  # a = sigmoid(Lambda) = exp(-softplus(a_param))
    if kind == "ring":  # a in [0.9, 0.999], a^2 uniform
        sample = a**2
        lo, hi = 0.9**2, 0.999**2
    else:  # a^c uniform in [0.9, 0.999]
        sample = a**cfg.lru_c
        lo, hi = 0.9, 0.999
    assert sample.min() >= lo - 1e-6 and sample.max() <= hi + 1e-6
    quartiles = np.quantile(sample, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(quartiles, lo + (hi - lo) * np.array([0.25, 0.5, 0.75]), atol=0.02 * (hi - lo))
