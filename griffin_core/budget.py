"""Budget rules: how many tokens a run trains on, its batch, steps and learning rate.
Plain Python (no JAX): the sweep planner sizes every run of a grid before launching any.

Token budget rules (`BudgetSpec.rule`):
- row_tokens_per_param: value x the size row's Hawk non-embedding count. As in the paper, the
  three families of one row share one token budget (so MQA sees more tokens per parameter).
- tokens_per_param: value x this model's own total parameter count (Chinchilla's N).
- paper_tokens: the row's published token count (Table 2).
- tokens: a fixed number of tokens.
- flops: a training-FLOP budget under a named convention; tokens = value / FLOPs per token.
- steps: a fixed number of optimiser steps.

Batch rule (when no batch size is given): the largest power-of-two number of sequences that
still gives at least `min_steps` steps and at most `max_batch_tokens` tokens per step. Small
runs get small batches (enough optimiser steps); large runs hit the token cap.

Learning-rate rule (when no lr is given): lr = lr_ref * (width_ref / D) ** lr_exponent,
i.e. by default 1.2e-3 at D = 768, scaled as 1/sqrt(D) (about 8.5e-3 at D = 24, 4.6e-4 at
D = 5120); the lr_sweep_cpu experiment checks it.
"""

from __future__ import annotations

import dataclasses
import math

from griffin_core import counting
from griffin_core.config import ConfigError, ModelConfig
from griffin_core.sizes import SizeSpec, model_config

STEPS_RULE_BATCH = 8  # sequences per step for a 'steps' budget with no batch size given
MAX_STEPS = 2**31 - 1
"""The most optimiser steps a run may take: the train state counts steps in int32."""
BUDGET_RULES = ("row_tokens_per_param", "tokens_per_param", "paper_tokens", "tokens", "flops", "steps")


@dataclasses.dataclass(frozen=True)
class BudgetSpec:
    rule: str = "row_tokens_per_param"
    value: float = 20.0
    flop_convention: str = "exact"
    label: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in BUDGET_RULES:
            raise ConfigError(f"trainer.budget.rule={self.rule!r} is unknown; known rules: {list(BUDGET_RULES)}")
        if self.rule != "paper_tokens" and not self.value > 0:
            raise ConfigError(f"trainer.budget.value={self.value!r} must be positive")
        if self.rule != "paper_tokens" and not math.isfinite(self.value):
            raise ConfigError(f"trainer.budget.value={self.value!r} must be finite")
        if self.flop_convention not in counting.CONVENTIONS:
            raise ConfigError(f"trainer.budget.flop_convention={self.flop_convention!r} is unknown; "
                              f"known conventions: {list(counting.CONVENTIONS)}")

    def default_label(self) -> str:
        """Short label for run ids: '20tpr', '20tpp', 'paper', '1e+06tok', '1e+15F', '300st'."""
        if self.label:
            return self.label
        v = self.value
        short = f"{v:g}" if v < 1e5 else f"{v:.2g}".replace("+", "")
        return {"row_tokens_per_param": f"{short}tpr", "tokens_per_param": f"{short}tpp",
                "paper_tokens": "paper", "tokens": f"{short}tok", "flops": f"{short}F",
                "steps": f"{short}st"}[self.rule]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """What a run will do: tokens, batch, steps, learning rate and warmup."""

    tokens: int
    batch_size: int
    seq_len: int
    steps: int
    lr: float
    warmup_steps: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


def budget_tokens(budget: BudgetSpec, cfg: ModelConfig, row: SizeSpec, seq_len: int,
                  batch_tokens: int | None = None) -> float:
    """Tokens the budget buys (for 'steps', `batch_tokens` must be known)."""
    if budget.rule == "row_tokens_per_param":
        hawk = model_config("hawk", row, cfg.vocab_size)
        return budget.value * counting.count_params(hawk).non_embedding
    if budget.rule == "tokens_per_param":
        return budget.value * counting.count_params(cfg).total
    if budget.rule == "paper_tokens":
        if not row.paper_tokens:
            raise ConfigError(f"trainer.budget.rule=paper_tokens: size {row.name!r} has no published token count")
        return float(row.paper_tokens)
    if budget.rule == "tokens":
        return budget.value
    if budget.rule == "flops":
        return budget.value / counting.training_flops_per_token(cfg, seq_len, budget.flop_convention)
    assert batch_tokens is not None
    return budget.value * batch_tokens


def rule_batch_size(tokens: float, seq_len: int, min_steps: int, max_batch_tokens: int) -> int:
    """Largest power of two b with tokens / (b T) >= min_steps and b T <= max_batch_tokens."""
    by_steps = tokens / (seq_len * max(min_steps, 1))
    by_cap = max_batch_tokens / seq_len
    limit = max(1.0, min(by_steps, by_cap))
    return 2 ** int(math.floor(math.log2(limit)))


def rule_lr(width: int, lr_ref: float, width_ref: int, exponent: float) -> float:
    return lr_ref * (width_ref / width) ** exponent


def check_steps(budget: BudgetSpec, steps: float) -> None:
    """ConfigError naming trainer.budget.value when the budget buys more steps than a run can
    count (MAX_STEPS), or a 'steps' budget less than one step."""
    if not steps <= MAX_STEPS:  # also inf: tokens x parameters can overflow a float
        raise ConfigError(f"trainer.budget.value={budget.value!r} ({budget.rule}) gives {steps:.3g} steps; "
                          f"a run takes at most {MAX_STEPS:,} (2**31-1, its int32 step counter)")
    if budget.rule == "steps" and steps < 1:
        raise ConfigError(f"trainer.budget.value={budget.value!r} (steps) is less than one step")


def make_schedule(budget: BudgetSpec, cfg: ModelConfig, row: SizeSpec, seq_len: int, *,
                  batch_size: int | None, min_steps: int, max_batch_tokens: int, lr: float | None,
                  lr_ref: float, width_ref: int, lr_exponent: float, warmup_fraction: float,
                  warmup_min_steps: int, lr_multiplier: float = 1.0) -> Schedule:
    if budget.rule == "steps":
        batch = batch_size or STEPS_RULE_BATCH
        exact = budget.value
    else:
        tokens = budget_tokens(budget, cfg, row, seq_len)
        batch = batch_size or rule_batch_size(tokens, seq_len, min_steps, max_batch_tokens)
        exact = tokens / (batch * seq_len)
    check_steps(budget, exact)
    steps = int(exact) if budget.rule == "steps" else max(1, math.ceil(exact))
    peak = lr_multiplier * (lr if lr is not None else rule_lr(cfg.width, lr_ref, width_ref, lr_exponent))
    warmup = min(max(warmup_min_steps, round(warmup_fraction * steps)), max(steps // 2, 1))
    return Schedule(tokens=steps * batch * seq_len, batch_size=batch, seq_len=seq_len, steps=steps,
                    lr=peak, warmup_steps=warmup)
