"""Parameter counts of the three families, block by block (notation: griffin_core.counting).

Kept apart from the FLOP and memory counts because both are built on it: '6N' FLOPs and the
bytes of parameters, gradients and optimiser state are multiples of `count_params`. Checked
leaf by leaf against `jax.eval_shape(init_params)` in tests/test_counting_params.py.
"""

from __future__ import annotations

import dataclasses

from griffin_core.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class ParamCount:
    total: int
    """All parameters; the embedding is tied to the output layer and counted once."""
    embedding: int
    """V * D."""

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


def temporal_block_params(cfg: ModelConfig, kind: str) -> int:
    """Parameters of one temporal-mixing block of `kind` (biases as in the reference code)."""
    d, r, hd = cfg.width, cfg.lru_width, cfg.head_dim
    if kind == "recurrent":
        branches = 2 * (d * r + r)  # linear_x, linear_y
        conv = cfg.conv_width * r + r
        gates = 2 * (r * r // cfg.num_gate_blocks + r)  # block-diagonal W_a, W_x with biases
        a_param = r
        out = r * d + d
        return branches + conv + gates + a_param + out
    if kind in ("attention", "local_attention"):
        return d * d + 2 * d * hd + d * d + d  # q, k, v without bias; output with bias
    if kind == "mamba2":
        i, bc, h = cfg.ssm_inner, 2 * cfg.ssm_groups * cfg.ssm_state, cfg.ssm_heads
        in_proj = d * (2 * i + bc + h)  # z, x, B and C, dt; no biases (the authors' default)
        conv = (cfg.conv_width + 1) * (i + bc)  # depthwise over x, B and C, with biases
        per_head = 3 * h  # A_log, dt_bias, D
        return in_proj + conv + per_head + i + i * d  # + the gated norm's gain, the output projection
    raise ValueError(f"unknown block kind {kind!r}")


def mlp_params(cfg: ModelConfig) -> int:
    """Parameters of one gated MLP: two up projections and the down projection, with biases
    (none when mlp_expansion = 0)."""
    d, m = cfg.width, cfg.mlp_width
    return 2 * (d * m + m) + m * d + d if m else 0


def residual_block_params(cfg: ModelConfig, kind: str) -> int:
    """One residual block: the temporal block, its pre-norm and, if the model has one, the MLP
    with its pre-norm."""
    mlp = mlp_params(cfg) + cfg.width if cfg.mlp_width else 0
    return temporal_block_params(cfg, kind) + cfg.width + mlp


def count_params(cfg: ModelConfig) -> ParamCount:
    """Parameters of the whole model: the embedding, each residual block (temporal block, MLP
    and its two RMSNorm scales) and the final RMSNorm."""
    d = cfg.width
    per_block = sum(residual_block_params(cfg, k) for k in cfg.block_types)
    embedding = cfg.vocab_size * d
    return ParamCount(total=embedding + per_block + d, embedding=embedding)
