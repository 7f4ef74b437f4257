"""Bytes of a training step and of a decoding cache (notation: griffin_core.counting).

The sweep planner rejects runs that do not fit a device (`memory_per_device`) and the
inference experiments size their batches (`param_bytes`, `decode_cache_bytes`) without
compiling anything, so these are estimates in plain Python. The activation estimate follows
what autodiff saves for this implementation; tests/test_counting_memory.py checks it against
XLA's memory analysis, and the decoding cache against the allocated caches.
"""

from __future__ import annotations

import math

from griffin_core.config import ModelConfig
from griffin_core.counting.flops import keys_per_query
from griffin_core.counting.params import count_params, residual_block_params

DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
FP32 = 4


def param_bytes(cfg: ModelConfig) -> int:
    """Parameters as stored (param_dtype)."""
    return count_params(cfg).total * DTYPE_BYTES[cfg.param_dtype]


def gradient_bytes(cfg: ModelConfig) -> int:
    """One gradient per parameter, in the parameter dtype."""
    return param_bytes(cfg)


def optimizer_bytes(cfg: ModelConfig) -> int:
    """AdamW state: first and second moments in fp32 (8 bytes per parameter), plus an fp32
    master copy (4 bytes) when the parameters are stored in bf16."""
    per_param = 2 * FP32 + (FP32 if DTYPE_BYTES[cfg.param_dtype] < FP32 else 0)
    return count_params(cfg).total * per_param


ACTIVATION_KEYS = ("residual_and_norms", "mlp", "recurrent", "attention_linear", "attention_scores", "ssm",
                   "output", "backward_workspace")
"""Components of `activation_bytes_per_token`: the first six per layer, the last two once."""
PER_LAYER_KEYS = ACTIVATION_KEYS[:6]


def ssm_bytes_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """One Mamba-2 mixer's saved activations per token (see `activation_bytes_per_token`)."""
    c = DTYPE_BYTES[cfg.dtype]
    i, h, n, p = cfg.ssm_inner, cfg.ssm_heads, cfg.ssm_state, cfg.ssm_head_dim
    q = max(1, min(cfg.ssm_chunk, seq_len))
    conv = i + 2 * cfg.ssm_groups * n
    compute = (cfg.conv_width + 4) * conv * c + i * c
    fp32 = 3 * h + 5 * h * q + 2 * h * n + 10 * i + 2 * h * p * n / q
    return compute + fp32 * FP32 + 2 * q


def activation_bytes_per_token(cfg: ModelConfig, seq_len: int) -> dict[str, float]:
    """What a forward + backward pass holds at its peak, per token, without rematerialisation.

    An estimate by component, following what autodiff saves for this implementation and what
    XLA keeps of it (c = bytes of the compute dtype; 4 where the code computes in fp32).
    Summed over the layers:
    - residual_and_norms: the residual stream entering each of the two pre-norms and each
      norm's output (4 D c; 2 D c in a model without MLPs);
    - mlp: both up branches, the GeLU output and the product (4 M c);
    - recurrent: in compute dtype linear_y's output, its tanh and GeLU, linear_x's output, the
      W Conv1D tap products, the Conv1D output and the gated product ((6 + W) R c); in fp32 the
      time-major copy of the Conv1D output, both gates before and after the sigmoid, log a, a,
      exp(2 log a), 1 - a^2, the sqrt multiplier, b, h and its batch-major copy (13 R * 4);
    - attention_linear: q and k before and after RoPE, v and the attention output
      ((3 D + 3 hd) c);
    - attention_scores: per computed logit (as_executed keys per query, H heads) the fp32
      softmax output and its compute-dtype copy for the value product (H (4 + c)), plus the
      boolean mask (1 byte per query/key pair, shared by the heads);
    - ssm (Mamba-2, inner width I, heads H, state N, chunk Q): in compute dtype z, and for the
      Conv1D's I + 2 G N channels its input, W tap products, output, sigmoid and SiLU
      ((W + 4) (I + 2GN) c + I c); in fp32 dt and its softplus (3 H), per head the chunk's
      [Q, Q] decay, mask select, exponential, scores and their product (5 H Q), B and C per
      head (2 H N), about ten I-wide arrays of the SSD and the gated norm (10 I) and the
      chunk states (2 H P N / Q); and the two [Q]-wide masks (2 Q bytes).
    Once:
    - output: the embedding output and the final norm's output (2 D c), the fp32 logits,
      log-probabilities and the logits' gradient (3 V * 4);
    - backward_workspace: cotangents live while one layer is differentiated: the residual
      stream's (2 D * 4) and, for the widest attention layer, the gradients of its
      probabilities and logits (2 H keys * 4), or a Mamba-2 layer's of its chunk products
      (2 H Q * 4).
    """
    c = DTYPE_BYTES[cfg.dtype]
    d, r, m, hd, h = cfg.width, cfg.lru_width, cfg.mlp_width, cfg.head_dim, cfg.num_heads
    out = dict.fromkeys(ACTIVATION_KEYS, 0.0)
    widest_scores = 0.0
    halves = 2 if m else 1
    for kind in cfg.block_types:
        out["residual_and_norms"] += halves * 2 * d * c
        out["mlp"] += 4 * m * c
        if kind == "recurrent":
            out["recurrent"] += (6 + cfg.conv_width) * r * c + 13 * r * FP32
        elif kind == "mamba2":
            out["ssm"] += ssm_bytes_per_token(cfg, seq_len)
            widest_scores = max(widest_scores, 2 * cfg.ssm_heads * min(cfg.ssm_chunk, seq_len) * FP32)
        else:
            keys = keys_per_query(cfg, kind, seq_len, "as_executed")
            out["attention_linear"] += (3 * d + 3 * hd) * c
            out["attention_scores"] += keys * (h * (FP32 + c) + 1)
            widest_scores = max(widest_scores, 2 * h * keys * FP32)
    out["output"] += 2 * d * c + 3 * cfg.vocab_size * FP32
    out["backward_workspace"] += 2 * d * FP32 + widest_scores
    return out


