"""Each layer against a plain NumPy loop written from the paper's equations (reference_numpy)."""

from __future__ import annotations

import math

import jax
from flax.linen import unbox
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import reference_numpy as ref
from griffin_core.attention import AttentionBlock
from griffin_core.config import ModelConfig
from griffin_core.conv1d import Conv1D
from griffin_core.mlp import MLPBlock
from griffin_core.model import Griffin
from griffin_core.norms import RMSNorm
from griffin_core.recurrent_block import RecurrentBlock
from griffin_core.rglru import RGLRU

B, T = 2, 23
# Two packed documents in row 0 (a new one starts at t = 9), one document in row 1.
POS = np.stack([np.r_[np.arange(9), np.arange(T - 9)], np.arange(T)]).astype(np.int32)


def randomize(params, seed=0, scale=0.3):
    """Random values for every parameter (biases and norm scales included, so they are tested)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [scale * jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)])


def np_params(params):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)


def cfg(**kw):
    base = dict(family="griffin", vocab_size=50, width=16, depth=3, num_heads=2, lru_width=24,
                num_gate_blocks=4, local_window=5)
    base.update(kw)
    return ModelConfig(**base)


def x_input(width, seed=1):
    return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (B, T, width)), np.float32)


@pytest.mark.parametrize("impl", ["sequential", "associative"])
def test_rglru_matches_numpy(impl):
    x = x_input(24)
    mod = RGLRU(24, 4, scan_impl=impl)
    params = unbox(mod.init(jax.random.PRNGKey(0), x, POS))["params"]
    params = {**randomize(params), "a_param": params["a_param"]}  # keep the realistic decays
    y, _ = mod.apply({"params": params}, x, POS)
    np.testing.assert_allclose(np.asarray(y), ref.rglru(x, POS, np_params(params)), rtol=2e-5, atol=2e-5)


def test_conv1d_matches_numpy():
    x = x_input(24)
    mod = Conv1D(24, 4)
    params = randomize(unbox(mod.init(jax.random.PRNGKey(0), x, POS))["params"])
    y = mod.apply({"params": params}, x, POS)
    np.testing.assert_allclose(np.asarray(y), ref.conv1d(x, POS, params["w"], params["b"]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,block", [("attention", 0), ("attention", 5), ("attention", 23), ("attention", 40),
                                        ("local_attention", 0), ("local_attention", 2), ("local_attention", 3)])
def test_attention_matches_numpy(kind, block):
    """Global MQA in causal query blocks (a quarter of T = 23; 5, not dividing it; one block; a
    block longer than T), and local MQA in its blocked form (T = 23 > window + 1 = 6) with
    query blocks of the window, and smaller than it, not dividing T. Packed documents in POS."""
    c = cfg(attention_block_size=block, num_heads=2)
    x = x_input(16)
    mod = AttentionBlock(c, local=kind == "local_attention")
    params = randomize(unbox(mod.init(jax.random.PRNGKey(0), x, POS))["params"])
    y, _ = mod.apply({"params": params}, x, POS)
    expected = ref.mqa(x, POS, np_params(params), c.num_heads, c.rope_dims,
                       window=c.local_window if kind == "local_attention" else None)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=2e-5, atol=2e-5)


def test_local_attention_sees_window_plus_one_keys():
    """With window 5, query 10 attends to keys 5..10; key 4 has no influence, key 5 has."""
    c = cfg()
    x = x_input(16)
    pos = np.broadcast_to(np.arange(T), (B, T)).astype(np.int32)
    mod = AttentionBlock(c, local=True)
    params = randomize(unbox(mod.init(jax.random.PRNGKey(0), x, pos))["params"])
    f = lambda xx: mod.apply({"params": params}, xx, pos)[0][:, 10]  # noqa: E731
    base = f(x)
    for key, influences in ((4, False), (5, True)):
        xx = x.copy()
        xx[:, key] += 1.0
        changed = not np.allclose(np.asarray(f(xx)), np.asarray(base))
        assert changed == influences, key


def test_rope_fraction_and_nope():
    assert cfg().rope_dims == 4  # half of head_dim 8
    assert cfg(rope_fraction=1.0).rope_dims == 8
    assert cfg(use_rope=False).rope_dims == 0
    c = cfg(use_rope=False)
    x = x_input(16)
    mod = AttentionBlock(c, local=False)
    params = randomize(unbox(mod.init(jax.random.PRNGKey(0), x, POS))["params"])
    y, _ = mod.apply({"params": params}, x, POS)
    np.testing.assert_allclose(np.asarray(y), ref.mqa(x, POS, np_params(params), 2, 0), rtol=2e-5, atol=2e-5)


def test_recurrent_block_matches_numpy():
    c = cfg()
    x = x_input(16)
    mod = RecurrentBlock(c)
    params = unbox(mod.init(jax.random.PRNGKey(0), x, POS))["params"]
    a_param = params["rg_lru"]["a_param"]
    params = randomize(params)
    params["rg_lru"]["a_param"] = a_param
    y, _ = mod.apply({"params": params}, x, POS)
    np.testing.assert_allclose(np.asarray(y), ref.recurrent_block(x, POS, np_params(params)), rtol=2e-5, atol=2e-5)


def test_rmsnorm_and_mlp_match_numpy():
    x = x_input(16)
    norm = RMSNorm()
    p = randomize(unbox(norm.init(jax.random.PRNGKey(0), x))["params"])
    np.testing.assert_allclose(np.asarray(norm.apply({"params": p}, x)), ref.rmsnorm(x, p["scale"]), rtol=1e-5, atol=1e-5)
    mlp = MLPBlock(16, 48, 3)
    p = randomize(unbox(mlp.init(jax.random.PRNGKey(0), x))["params"])
    np.testing.assert_allclose(np.asarray(mlp.apply({"params": p}, x)), ref.mlp(x, np_params(p)), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("family", ["mqa", "hawk", "griffin"])
def test_whole_model_matches_numpy(family):
    """Embedding, pre-norm residual blocks, final norm and tied logits, composed in NumPy."""
    c = cfg(family=family, embed_scale=True, logit_softcap=5.0)
    tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(3), (B, T), 0, c.vocab_size), np.int32)
    model = Griffin(c)
    params = unbox(model.init(jax.random.PRNGKey(0), tokens, POS))["params"]
    keep = {k: v["temporal"]["rg_lru"]["a_param"] for k, v in params.items()
            if k.startswith("block_") and "rg_lru" in v["temporal"]}
    params = randomize(params)
    for k, a in keep.items():
        params[k]["temporal"]["rg_lru"]["a_param"] = a
    logits = np.asarray(model.apply({"params": params}, tokens, POS))
    p = np_params(params)
    x = p["embedding"][tokens] * ref.embed_scale(c.width)
    for i, kind in enumerate(c.block_types):
        bp = p[f"block_{i}"]
        h = ref.rmsnorm(x, bp["temporal_pre_norm"]["scale"])
        if kind == "recurrent":
            x = x + ref.recurrent_block(h, POS, bp["temporal"])
        else:
            window = c.local_window if kind == "local_attention" else None
            x = x + ref.mqa(h, POS, bp["temporal"], c.num_heads, c.rope_dims, window)
        x = x + ref.mlp(ref.rmsnorm(x, bp["channel_pre_norm"]["scale"]), bp["mlp"])
    expected = ref.rmsnorm(x, p["final_norm"]["scale"]) @ p["embedding"].T
    expected = 5.0 * np.tanh(expected / 5.0)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


EMBED_WIDTHS = [16, 24, 768, 1000, 2048, 2560, 3072, 5120]


def _embedded(width, dtype, table):
    """The model's scaled embeddings of every row of `table` (only the embedding is needed)."""
    c = ModelConfig(family="hawk", vocab_size=table.shape[0], width=width, depth=1, num_heads=1,
                    lru_width=4, num_gate_blocks=1, embed_scale=True, dtype=dtype)
    tokens = np.arange(table.shape[0], dtype=np.int32)[None]
    out = Griffin(c).apply({"params": {"embedding": table}}, tokens, method=lambda m, t: m._embed(t))
    return np.asarray(out[0].astype(jnp.float32))


