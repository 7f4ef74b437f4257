"""The two layouts of a model's residual blocks, and the conversion between them.

unrolled (`model.scan_layers=false`): one subtree per block, `block_0` ... `block_{depth-1}`.
scanned (`model.scan_layers=true`): the blocks that fill whole repeats of the block pattern
are stacked, `layers/block_j` holding [groups, ...] arrays for pattern position j (block i of
the unrolled layout is `layers/block_{i mod P}[i div P]`); the remainder keeps its unrolled
names `block_i`. Griffin's pattern (recurrent, recurrent, local attention) at depth 26: 8
groups of 3, then block_24 and block_25.

The conversion applies to any tree that holds parameter-shaped dicts (parameters, gradients,
the optimiser's moments), so a checkpoint written under one setting restores under the other.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from griffin_core.config import ModelConfig

SCAN_NAME = "layers"


def scan_groups(cfg: ModelConfig) -> tuple[int, int]:
    """(groups scanned, pattern length) of `cfg` when its layers are scanned."""
    period = len(cfg.block_pattern)
    return cfg.depth // period, period


def _is_param_dict(x: Any) -> bool:
    return isinstance(x, dict) and "embedding" in x


def is_scanned(params: dict) -> bool:
    return SCAN_NAME in params


def _stack(params: dict, cfg: ModelConfig) -> dict:
    groups, period = scan_groups(cfg)
    out = {k: v for k, v in params.items() if not k.startswith("block_")}
    stacked = {f"block_{j}": jax.tree_util.tree_map(lambda *xs: jnp.stack(xs),
                                                    *[params[f"block_{g * period + j}"] for g in range(groups)])
               for j in range(period)} if groups else {}
    if stacked:
        out[SCAN_NAME] = stacked
    out |= {f"block_{i}": params[f"block_{i}"] for i in range(groups * period, cfg.depth)}
    return out


def _unstack(params: dict, cfg: ModelConfig) -> dict:
    groups, period = scan_groups(cfg)
    out = {k: v for k, v in params.items() if k != SCAN_NAME}
    for j, tree in params.get(SCAN_NAME, {}).items():
        j = int(j.removeprefix("block_"))
        for g in range(groups):
            out[f"block_{g * period + j}"] = jax.tree_util.tree_map(lambda x, g=g: x[g], tree)
    return out


def to_layout(tree: Any, cfg: ModelConfig, scanned: bool) -> Any:
    """`tree` with every parameter dict in it in the scanned (True) or unrolled (False) layout
    of `cfg`; dicts already in that layout are returned as they are.

    Works on arrays and inside `jax.jit` (stacking and slicing)."""
    def convert(x):
        if not _is_param_dict(x) or is_scanned(x) == scanned:
            return x
        return _stack(x, cfg) if scanned else _unstack(x, cfg)
    return jax.tree_util.tree_map(convert, tree, is_leaf=_is_param_dict)


__all__ = ["SCAN_NAME", "is_scanned", "scan_groups", "to_layout"]
