"""Parameter counts (griffin_core/counting/params.py) against the leaves of
`jax.eval_shape(init_params)` for every family at every size row (paper rows at vocab 256,000,
CPU rows at 256)."""

from __future__ import annotations

import math

import pytest

from counting_helpers import FAMILIES, jax_modules, tiny
from griffin_core.counting.params import count_params, mlp_params, temporal_block_params
from griffin_core.counting.tables import CPU_VOCAB, PAPER_VOCAB
from griffin_core.sizes import ALL_SIZES, PAPER_SIZES, model_config


def test_blocks_add_up_to_the_model():
    cfg = tiny("griffin")
    n = count_params(cfg)
    blocks = sum(temporal_block_params(cfg, k) + mlp_params(cfg) + 2 * cfg.width for k in cfg.block_types)
    assert n.total == n.embedding + blocks + cfg.width  # plus the final norm
    assert n.embedding == cfg.vocab_size * cfg.width and n.non_embedding == n.total - n.embedding
    with pytest.raises(ValueError, match="block kind"):
        temporal_block_params(cfg, "mlp")


@pytest.mark.parametrize("family", FAMILIES)
def test_count_params_matches_eval_shape_at_every_size(family):
    """The model's own parameter tree, built abstractly (its layers as a scan, so a 93-layer
    row traces one pattern group: the same leaves, stacked)."""
    jax, jnp = jax_modules()
    from flax import linen as nn

    from griffin_core.model import Griffin

    def shapes_of(cfg):
        tokens = jnp.zeros((1, 1), jnp.int32)
        return jax.eval_shape(lambda: nn.unbox(Griffin(cfg).init(jax.random.PRNGKey(0), tokens, tokens)["params"]))

    mismatches = []
    for name in ALL_SIZES:
        vocab = PAPER_VOCAB if name in PAPER_SIZES else CPU_VOCAB
        cfg = model_config(family, name, vocab, scan_layers=True)
        shapes = shapes_of(cfg)
        leaves = jax.tree_util.tree_leaves(shapes)
        actual = sum(math.prod(leaf.shape) for leaf in leaves)
        embedding = math.prod(shapes["embedding"].shape)
        count = count_params(cfg)
        if (actual, embedding) != (count.total, count.embedding):
            mismatches.append((name, actual, count.total, embedding, count.embedding))
    assert not mismatches