@pytest.mark.parametrize("width", EMBED_WIDTHS)
def test_embed_scale_is_sqrt_width_rounded_to_bfloat16(width):
    """RecurrentGemma multiplies by sqrt(D) cast to bfloat16, in fp32 runs too; in bf16 runs the
    product is a bf16 multiply. Checked against ml_dtypes' bfloat16 in NumPy."""
    scale = ref.embed_scale(width)
    assert scale == float(ml_dtypes.bfloat16(math.sqrt(width)))  # no double rounding via fp32
    table = np.random.default_rng(width).normal(size=(5, width)).astype(np.float32)
    np.testing.assert_array_equal(_embedded(width, "float32", table), table * np.float32(scale))
    bf16 = ml_dtypes.bfloat16
    expected_bf16 = (table.astype(bf16) * np.asarray(scale, bf16)).astype(np.float32)
    np.testing.assert_array_equal(_embedded(width, "bfloat16", table), expected_bf16)


def test_embed_scale_at_2560_is_0_19_percent_below_sqrt_d():
    """The issue's numbers: at D = 2560 the multiplier is 50.5, 0.19% below sqrt(D) = 50.596."""
    assert ref.embed_scale(2560) == 50.5
    rel = (math.sqrt(2560) - 50.5) / math.sqrt(2560)
    assert round(100 * rel, 2) == 0.19
    table = np.random.default_rng(0).normal(size=(3, 2560)).astype(np.float32)
    got = _embedded(2560, "float32", table)
    np.testing.assert_allclose(got / (table * np.float32(math.sqrt(2560))), 1 - rel, rtol=1e-6)