def activation_bytes(cfg: ModelConfig, batch: int, seq_len: int) -> float:
    """Activation bytes kept for the backward pass of one [batch, seq_len] step. With
    `cfg.remat == 'full'` each layer keeps only its input (D, compute dtype) and one layer at a
    time is recomputed in full: the layers' terms are replaced by depth * D c + the largest
    layer. 'dots' (matmul outputs kept) is counted as no remat: an upper bound."""
    per_token = activation_bytes_per_token(cfg, seq_len)
    if cfg.remat == "full":
        layers = sum(per_token[k] for k in PER_LAYER_KEYS)
        one_layer = max(sum(activation_bytes_per_token(cfg.replace(family="custom", depth=1, block_pattern=(kind,), remat="none"),
                                                       seq_len)[k] for k in PER_LAYER_KEYS)
                        for kind in set(cfg.block_types))
        kept = cfg.depth * cfg.width * DTYPE_BYTES[cfg.dtype] + one_layer
        return (sum(per_token.values()) - layers + kept) * batch * seq_len
    return sum(per_token.values()) * batch * seq_len


def decode_cache_bytes(cfg: ModelConfig, length: int) -> int:
    """Decoding cache of one sequence that has reached `length` tokens, over all layers.

    recurrent: the RG-LRU state (R, fp32) and the last W - 1 Conv1D inputs (compute dtype);
    mamba2: the SSD state (H P N = I N, fp32) and the last W - 1 inputs of its Conv1D (I + 2 G N);
    local attention: a ring buffer of `local_window` keys and values (2 w hd, compute dtype),
    whatever the length; global attention: keys and values of every position (2 length hd).
    """
    c = DTYPE_BYTES[cfg.dtype]
    r, hd = cfg.lru_width, cfg.head_dim
    total = 0
    for kind in cfg.block_types:
        if kind == "recurrent":
            total += r * FP32 + (cfg.conv_width - 1) * r * c
        elif kind == "mamba2":
            conv = cfg.ssm_inner + 2 * cfg.ssm_groups * cfg.ssm_state
            total += cfg.ssm_inner * cfg.ssm_state * FP32 + (cfg.conv_width - 1) * conv * c
        elif kind == "local_attention":
            total += 2 * cfg.local_window * hd * c
        else:
            total += 2 * length * hd * c
    return total


# What XLA keeps in a rematerialised step (model.remat='full', the paper presets), beyond
# the formula above: read from the paper rows' sharded steps compiled on simulated meshes and
# from compiles that vary one thing (depth, vocabulary, microbatches) at a time (docs/launching.md).
LOGIT_BYTES = 8
"""Per token and vocabulary entry: the fp32 logits and their fp32 gradient (the compute-dtype
copies fuse away)."""
EMBEDDING_BYTES = 10
"""Per vocabulary entry and width unit: the embedding table gathered from its FSDP shards in
fp32, its compute-dtype copy, and its fp32 gradient before the reduce-scatter."""
GATHERED_PARAM_BYTES = 6
"""Per parameter of the remat unit being differentiated: gathered in fp32, and its compute-dtype copy."""
SAVED_FP32_COPY = {False: 0.58, True: 1.0}
"""The saved input of each block is kept in the compute dtype, and XLA:CPU converts the saved
stack to fp32 for the backward pass: a fraction of a full fp32 copy when the scan body is one
block (measured 4.33 bytes per width unit in bf16), all of it when the body holds several
(Griffin's groups of three: 6)."""


