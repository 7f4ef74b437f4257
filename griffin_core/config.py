"""Model configuration: frozen dataclasses, importable without JAX.

A `ModelConfig` fully describes one network. Families (`mqa`, `hawk`, `griffin`) are presets of
the block pattern; sizes (see `sizes.py`) fill in the widths. Every cross-field rule is checked
in `ModelConfig.__post_init__`, so a bad config fails when it is built, with the field's name,
never deep inside JAX.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the field and what is allowed."""


class BlockType(str, enum.Enum):
    """Temporal-mixing block kinds. The MLP block that follows each is the same for all."""

    RECURRENT = "recurrent"
    ATTENTION = "attention"  # global multi-query attention
    LOCAL_ATTENTION = "local_attention"  # sliding-window multi-query attention
    MAMBA2 = "mamba2"  # the Mamba-2 (SSD) mixer (griffin_core.mamba2_block)


BLOCK_TYPES = tuple(b.value for b in BlockType)

# A family is the repeating pattern of temporal blocks: the paper's three, and Mamba-2 (its
# authors' stack of mixers without MLPs, and the mixer inside this project's residual block).
FAMILY_PATTERNS: dict[str, tuple[str, ...]] = {
    "mqa": ("attention",),
    "hawk": ("recurrent",),
    "griffin": ("recurrent", "recurrent", "local_attention"),
    "mamba2": ("mamba2",),
    "mamba2_mlp": ("mamba2",),
}
FAMILY_MLP_EXPANSION = {"mamba2": 0}
"""`mlp_expansion` of a family whose preset differs from the default 3 (0: no MLP block)."""
DEFAULT_MLP_EXPANSION = 3

FAMILY_FIELDS = ("block_pattern", "use_rope", "rope_fraction", "embed_scale", "logit_softcap", "lambda_init",
                 "mlp_expansion", "ssm_expand", "ssm_groups")
"""What a family preset sets (Hydra group `family`); a size row sets the widths."""
SSM_FIELDS = ("ssm_state", "ssm_head_dim", "ssm_expand", "ssm_groups", "ssm_chunk")
"""The Mamba-2 mixer's fields: they change nothing in a model without a 'mamba2' block, so they
are left out of such a model's run identity (the paper families' run ids predate them)."""
NUMERICS_FIELDS = ("dtype", "scan_impl", "scan_unroll", "attention_block_size", "remat", "scan_layers",
                   "ssm_chunk")
"""How a network computes rather than what it is (Hydra node `model`)."""
EXECUTION_FIELDS = ("remat", "scan_layers", "ssm_chunk")
"""Fields that change how a step is scheduled and stored, not what it computes (same logits
and gradients, tested): left out of a run's identity, so turning them on resumes the run."""
REMAT_POLICIES = ("none", "full", "dots")

