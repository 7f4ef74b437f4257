"""Memory counts (griffin_core/counting/memory.py) by arithmetic and against JAX and XLA.

- parameters, optimiser state and their sharding add up, and decoding caches grow only for
  global attention;
- `decode_cache_bytes` equals the bytes `init_cache` allocates;
- XLA's temporary memory of a compiled training step grows ~4x from T = 2048 to 8192 for Hawk
  and Griffin and far more for MQA, and the activation estimate is within a factor of XLA's.

Shapes are tiny and every compiled program is built once per test session.
"""

from __future__ import annotations

import functools
import math

import pytest

from counting_helpers import FAMILIES, abstract_inputs, jax_modules, loss_fn, tiny
from griffin_core.config import ModelConfig
from griffin_core.counting import memory
from griffin_core.counting.params import count_params
from griffin_core.sizes import model_config


def test_memory_arithmetic():
    cfg = model_config("griffin", "1.3B", 256_000, param_dtype="bfloat16", dtype="bfloat16")
    n = count_params(cfg).total
    assert memory.param_bytes(cfg) == 2 * n
    assert memory.optimizer_bytes(cfg) == 12 * n  # two fp32 moments + fp32 master copy
    assert memory.optimizer_bytes(cfg.replace(param_dtype="float32")) == 8 * n
    one = memory.memory_per_device(cfg, batch=8, seq_len=2048)
    split = memory.memory_per_device(cfg, batch=8, seq_len=2048, sizes={"data": 2, "fsdp": 2, "tensor": 2},
                                     strategy="fsdp_tp")
    assert math.isclose(split["params"], one["params"] / 4)
    assert math.isclose(split["optimizer"], one["optimizer"] / 4)
    assert math.isclose(split["activations"], one["activations"] / 4)
    dp = memory.memory_per_device(cfg, batch=8, seq_len=2048, sizes={"data": 8}, strategy="dp")
    assert dp["params"] == one["params"] and math.isclose(dp["activations"], one["activations"] / 8)
    fsdp = memory.memory_per_device(cfg, batch=8, seq_len=2048, sizes={"fsdp": 8}, strategy="fsdp", microbatches=2)
    assert math.isclose(fsdp["params"], one["params"] / 8)
    assert math.isclose(fsdp["activations"], memory.activation_bytes(cfg, 1, 2048))
    assert math.isclose(one["total"], sum(v for k, v in one.items() if k != "total"))
    # Recurrent and local-attention caches do not grow with length; global ones do.
    assert memory.decode_cache_bytes(cfg, 4096) == memory.decode_cache_bytes(cfg, 128)
    mqa = cfg.replace(family="mqa", block_pattern=())
    assert memory.decode_cache_bytes(mqa, 4096) == 32 * memory.decode_cache_bytes(mqa, 128)


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_cache_bytes_match_init_cache(family):
    jax, _ = jax_modules()
    from griffin_core.model import init_cache

    cfg = tiny(family, dtype="bfloat16")
    cache = jax.eval_shape(lambda: init_cache(cfg, 1, 100))
    actual = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(cache))
    assert actual == memory.decode_cache_bytes(cfg, 100)


# ------------------------------------------------------------------------------------------
# Memory against XLA's memory analysis
# ------------------------------------------------------------------------------------------

MEM_SHORT, MEM_LONG = 2048, 8192


def _mem_cfg(family: str) -> ModelConfig:
    return ModelConfig(family=family, vocab_size=64, width=16, depth=3, num_heads=1, lru_width=24,
                       num_gate_blocks=4, local_window=64, ssm_state=16, ssm_head_dim=8, ssm_chunk=64)


@functools.cache
def _xla_temp_bytes(family: str, seq_len: int) -> int:
    """Temporary (activation and workspace) bytes of a compiled training step, batch 1.

    On CPU `memory_stats()` is empty; `compiled.memory_analysis()` reports the buffer assignment:
    arguments, outputs, aliases and temporaries. The temporaries are what grows with T."""
    jax, _ = jax_modules()
    cfg = _mem_cfg(family)
    compiled = jax.jit(jax.grad(loss_fn(cfg))).lower(*abstract_inputs(cfg, 1, seq_len)).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


@pytest.mark.parametrize("family", FAMILIES)
def test_training_memory_scaling_with_length(family):
    short, long = _xla_temp_bytes(family, MEM_SHORT), _xla_temp_bytes(family, MEM_LONG)
    ratio = long / short
    print(f"{family}: XLA temp bytes T={MEM_LONG} / T={MEM_SHORT} = {ratio:.2f}")
    if family == "mqa":
        assert ratio > 10  # quadratic: the T x T logits dominate (16 for them alone)
    else:
        assert 3.5 < ratio < 4.6  # linear
    cfg = _mem_cfg(family)
    for seq_len, xla in ((MEM_SHORT, short), (MEM_LONG, long)):
        estimate = memory.activation_bytes(cfg, 1, seq_len)
        assert 0.7 < xla / estimate < 1.5, (seq_len, xla, estimate)
