"""The optimiser's settings, plain Python (the sweep planner and the Hydra schema read them
without JAX). `OptimSettings` is what a user configures, with every default written once (the
Hydra group `optim` is derived from it); `OptimSpec` is one run's resolved optimiser, its
AdamW fields defaulting to the same values."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class OptimSettings:
    """AdamW with linear warmup and cosine decay, and the per-size learning-rate rule."""

    name: str = "adamw"
    """Only AdamW (optax) is provided."""
    lr: float | None = None
    """Peak learning rate; None = the per-size rule lr_ref * (width_ref / D) ** lr_exponent."""
    lr_ref: float = 1.2e-3
    """Per-size rule: the learning rate at width_ref."""
    width_ref: int = 768
    """Per-size rule: the reference width."""
    lr_exponent: float = 0.5
    """Per-size rule: lr scales as width ** -lr_exponent."""
    lr_multiplier: float = 1.0
    """Multiplies the peak learning rate (given or from the rule): learning-rate sweeps."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.95
    """AdamW beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.1
    """Decoupled weight decay (not applied to biases, norm scales or Lambda)."""
    warmup_fraction: float = 0.02
    """Linear warmup over this fraction of the steps (at least warmup_min_steps)."""
    warmup_min_steps: int = 10
    """Lower bound of the warmup."""
    min_lr_ratio: float = 0.1
    """Cosine decay to this fraction of the peak at the run's last step."""
    clip_norm: float = 1.0
    """Global gradient-norm clipping (0 = off)."""


ADAMW_FIELDS = ("beta1", "beta2", "eps", "weight_decay", "min_lr_ratio", "clip_norm")
"""The settings a resolved OptimSpec carries as they are (the rest resolve to lr and warmup)."""

_DEFAULTS = OptimSettings()


@dataclasses.dataclass(frozen=True)
class OptimSpec:
    """One run's optimiser: the peak lr and warmup resolved for its width and step count."""

    lr: float
    total_steps: int
    warmup_steps: int
    beta1: float = _DEFAULTS.beta1
    beta2: float = _DEFAULTS.beta2
    eps: float = _DEFAULTS.eps
    weight_decay: float = _DEFAULTS.weight_decay
    min_lr_ratio: float = _DEFAULTS.min_lr_ratio
    clip_norm: float = _DEFAULTS.clip_norm
