"""Model sizes shared by the three families, as in the paper: one row fixes D, D_RNN, depth and
heads, and MQA, Hawk and Griffin are built from the same row (so their parameter counts differ).

`PAPER_SIZES` is the paper's Table 2. `CPU_SIZES` is a ladder shaped like it (head_dim fixed,
D_RNN about 4D/3, M = 3, depth >= 3 so Griffin has an attention layer) for studies on a laptop.
Plain Python: the sweep planner sizes runs without importing JAX.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from griffin_core.config import FAMILY_PATTERNS, ConfigError, ModelConfig
from griffin_core.counting.params import count_params, residual_block_params


@dataclasses.dataclass(frozen=True)
class SizeSpec:
    """One row of a size table."""

    name: str
    """Row label. For paper rows it is Hawk's non-embedding count, rounded."""
    width: int
    """D."""
    lru_width: int
    """D_RNN."""
    depth: int
    """Residual blocks."""
    num_heads: int
    """Query heads (head_dim = D / heads)."""
    num_gate_blocks: int = 16
    """Blocks of the RG-LRU gates (16 in the paper; smaller widths use fewer)."""
    local_window: int = 1024
    """Griffin's local-attention window for this row."""
    paper_tokens: int = 0
    """Training tokens the paper used for this row (0 where it gives none)."""
    ssm_state: int = 128
    """Mamba-2 state size N (the authors' default; 16 on the CPU ladder)."""
    ssm_head_dim: int = 64
    """Mamba-2 head dimension P (the authors' default; 8 on the CPU ladder)."""


PAPER_SIZES: dict[str, SizeSpec] = {
    s.name: s
    for s in (
        SizeSpec("100M", 768, 1024, 12, 6, paper_tokens=1_900_000_000),
        SizeSpec("200M", 1024, 1536, 12, 8, paper_tokens=3_900_000_000),
        SizeSpec("400M", 1536, 2048, 12, 12, paper_tokens=7_800_000_000),
        SizeSpec("1.3B", 2048, 2560, 24, 16, paper_tokens=25_000_000_000),
        SizeSpec("3B", 3072, 4096, 24, 24, paper_tokens=60_000_000_000),
        SizeSpec("7B", 4096, 5632, 32, 32, paper_tokens=132_500_000_000),
        SizeSpec("14B", 5120, 8192, 40, 40, paper_tokens=300_000_000_000),
    )
}

# CPU ladder: head_dim 16 (12 at the smallest width), D_RNN about 4D/3 and divisible by the
# gate blocks, M = 3, depth >= 3, local window 128 (training length 256 keeps the paper's
# window/length ratio of 1/2). Labels give Hawk's total parameter count at the byte vocabulary
# (256), which the CPU studies use; MQA is about 0.85x and Griffin about 0.97x of it.
# Mamba-2 on the ladder: head dimension 8 and state 16 (the two smallest rows 8 and 10, so that
# a whole number of layers lands within 5% of Hawk's non-embedding parameters).
_CPU_SSM = dict(ssm_state=16, ssm_head_dim=8)
CPU_SIZES: dict[str, SizeSpec] = {
    s.name: s
    for s in (
        SizeSpec("cpu-30k", 24, 32, 3, 2, num_gate_blocks=4, local_window=128, ssm_state=8, ssm_head_dim=8),
        SizeSpec("cpu-50k", 32, 44, 3, 2, num_gate_blocks=4, local_window=128, ssm_state=10, ssm_head_dim=8),
        SizeSpec("cpu-80k", 32, 44, 5, 2, num_gate_blocks=4, local_window=128, **_CPU_SSM),
        SizeSpec("cpu-140k", 48, 64, 4, 3, num_gate_blocks=4, local_window=128, **_CPU_SSM),
        SizeSpec("cpu-190k", 64, 88, 3, 4, num_gate_blocks=8, local_window=128, **_CPU_SSM),
        SizeSpec("cpu-300k", 64, 88, 5, 4, num_gate_blocks=8, local_window=128, **_CPU_SSM),
        SizeSpec("cpu-530k", 96, 128, 4, 6, num_gate_blocks=8, local_window=128, **_CPU_SSM),
        SizeSpec("cpu-780k", 96, 128, 6, 6, num_gate_blocks=8, local_window=128, **_CPU_SSM),
        SizeSpec("cpu-1.4m", 128, 168, 6, 8, num_gate_blocks=8, local_window=128, **_CPU_SSM),
    )
}

# The paper's Fig 6 models (synthetic tasks): 5 residual blocks of width 64, D_RNN about 4D/3,
# head_dim 16. Griffin's pattern (r, r, a) over 5 blocks puts its one local-attention layer
# third. The window is set by the task preset (512 for selective copying, 128 for induction).
TASK_SIZES: dict[str, SizeSpec] = {
    s.name: s
    for s in (
        SizeSpec("task-5x64", 64, 88, 5, 4, num_gate_blocks=8, local_window=128, **_CPU_SSM),
    )
}

ALL_SIZES: dict[str, SizeSpec] = {**PAPER_SIZES, **CPU_SIZES, **TASK_SIZES}


def get_size(name: str) -> SizeSpec:
    try:
        return ALL_SIZES[name]
    except KeyError:
        raise ConfigError(f"size={name!r} is unknown; known sizes: {list(ALL_SIZES)}") from None


MATCHED_DEPTH_FAMILIES = ("mamba2",)
"""Families whose layers cost so differently from the row's (Mamba-2's authors' stack has no
MLP) that the row's depth is replaced by the one matching Hawk's non-embedding parameters."""


def matched_depth(cfg: ModelConfig) -> int:
    """The depth at which `cfg`'s model has the non-embedding parameters of Hawk at the same
    widths and depth (the paper matches models by parameters; Mamba-2 gets about 2x layers)."""
    hawk = ModelConfig(family="hawk", vocab_size=cfg.vocab_size, width=cfg.width, depth=cfg.depth,
                       num_heads=cfg.num_heads, lru_width=cfg.lru_width, num_gate_blocks=cfg.num_gate_blocks)
    target = count_params(hawk).non_embedding - cfg.width  # the final norm is shared
    per_layer = sum(residual_block_params(cfg, kind) for kind in cfg.block_pattern) / len(cfg.block_pattern)
    return max(1, round(target / per_layer))


def model_config(family: str, size: str | SizeSpec, vocab_size: int, **overrides: Any) -> ModelConfig:
    """The `family` network at the size row `size` (a name or a SizeSpec). A family in
    `MATCHED_DEPTH_FAMILIES` gets the depth matching Hawk's parameters unless `depth` is given."""
    if family not in FAMILY_PATTERNS and "block_pattern" not in overrides:
        raise ConfigError(f"family={family!r} is unknown; known families: {sorted(FAMILY_PATTERNS)}")
    spec = get_size(size) if isinstance(size, str) else size
    fields: dict[str, Any] = dict(
        family=family,
        vocab_size=vocab_size,
        width=spec.width,
        depth=spec.depth,
        num_heads=spec.num_heads,
        lru_width=spec.lru_width,
        num_gate_blocks=spec.num_gate_blocks,
        local_window=spec.local_window,
        ssm_state=spec.ssm_state,
        ssm_head_dim=spec.ssm_head_dim,
    )
    fields.update(overrides)
    cfg = ModelConfig(**fields)
    if family in MATCHED_DEPTH_FAMILIES and "depth" not in overrides:
        cfg = cfg.replace(depth=matched_depth(cfg))
    return cfg
