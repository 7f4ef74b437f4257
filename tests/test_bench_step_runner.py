"""The programs griffin-bench train times (experiments/benchmarks/step_runner.py): a compiled,
warmed-up training step that keeps its donated state from call to call, and the matmul probe.
No test looks at a time."""

from __future__ import annotations

import math

import jax.numpy as jnp
import pytest

from experiments.benchmarks.step_runner import StepRunner, matmul_probe
from griffin_core import counting
from griffin_core.config import ModelConfig


@pytest.fixture(scope="module")
def runner():
    cfg = ModelConfig(family="griffin", vocab_size=32, width=32, depth=3, num_heads=2, lru_width=32,
                      num_gate_blocks=4, local_window=8)
    return StepRunner(cfg, batch=2, length=16, seed=0)


def test_step_runner_compiles_warms_up_and_steps(runner):
    assert runner.compile_s > 0 and runner.temp_bytes >= 0
    assert runner.steps == 1 and runner.first_loss == runner.losses[0] and math.isfinite(runner.first_loss)
    steps, losses = int(runner.state.step), len(runner.losses)
    assert steps >= 1  # the warm-up step
    metrics = runner()  # runner.steps optimiser steps on the donated state
    assert int(runner.state.step) == steps + 1 and math.isfinite(float(metrics["loss"]))
    runner.run(3)
    assert int(runner.state.step) == steps + 4 and len(runner.losses) == losses + 2


def test_step_runner_figures(runner):
    assert runner.tokens_per_step == 2 * 16
    assert runner.flops_per_step == pytest.approx(
        counting.training_flops_per_token(runner.cfg, 16, "exact") * 2 * 16)


def test_calibrate_sets_steps_per_call(runner):
    assert runner.calibrate(0.0) == 1 and runner.steps == 1
    assert runner.calibrate(1e-3) >= 1


def test_matmul_probe_multiplies_and_counts_2n3():
    call, flops = matmul_probe(8)
    assert flops == 2 * 8**3
    out = call()
    assert out.shape == (8, 8) and out.dtype == jnp.float32
