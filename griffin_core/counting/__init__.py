"""Parameter, FLOP and memory accounting in plain Python (no JAX, no NumPy), so the sweep
planner can size a 14B run on a laptop. Every formula is explained in docs/counting.md;
regenerate its tables with `python -m griffin_core.counting`.

One module per kind of count, each checked against JAX or XLA by the test named after it:
- `params`: parameters of each block and of the whole model (against `jax.eval_shape`);
- `flops`: FLOPs per token under the four conventions (against XLA's cost analysis);
- `memory`: bytes of parameters, optimiser state, activations and decoding caches (against
  XLA's memory analysis and the allocated caches);
- `tables`: the Markdown tables of docs/counting.md, printed by `python -m griffin_core.counting`.

The counters are re-exported here, so callers write `counting.count_params(cfg)`.

Notation (as in the paper): D = width, R = D_RNN (lru_width), M = mlp_expansion * D,
H = query heads, hd = head_dim = D / H (one shared key/value head), V = vocabulary,
W = conv_width, T = sequence length, w = local_window.
"""

from __future__ import annotations

from griffin_core.counting.flops import (
    CONVENTIONS,
    all_training_flops,
    flops_breakdown,
    flops_per_token,
    keys_per_query,
    training_flops,
    training_flops_per_token,
)
from griffin_core.counting.memory import (
    activation_bytes,
    activation_bytes_per_token,
    decode_cache_bytes,
    gradient_bytes,
    memory_per_device,
    optimizer_bytes,
    param_bytes,
)
from griffin_core.counting.params import ParamCount, count_params, mlp_params, temporal_block_params

__all__ = [
    "CONVENTIONS", "ParamCount", "activation_bytes", "activation_bytes_per_token", "all_training_flops",
    "count_params", "decode_cache_bytes", "flops_breakdown", "flops_per_token", "gradient_bytes",
    "keys_per_query", "memory_per_device", "mlp_params", "optimizer_bytes", "param_bytes",
    "temporal_block_params", "training_flops", "training_flops_per_token",
]