def _remat_unit(cfg: ModelConfig) -> tuple[str, ...]:
    """The blocks differentiated together: the scan body (the block pattern) with the layer
    scan, else the largest single block."""
    if cfg.scan_layers:
        return tuple(cfg.block_pattern)
    return (max(set(cfg.block_types), key=lambda kind: residual_block_params(cfg, kind)),)


def remat_step_bytes(cfg: ModelConfig, tokens: int, seq_len: int, tensor: int = 1) -> dict[str, float]:
    """Activation bytes per device of a `remat='full'` training step over `tokens` tokens per
    device (one microbatch), with the vocabulary, heads, MLP and recurrent widths split
    `tensor` ways (fsdp_tp). Three parts:
    - embedding: the gathered table, its copy and its gradient (`EMBEDDING_BYTES` V D / tensor);
    - gathered_layer: the parameters of the remat unit being differentiated (`GATHERED_PARAM_BYTES`);
    - activations: per token, every block's saved input (c + its fp32 copy, `SAVED_FP32_COPY`)
      plus the larger of the logits with their gradient (`LOGIT_BYTES` V / tensor) and the
      recomputed remat unit's activations (`activation_bytes_per_token` of its blocks: the
      residual stream, norms and attention projections whole, the rest split by `tensor`):
      XLA differentiates the loss before the layers, so the two peaks do not meet.
    """
    c = DTYPE_BYTES[cfg.dtype]
    unit = _remat_unit(cfg)
    saved = c + FP32 * SAVED_FP32_COPY[len(unit) > 1] if c < FP32 else c

    def block(kind: str) -> float:
        a = activation_bytes_per_token(cfg.replace(family="custom", depth=1, block_pattern=(kind,), remat="none"),
                                       seq_len)
        whole = a["residual_and_norms"] + a["attention_linear"]
        return whole + (a["mlp"] + a["recurrent"] + a["attention_scores"] + a["ssm"]) / tensor

    per_token = (saved * cfg.depth * cfg.width
                 + max(LOGIT_BYTES * cfg.vocab_size / tensor, sum(block(kind) for kind in unit)))
    return {"embedding": EMBEDDING_BYTES * cfg.vocab_size * cfg.width / tensor,
            "gathered_layer": GATHERED_PARAM_BYTES * sum(residual_block_params(cfg, k) for k in unit) / tensor,
            "activations": per_token * tokens}


def memory_per_device(cfg: ModelConfig, batch: int, seq_len: int, sizes: dict[str, int] | None = None,
                      strategy: str = "dp", microbatches: int = 1) -> dict[str, float]:
    """Bytes per device of one training step, planned before anything compiles (the sweep
    planner's `--compile` reads the compiled figure from XLA beside it: within 15% of it for
    every run of `scaling_paper`, docs/launching.md).

    `batch` is the global batch (sequences per step), `sizes` the mesh (data, fsdp, tensor).
    Parameters, gradients and optimiser state are divided by the devices the strategy shards
    them over (dp: none; fsdp: fsdp; fsdp_tp: fsdp x tensor), as if every array divided evenly;
    activations are those of one microbatch of the device's rows (data x fsdp split the batch).
    With remat 'full' they follow `remat_step_bytes` (tensor parallelism split what it splits);
    otherwise `activation_bytes`, which does not count the tensor split (errs on the safe
    side). Fragmentation, the compiled code and the data pipeline are not included: keep a
    margin (docs/counting.md).
    """
    sizes = {"data": 1, "fsdp": 1, "tensor": 1, **(sizes or {})}
    if min(sizes.values()) < 1 or microbatches < 1:
        raise ValueError(f"mesh sizes {sizes} and microbatches={microbatches} must be >= 1")
    shards = {"dp": 1, "fsdp": sizes["fsdp"], "fsdp_tp": sizes["fsdp"] * sizes["tensor"]}[strategy]
    params = param_bytes(cfg) / shards
    grads = gradient_bytes(cfg) / shards
    opt = optimizer_bytes(cfg) / shards
    rows = math.ceil(batch / (sizes["data"] * sizes["fsdp"] * microbatches))
    if cfg.remat == "full":
        tensor = sizes["tensor"] if strategy == "fsdp_tp" else 1
        acts = remat_step_bytes(cfg, rows * seq_len, seq_len, tensor)
    else:
        acts = {"embedding": 0.0, "gathered_layer": 0.0, "activations": activation_bytes(cfg, rows, seq_len)}
    out = {"params": params, "gradients": grads, "optimizer": opt, **acts}
    return {**out, "total": sum(out.values())}
