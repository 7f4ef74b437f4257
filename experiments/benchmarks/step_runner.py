"""The programs `griffin-bench train` times: one model's compiled training step (`StepRunner`)
and a square matmul (`matmul_probe`) whose speed in the same round tells how fast this process
could multiply at that moment.

Apart from the benchmark's ladder and reporting because the paper's training-speed
measurement (experiments/paper/train_speed.py) times the same step object: both must time
one and the same program, compiled once, with the state donated as in training.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from griffin_core import counting
from griffin_core.config import ModelConfig
from griffin_core.model import init_params
from griffin_core.optim import learning_rate_schedule, make_optimizer
from griffin_core.optim_config import OptimSpec
from griffin_core.train_step import init_state, train_step


class StepRunner:
    """A compiled train step of `cfg` on a fixed random batch, holding its (donated) state.

    Construction compiles the step (`compile_s`, and XLA's temporary bytes `temp_bytes`) with
    `compiler_options` if given (e.g. a lower XLA:CPU optimisation level for smoke runs whose
    timings do not matter) and runs one warm-up step. `__call__` runs `steps` optimiser steps
    (1 until `calibrate`) and blocks until the last is done; every call appends the last step's
    loss to `losses`."""

    def __init__(self, cfg: ModelConfig, batch: int, length: int, seed: int = 0,
                 compiler_options: dict[str, Any] | None = None) -> None:
        self.cfg, self.batch, self.length = cfg, batch, length
        spec = OptimSpec(lr=1e-3, total_steps=1000, warmup_steps=10)  # the update's cost is what counts
        optimizer = make_optimizer(spec)
        self.state = init_state(init_params(cfg, jax.random.PRNGKey(seed)), optimizer)
        tokens = jax.random.randint(jax.random.PRNGKey(seed + 1), (batch, length + 1), 0, cfg.vocab_size)
        self.data = {"tokens": tokens[:, :-1], "targets": tokens[:, 1:],
                     "segment_pos": jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length)),
                     "loss_mask": jnp.ones((batch, length), jnp.float32)}
        step = jax.jit(functools.partial(train_step, cfg, optimizer, learning_rate_schedule(spec)),
                       donate_argnums=0)
        t0 = time.perf_counter()
        self.step = step.lower(self.state, self.data).compile(compiler_options)
        self.compile_s = time.perf_counter() - t0
        memory = self.step.memory_analysis()
        self.temp_bytes = int(getattr(memory, "temp_size_in_bytes", 0) or 0)
        self.steps = 1
        self.losses: list[float] = []
        self.run(1)  # warm-up: the first call also settles the allocator
        self.first_loss = self.losses[0]

    def run(self, steps: int) -> Any:
        """Run `steps` optimiser steps, block until done and record the last loss; return its metrics."""
        metrics = None
        for _ in range(steps):
            self.state, metrics = self.step(self.state, self.data)
        jax.block_until_ready((self.state, metrics))
        self.losses.append(float(metrics["loss"]))
        return metrics

    def __call__(self) -> Any:
        return self.run(self.steps)

    def calibrate(self, min_seconds: float) -> int:
        """Steps per call so that one call lasts at least `min_seconds`."""
        t0 = time.perf_counter()
        self.run(1)
        one = max(time.perf_counter() - t0, 1e-6)
        self.steps = max(1, math.ceil(min_seconds / one))
        return self.steps

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.length

    @property
    def flops_per_step(self) -> float:
        return counting.training_flops_per_token(self.cfg, self.length, "exact") * self.tokens_per_step


def matmul_probe(n: int) -> tuple[Callable[[], Any], float]:
    """A jitted n x n fp32 matmul (compiled and warmed up) and its FLOPs, 2 n^3."""
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (n, n), jnp.float32)
    y = jax.random.normal(ky, (n, n), jnp.float32)
    fn = jax.jit(jnp.matmul)
    jax.block_until_ready(fn(x, y))
    return (lambda: jax.block_until_ready(fn(x, y))), 2.0 * n**3

