"""`scan_impl=auto` exported from this CPU for TPU and CUDA: one program per platform set, and
each platform's branch holds that platform's Pallas kernel (Mosaic's custom call on TPU,
Triton's on CUDA), not a fallback; the CPU branch runs here and equals the unexported step."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from griffin_core.config import ModelConfig
from griffin_core.decode import generate
from griffin_core.model import init_params
from griffin_core.optim import learning_rate_schedule, make_optimizer
from griffin_core.optim_config import OptimSpec
from griffin_core.train_step import init_state, train_step

CFG = ModelConfig(family="griffin", vocab_size=32, width=16, depth=3, num_heads=2, lru_width=16, num_gate_blocks=4,
                  local_window=4, scan_impl="auto")
TRITON = "__gpu$xla.gpu.triton"
MOSAIC = "tpu_custom_call"
# Triton's custom call carries no serialisation-compatibility promise: allowed explicitly.
CHECKS = [export.DisabledSafetyCheck.custom_call(TRITON)]


def _calls(exported, target: str) -> int:
    """How many times the program calls `target` (each kernel call is one custom call)."""
    return exported.mlir_module().count(f"custom_call @{target}")


RGLRU_LAYERS = CFG.block_types.count("recurrent")


def _batch():
    tokens = jnp.arange(2 * 12, dtype=jnp.int32).reshape(2, 12) % 32
    return {"tokens": tokens, "targets": jnp.roll(tokens, -1, 1),
            "segment_pos": jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), (2, 12)),
            "loss_mask": jnp.ones((2, 12), jnp.float32)}


def test_train_step_exports_each_platforms_kernel():
    optim = OptimSpec(lr=1e-3, total_steps=10, warmup_steps=1)
    optimizer = make_optimizer(optim)
    step = jax.jit(functools.partial(train_step, CFG, optimizer, learning_rate_schedule(optim)))
    state = init_state(init_params(CFG, jax.random.PRNGKey(0)), optimizer)
    batch = _batch()
    # Every RG-LRU layer's forward and backward scan is the kernel: no fallback either way.
    assert _calls(export.export(step, platforms=["tpu"], disabled_checks=CHECKS)(state, batch), MOSAIC) == 2 * RGLRU_LAYERS
    assert _calls(export.export(step, platforms=["cuda"], disabled_checks=CHECKS)(state, batch), TRITON) == 2 * RGLRU_LAYERS
    both = export.export(step, platforms=["cpu", "tpu", "cuda"], disabled_checks=CHECKS)(state, batch)
    assert _calls(both, MOSAIC) == _calls(both, TRITON) == 2 * RGLRU_LAYERS
    # The CPU branch of the same exported program: the measured-best scan, bitwise the jitted step.
    (_, metrics), (_, expected) = both.call(state, batch), step(state, batch)
    np.testing.assert_array_equal(metrics["loss"], expected["loss"])


def test_decode_program_exports_each_platforms_kernel():
    """Decoding: the prompt's prefill runs the scan (a decode step's update is elementwise)."""
    params = init_params(CFG, jax.random.PRNGKey(0))
    prompts, lengths = jnp.ones((2, 8), jnp.int32), jnp.array([8, 5], jnp.int32)
    decode = jax.jit(lambda p, t, n, k: generate(CFG, p, t, n, k, num_steps=4))
    exported = export.export(decode, platforms=["cpu", "tpu", "cuda"], disabled_checks=CHECKS)(
        params, prompts, lengths, jax.random.PRNGKey(1))
    assert _calls(exported, MOSAIC) == _calls(exported, TRITON) == RGLRU_LAYERS  # each layer's prefill scan
    np.testing.assert_array_equal(exported.call(params, prompts, lengths, jax.random.PRNGKey(1)),
                                  decode(params, prompts, lengths, jax.random.PRNGKey(1)))


def test_fused_kernel_exports_forward_and_backward_for_each_platform():
    """`scan_impl=pallas_fused`: the train step carries the fused forward and backward kernels
    for TPU (Mosaic) and CUDA (Triton), the decode program the forward one; no bare scan."""
    cfg = CFG.replace(scan_impl="pallas_fused")
    optim = OptimSpec(lr=1e-3, total_steps=10, warmup_steps=1)
    optimizer = make_optimizer(optim)
    step = jax.jit(functools.partial(train_step, cfg, optimizer, learning_rate_schedule(optim)))
    params = init_params(cfg, jax.random.PRNGKey(0))
    state, batch = init_state(params, optimizer), _batch()
    decode = jax.jit(lambda p, t, n, k: generate(cfg, p, t, n, k, num_steps=2))
    decode_args = (params, jnp.ones((2, 8), jnp.int32), jnp.array([8, 5], jnp.int32), jax.random.PRNGKey(1))
    for platform, target, suffix in (("tpu", MOSAIC, "tpu"), ("cuda", TRITON, "gpu")):
        text = export.export(step, platforms=[platform], disabled_checks=CHECKS)(state, batch).mlir_module()
        assert target in _targets_of(text)
        for kernel in ("rglru_fused_forward", "rglru_fused_backward"):
            assert f"{kernel}_{suffix}" in text, (platform, kernel)
        assert "rglru_scan" not in text
        decode_text = export.export(decode, platforms=[platform], disabled_checks=CHECKS)(*decode_args).mlir_module()
        assert target in _targets_of(decode_text) and f"rglru_fused_forward_{suffix}" in decode_text


def _targets_of(text: str) -> set[str]:
    return set(re.findall(r"custom_call @([\w$.]+)", text))
