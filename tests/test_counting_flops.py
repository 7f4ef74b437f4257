"""FLOP counts (griffin_core/counting/flops.py): the conventions against each other and against
XLA.

- '6N' and '6N_nonembed' are 2N per token forward, every breakdown sums to its total, and
  training is 3 x forward;
- keys per query: 'exact' equals a brute-force count of the causal (local) mask, 'as_executed'
  the padded blocks the code computes;
- the 'as_executed' count is within 5% of XLA's cost analysis of the compiled forward and
  forward + backward programs at a tiny shape (and Mamba-2 at the CPU ladder's cpu-30k, whose
  chunks are not padded, so XLA fuses its mixer differently), and the attention core alone
  matches XLA for the global, local-dense and local-blocked (padded) paths; so does the
  cumulative sum of the Mamba-2 SSD.

Shapes are small and every compiled program is built once per test session (compiled, never run).
"""

from __future__ import annotations

import functools
import math

import pytest

from counting_helpers import FAMILIES, abstract_inputs, jax_modules, loss_fn, tiny, xla_flops
from griffin_core.config import ModelConfig
from griffin_core.counting import flops
from griffin_core.counting.params import count_params
from griffin_core.sizes import model_config

# ------------------------------------------------------------------------------------------
# Plain Python: no JAX needed
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_6n_conventions_and_breakdown_sum(family):
    cfg = tiny(family)
    n = count_params(cfg)
    assert flops.flops_per_token(cfg, 64, "6N") == 2 * n.total
    assert flops.flops_per_token(cfg, 64, "6N_nonembed") == 2 * n.non_embedding
    assert flops.training_flops(cfg, 64, 1000, "6N") == 6 * n.total * 1000
    for conv in flops.CONVENTIONS:
        parts = flops.flops_breakdown(cfg, 64, conv)
        assert math.isclose(sum(parts.values()), flops.flops_per_token(cfg, 64, conv))
        forward_only = sum(parts.get(k, 0.0) for k in flops.FORWARD_ONLY_KEYS)
        # Only an as-executed Mamba-2 mixer has work a training step does not repeat.
        assert (forward_only > 0) == (family == "mamba2" and conv == "as_executed")
        assert math.isclose(flops.training_flops(cfg, 64, 10, conv),
                            30 * (flops.flops_per_token(cfg, 64, conv) - forward_only))
    all_flops = flops.all_training_flops(cfg, 64, 1e6)
    assert set(all_flops) == set(flops.CONVENTIONS)
    exact, executed = (flops.flops_per_token(cfg, 64, c) for c in ("exact", "as_executed"))
    if family == "hawk":  # no attention: the two conventions agree
        assert exact == executed
    else:
        assert exact < executed
    with pytest.raises(ValueError, match="convention"):
        flops.flops_per_token(cfg, 64, "kaplan")


def _brute_keys(t: int, window: int | None) -> float:
    """Mean number of keys a query may see: causal, and q - k <= window when local."""
    pairs = sum(1 for q in range(t) for k in range(q + 1) if window is None or q - k <= window)
    return pairs / t


@pytest.mark.parametrize("t", [1, 5, 9, 10, 33, 100])
def test_exact_keys_per_query_matches_the_mask(t):
    cfg = tiny("griffin", local_window=8)
    assert math.isclose(flops.keys_per_query(cfg, "attention", t, "exact"), _brute_keys(t, None))
    assert math.isclose(flops.keys_per_query(cfg, "local_attention", t, "exact"), _brute_keys(t, 8))


def test_as_executed_keys_per_query():
    cfg = tiny("griffin", local_window=8, attention_block_size=4)
    # Global, blocks of 4: block i (queries [4i, 4i + 4)) against keys [0, 4i + 4); T = 33.
    assert math.isclose(flops.keys_per_query(cfg, "attention", 33, "as_executed"),
                        (sum(4 * 4 * (i + 1) for i in range(8)) + 1 * 33) / 33)
    assert flops.keys_per_query(cfg, "local_attention", 9, "as_executed") == 9  # dense, T <= w + 1
    # T = 10 > w + 1, 3 slices of 4: keys [0, 4), [0, 8), [0, 10) (the window reaches back to 0).
    assert math.isclose(flops.keys_per_query(cfg, "local_attention", 10, "as_executed"), (16 + 32 + 20) / 10)
    # T = 64: 16 blocks > MAX_SLICES: batched, 4 queries against (ceil(8/4) + 1) * 4 = 12 keys.
    assert math.isclose(flops.keys_per_query(cfg, "local_attention", 64, "as_executed"), 16 * 4 * 12 / 64)
    auto = tiny("griffin", local_window=8)  # blocks of a quarter of T, at most the window
    assert math.isclose(flops.keys_per_query(auto, "attention", 32, "as_executed"), 8 * (8 + 16 + 24 + 32) / 32)


# ------------------------------------------------------------------------------------------
# FLOPs against XLA's cost analysis
# ------------------------------------------------------------------------------------------

