"""Which (query, key) pairs attention computes at a given length: one plan, read by the model
(attention.py) and by the FLOP counter (counting, 'as_executed'), so that the count is of what
runs. Plain Python.

Causal attention never needs the keys after a query. Cut into query blocks, block [lo, hi)
needs the keys [0, hi) (global) or [lo - window, hi) (local): a few slices, each its own pair
of matmuls, skip the work above the diagonal (and, locally, before the window) that one dense
product would mask out. With 4 blocks global attention computes 62.5% of the dense T x T
logits, and Griffin's local attention at T = 2 x window 56% (on CPU: MQA's training step
about 20% faster, Griffin's 9%; docs/benchmarks.md). When a local sequence is long against
its window the slices would be many: then equal blocks with `ceil(window / block)` blocks of
history are batched into one product instead.
"""

from __future__ import annotations

import dataclasses

from griffin_core.config import ModelConfig, ceil_div

AUTO_BLOCKS = 4
"""Query blocks per sequence when `attention_block_size` is 0 (local: at most the window)."""
MAX_SLICES = 8
"""More query blocks than this (long local sequences) run as one batched product."""


@dataclasses.dataclass(frozen=True)
class AttentionPlan:
    """How one attention layer runs at length `length`.

    slices: (q_lo, q_hi, k_lo, k_hi) per query block, computed one by one; empty when the
    blocks are batched instead: `block` queries each against `(history + 1) * block` keys,
    the sequence padded up to a multiple of `block`."""

    length: int
    block: int
    slices: tuple[tuple[int, int, int, int], ...]
    history: int = 0

    @property
    def logits(self) -> int:
        """(query, key) pairs computed per sequence, padding included."""
        if self.slices:
            return sum((qh - ql) * (kh - kl) for ql, qh, kl, kh in self.slices)
        blocks = ceil_div(self.length, self.block)
        return blocks * self.block * (self.history + 1) * self.block


def attention_plan(cfg: ModelConfig, local: bool, length: int) -> AttentionPlan:
    """The plan of a global (local=False) or local attention layer of `cfg` at `length`."""
    t, window = length, cfg.local_window
    if t < 1:
        raise ValueError(f"length={length} must be positive")
    if local and t <= window + 1:  # the whole sequence fits in the window: one dense product
        return AttentionPlan(t, t, ((0, t, 0, t),))
    quarter = ceil_div(t, AUTO_BLOCKS)
    block = min(cfg.attention_block_size or (min(quarter, window) if local else quarter), t)
    if local and ceil_div(t, block) > MAX_SLICES:
        return AttentionPlan(t, block, (), history=ceil_div(window, block))
    slices = tuple((lo, min(lo + block, t), max(0, lo - window) if local else 0, min(lo + block, t))
                   for lo in range(0, t, block))
    return AttentionPlan(t, block, slices)