SCAN_IMPLS = ("auto", "sequential", "associative", "chunked", "pallas", "pallas_fused")
LAMBDA_INITS = ("ring", "uniform_ac")
DTYPES = ("float32", "bfloat16")


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"model.{field}={value!r} is invalid: {allowed}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One Griffin-family network. Shapes: D = width, D_RNN = lru_width, H = num_heads."""

    family: str
    """Name of the block pattern's family: 'mqa', 'hawk', 'griffin', or 'custom'."""
    vocab_size: int
    """Vocabulary size V; the embedding matrix is [V, D] and is tied to the output logits."""
    width: int
    """Model width D (residual stream)."""
    depth: int
    """Number of residual blocks (each = temporal block + MLP block)."""
    num_heads: int
    """Query heads H of multi-query attention; head_dim = D / H. One shared key/value head."""
    lru_width: int
    """D_RNN, the width of the recurrent branch (about 4D/3 in the paper)."""
    block_pattern: tuple[str, ...] = ()
    """Temporal block kinds, repeated to fill `depth`; empty means the family's pattern."""
    mlp_expansion: int | None = None
    """M: the gated MLP's hidden width is M * D; 0: no MLP block (the Mamba-2 authors' stack).
    None: the family's (0 for 'mamba2', else 3)."""
    local_window: int = 1024
    """Local attention sees `local_window` + 1 keys: itself and the `local_window` before it."""
    conv_width: int = 4
    """Temporal width of the recurrent block's depthwise Conv1D."""
    num_gate_blocks: int = 16
    """Blocks of the RG-LRU's block-diagonal gate matrices (paper: 16; reference: one per head)."""
    rope_fraction: float = 0.5
    """Fraction of each head's dimensions rotated by RoPE (reference: the first half)."""
    rope_base: float = 10_000.0
    """RoPE maximum wavelength."""
    use_rope: bool = True
    """False gives attention with no positional information at all (the NoPE baseline)."""
    embed_scale: bool = False
    """Multiply embeddings by sqrt(D) rounded to bfloat16, whatever the compute dtype, as
    RecurrentGemma does (50.5 rather than 50.596 at D = 2560); the paper's models do not."""
    logit_softcap: float = 0.0
    """If > 0, logits = c * tanh(logits / c) (RecurrentGemma uses 30; off in the paper)."""
    lambda_init: str = "ring"
    """'ring': a in [0.9, 0.999] with a^2 uniform (reference code); 'uniform_ac': a^c uniform
    in [0.9, 0.999] (the paper's text)."""
    lru_c: float = 8.0
    """The constant c in a_t = sigmoid(Lambda)^(c r_t)."""
    sqrt_max_grad: float = 1000.0
    """Bound on d sqrt(1 - a^2) / d(1 - a^2), so bf16 training near a = 1 stays finite."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon; norms are computed in fp32 whatever the compute dtype."""
    dtype: str = "float32"
    """Compute dtype of matmuls and activations. Parameters, the scan and its state stay fp32."""
    param_dtype: str = "float32"
    """Storage dtype of parameters (the optimiser's master weights)."""
    scan_impl: str = "auto"
    """RG-LRU scan: 'sequential' (lax.scan, time-major), 'associative', 'chunked', 'pallas'
    (the TPU / GPU kernel; interpret mode on CPU), 'pallas_fused' (the kernel with the gates
    computed inside it, recomputed in the backward pass) or 'auto' (per platform, at lowering)."""
    scan_unroll: int = 0
    """Unroll of the sequential scan; 0 picks the device's tuned default (see scan.py)."""
    attention_block_size: int = 0
    """Query block of attention: each block attends only to the keys it can see (global: up to
    its end; local: its window too). 0: a quarter of the sequence, at most the window for
    local attention (griffin_core.attention_plan)."""
    remat: str = "none"
    """Rematerialisation of each residual block in the backward pass: 'none', 'full' (the
    memory of a step holds one residual stream per layer instead of every intermediate) or
    'dots' (matmul outputs kept, the rest recomputed). true/false read as 'full'/'none'."""
    scan_layers: bool = False
    """Run the residual blocks as a scan over repeats of the block pattern (the remainder
    unrolled): one compiled body, so deep models compile in seconds (paper presets)."""

    ssm_state: int = 128
    """Mamba-2: state size N per head (the authors' default 128; the CPU ladder's rows use 16)."""
    ssm_head_dim: int = 64
    """Mamba-2: head dimension P; the mixer has ssm_inner / P heads, each with a scalar decay."""
    ssm_expand: int = 2
    """Mamba-2: the mixer's inner width is ssm_expand * D (the authors' expand)."""
    ssm_groups: int = 1
    """Mamba-2: groups of heads sharing one B and C (the authors' ngroups)."""
    ssm_chunk: int = 16
    """Mamba-2: chunk length of the SSD algorithm (quadratic inside a chunk, a recurrence over
    chunk states). Changes the work, not the result (tested). 16 is the fastest on CPU
    (docs/benchmarks.md); the paper preset uses the authors' 256 for TPUs and GPUs."""

    def __post_init__(self) -> None:
        if self.mlp_expansion is None:
            object.__setattr__(self, "mlp_expansion", FAMILY_MLP_EXPANSION.get(self.family, DEFAULT_MLP_EXPANSION))
        if not self.block_pattern:
            if self.family not in FAMILY_PATTERNS:
                _fail("family", self.family, f"one of {sorted(FAMILY_PATTERNS)} (or give a block_pattern)")
            object.__setattr__(self, "block_pattern", FAMILY_PATTERNS[self.family])
        object.__setattr__(self, "block_pattern", tuple(str(b) for b in self.block_pattern))
        for name in ("vocab_size", "width", "depth", "num_heads", "lru_width", "conv_width", "num_gate_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(name, value, "a positive integer")
        if isinstance(self.mlp_expansion, bool) or not isinstance(self.mlp_expansion, int) or self.mlp_expansion < 0:
            _fail("mlp_expansion", self.mlp_expansion, "a non-negative integer (0: no MLP block)")
        if isinstance(self.local_window, bool) or not isinstance(self.local_window, int) or self.local_window < 1:
            _fail("local_window", self.local_window, "a positive integer (keys seen = window + 1)")
        for block in self.block_pattern:
            if block not in BLOCK_TYPES:
                _fail("block_pattern", self.block_pattern, f"block kinds from {list(BLOCK_TYPES)}")
        if self.has_ssm:
            self._check_ssm()
        if self.width % self.num_heads:
            _fail("num_heads", self.num_heads, f"must divide width={self.width}")
        if self.lru_width % self.num_gate_blocks:
            _fail("num_gate_blocks", self.num_gate_blocks, f"must divide lru_width={self.lru_width}")
        if self.family == "griffin" and not any(b in ("attention", "local_attention") for b in self.block_types):
            _fail("depth", self.depth,
                  f"griffin's pattern {list(self.block_pattern)} places no attention layer in {self.depth} blocks")
        if not 0.0 <= self.rope_fraction <= 1.0:
            _fail("rope_fraction", self.rope_fraction, "a number in [0, 1]")
        if self.rope_base <= 0:
            _fail("rope_base", self.rope_base, "a positive number")
        if self.lambda_init not in LAMBDA_INITS:
            _fail("lambda_init", self.lambda_init, f"one of {list(LAMBDA_INITS)}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in DTYPES:
                _fail(name, getattr(self, name), f"one of {list(DTYPES)}")
        legacy = {True: "full", False: "none", "true": "full", "false": "none"}
        remat = self.remat.lower() if isinstance(self.remat, str) else self.remat
        object.__setattr__(self, "remat", legacy.get(remat, remat))
        if self.remat not in REMAT_POLICIES:
            _fail("remat", self.remat, f"one of {list(REMAT_POLICIES)}")
        if not isinstance(self.scan_layers, bool):
            _fail("scan_layers", self.scan_layers, "true or false")
        if self.scan_impl not in SCAN_IMPLS:
            _fail("scan_impl", self.scan_impl, f"one of {list(SCAN_IMPLS)}")
        for name in ("scan_unroll", "attention_block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                _fail(name, value, "a non-negative integer (0 = automatic)")
        if self.logit_softcap < 0:
            _fail("logit_softcap", self.logit_softcap, "0 (off) or a positive cap")
        if self.lru_c <= 0 or self.sqrt_max_grad <= 0 or self.norm_eps <= 0:
            _fail("lru_c/sqrt_max_grad/norm_eps", (self.lru_c, self.sqrt_max_grad, self.norm_eps), "positive numbers")

    def _check_ssm(self) -> None:
        for name in ("ssm_state", "ssm_head_dim", "ssm_expand", "ssm_groups", "ssm_chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(name, value, "a positive integer")
        if self.ssm_inner % self.ssm_head_dim:
            _fail("ssm_head_dim", self.ssm_head_dim,
                  f"must divide the mixer's inner width ssm_expand * width = {self.ssm_inner}")
        if self.ssm_heads % self.ssm_groups:
            _fail("ssm_groups", self.ssm_groups, f"must divide the mixer's {self.ssm_heads} heads")

    @property
    def has_ssm(self) -> bool:
        return "mamba2" in self.block_pattern

    @property
    def ssm_inner(self) -> int:
        """The Mamba-2 mixer's inner width (d_inner): heads x head dimension."""
        return self.ssm_expand * self.width

    @property
    def ssm_heads(self) -> int:
        return self.ssm_inner // self.ssm_head_dim

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def rope_dims(self) -> int:
        """Rotated dimensions per head: an even number, rope_fraction of head_dim rounded down."""
        if not self.use_rope:
            return 0
        return int(self.head_dim * self.rope_fraction) // 2 * 2

    @property
    def block_types(self) -> tuple[str, ...]:
        """The temporal block kind of each of the `depth` layers."""
        pattern = self.block_pattern
        return tuple(pattern[i % len(pattern)] for i in range(self.depth))

    @property
    def mlp_width(self) -> int:
        return self.mlp_expansion * self.width


    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["block_pattern"] = list(self.block_pattern)
        return out

    def identity(self) -> dict[str, Any]:
        """`to_dict` without the fields that cannot change this model's results: the execution
        fields, and the Mamba-2 fields of a model without a Mamba-2 block."""
        drop = set(EXECUTION_FIELDS) | (set() if self.has_ssm else set(SSM_FIELDS))
        return {k: v for k, v in self.to_dict().items() if k not in drop}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model has no field(s) {unknown}; known fields: {sorted(known)}")
        data = dict(data)
        if "block_pattern" in data:
            data["block_pattern"] = tuple(data["block_pattern"])
        return cls(**data)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


__all__ = [
    "BLOCK_TYPES", "BlockType", "ConfigError", "EXECUTION_FIELDS", "FAMILY_FIELDS", "FAMILY_PATTERNS", "ModelConfig",
    "NUMERICS_FIELDS", "REMAT_POLICIES", "SSM_FIELDS",
    "ceil_div",
]