# Matmuls dominate at D = 64 while the attention core is still a visible share (T = 64), so
# 'as_executed' must be within 5% and 'exact' visibly is not for MQA. The model is the normal
# (rolled) one, not a fully unrolled scan: see docs/counting.md, "Checking against XLA".
# The tiny Mamba-2 pads its last chunk (Q = 24), which changes how XLA fuses the mixer, so
# Mamba-2 is also checked at a CPU-ladder row, where elementwise work is 30% of the forward.
FLOP_BATCH, FLOP_LEN = 2, 64
LADDER_CASES = [("mamba2", "cpu-30k", 256)]


def _flop_config(family: str, size: str) -> ModelConfig:
    return tiny(family) if size == "tiny" else model_config(family, size, 256)


@functools.cache
def _xla_model_flops(family: str, size: str, seq_len: int) -> tuple[float, float]:
    """XLA's FLOPs of the compiled forward (loss) and forward + backward (grad) programs."""
    jax, _ = jax_modules()
    cfg = _flop_config(family, size)
    loss = loss_fn(cfg)
    args = abstract_inputs(cfg, FLOP_BATCH, seq_len)
    fwd = xla_flops(jax.jit(loss).lower(*args).compile().cost_analysis())
    train = xla_flops(jax.jit(jax.grad(loss)).lower(*args).compile().cost_analysis())
    return fwd, train


@pytest.mark.parametrize("family,size,seq_len", [(f, "tiny", FLOP_LEN) for f in FAMILIES] + LADDER_CASES)
def test_as_executed_flops_match_xla(family, size, seq_len):
    cfg = _flop_config(family, size)
    tokens = FLOP_BATCH * seq_len
    fwd, train = _xla_model_flops(family, size, seq_len)
    fwd_ratio = flops.flops_per_token(cfg, seq_len, "as_executed") * tokens / fwd
    train_ratio = flops.training_flops(cfg, seq_len, tokens, "as_executed") / train
    print(f"{family} {size}: as_executed / XLA forward {fwd_ratio:.4f}, forward+backward {train_ratio:.4f}")
    assert abs(fwd_ratio - 1) < 0.05
    assert abs(train_ratio - 1) < 0.05
    if family == "mqa":  # the test can tell: XLA runs what 'as_executed' counts, not 'exact'
        exact_ratio = flops.training_flops(cfg, seq_len, tokens, "exact") / train
        assert abs(train_ratio - 1) < abs(exact_ratio - 1) / 2


@pytest.mark.parametrize("n", [4, 16, 24, 64, 256])
def test_cumsum_flops_match_xla(n):
    """The SSD's running sum of dt A: below and above XLA:CPU's reduce-window rewrite (16)."""
    jax, jnp = jax_modules()
    rows = 64
    arg = jax.ShapeDtypeStruct((rows, n, 4), jnp.float32)
    xla = xla_flops(jax.jit(lambda v: jnp.cumsum(v, axis=1)).lower(arg).compile().cost_analysis())
    assert abs(flops.cumsum_flops(n) * rows * 4 / xla - 1) < 0.01, (flops.cumsum_flops(n) * rows * 4, xla)


@pytest.mark.parametrize("kind,seq_len", [("attention", 32), ("local_attention", 9),
                                          ("local_attention", 21), ("local_attention", 64),
                                          ("local_attention", 131)])
def test_attention_core_flops_match_xla(kind, seq_len):
    """Global (causal slices), local with T <= w + 1 (dense), local slices, local batched blocks
    with padding: what attention.py runs is what the counter counts."""
    jax, jnp = jax_modules()
    from griffin_core.attention import causal_attention, segment_ids
    from griffin_core.attention_plan import attention_plan

    batch, heads, head_dim, window = 2, 2, 32, 8
    cfg = ModelConfig(family="custom", block_pattern=(kind,), vocab_size=8, width=heads * head_dim,
                      depth=1, num_heads=heads, lru_width=16, num_gate_blocks=4, local_window=window)

    def core(q, k, v, segment_pos):
        local = kind == "local_attention"
        return causal_attention(q, k, v, segment_ids(segment_pos), attention_plan(cfg, local, seq_len),
                                window if local else None)

    f32 = jnp.float32
    args = (jax.ShapeDtypeStruct((batch, seq_len, heads, head_dim), f32),
            jax.ShapeDtypeStruct((batch, seq_len, head_dim), f32),
            jax.ShapeDtypeStruct((batch, seq_len, head_dim), f32),
            jax.ShapeDtypeStruct((batch, seq_len), jnp.int32))
    xla = xla_flops(jax.jit(core).lower(*args).compile().cost_analysis())
    parts = flops.flops_breakdown(cfg, seq_len, "as_executed")
    ours = (parts["attention_logits"] + parts["attention_values"] + parts["attention_softmax"]) * batch * seq_len
    assert abs(ours / xla - 1) < 0.05, (ours, xla)
