"""Parameter, FLOP and memory accounting in plain Python (no JAX, no NumPy), so the sweep
planner can size a 14B run on a laptop. Checked against `jax.eval_shape`, XLA's cost analysis
and XLA's memory analysis in tests/test_counting.py. Every formula is explained in
docs/counting.md; regenerate its tables with `python -m griffin_core.counting`.

Notation (as in the paper): D = width, R = D_RNN (lru_width), M = mlp_expansion * D,
H = query heads, hd = head_dim = D / H (one shared key/value head), V = vocabulary,
W = conv_width, T = sequence length, w = local_window.

FLOP conventions (`CONVENTIONS`), all FLOPs *per token*:
- '6N': 2N forward (6N for training) with N = all parameters, the embedding included
  (Chinchilla's rule).
- '6N_nonembed': the same with non-embedding parameters (Kaplan's rule).
- 'exact': operation by operation, what an ideal implementation must compute: causal
  attention computes only the logits it keeps, elementwise work at fixed per-element counts.
- 'as_executed': what our compiled program computes: global attention computes the full T x T
  logits, local attention computes padded query blocks against their key blocks; the rest as
  in 'exact'.
Backward = 2 x forward under every convention, so training = 3 x forward.
"""

from __future__ import annotations

import dataclasses
import math

from griffin_core.config import ModelConfig, ceil_div
from griffin_core.sizes import CPU_SIZES, PAPER_SIZES, model_config

# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ParamCount:
    total: int
    """All parameters; the embedding is tied to the output layer and counted once."""
    embedding: int
    """V * D."""

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


def temporal_block_params(cfg: ModelConfig, kind: str) -> int:
    """Parameters of one temporal-mixing block of `kind` (biases as in the reference code)."""
    d, r, hd = cfg.width, cfg.lru_width, cfg.head_dim
    if kind == "recurrent":
        branches = 2 * (d * r + r)  # linear_x, linear_y
        conv = cfg.conv_width * r + r
        gates = 2 * (r * r // cfg.num_gate_blocks + r)  # block-diagonal W_a, W_x with biases
        a_param = r
        out = r * d + d
        return branches + conv + gates + a_param + out
    if kind in ("attention", "local_attention"):
        return d * d + 2 * d * hd + d * d + d  # q, k, v without bias; output with bias
    raise ValueError(f"unknown block kind {kind!r}")


def mlp_params(cfg: ModelConfig) -> int:
    d, m = cfg.width, cfg.mlp_width
    return 2 * (d * m + m) + m * d + d


def count_params(cfg: ModelConfig) -> ParamCount:
    d = cfg.width
    per_block = sum(temporal_block_params(cfg, k) + mlp_params(cfg) + 2 * d for k in cfg.block_types)
    embedding = cfg.vocab_size * d
    return ParamCount(total=embedding + per_block + d, embedding=embedding)


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------

CONVENTIONS = ("6N", "6N_nonembed", "exact", "as_executed")

BACKWARD_TO_FORWARD = 2.0
"""Backward FLOPs per forward FLOP (two matmuls per forward matmul: input and weight grads)."""

# Elementwise work, in FLOPs per element, counting one FLOP per primitive operation (an add, a
# multiply, a compare, a select, one step of a reduction, and also one per transcendental such
# as exp, tanh, sqrt, logistic). docs/counting.md lists the operations behind each number.
RMSNORM_PER_ELEMENT = 4
"""square, sum-reduce, multiply by 1/rms, multiply by the (1 + scale) gain."""
GELU_PER_ELEMENT = 9
"""tanh approximation: x*x*x (2), *0.044715, +x, *sqrt(2/pi), tanh, +1, *0.5, *x."""
SOFTMAX_PER_LOGIT = 6
"""logits * hd^-0.5, then softmax: max-reduce, subtract, exp, sum-reduce, divide."""
MASK_SELECT_PER_LOGIT = 1
"""as_executed only: where(mask, logit, -inf) on every computed logit of every head."""
MASK_PER_PAIR = {"attention": 5, "local_attention": 8}
"""as_executed only: building the [Tq, Tk] mask once per query/key pair (shared by the heads):
k <= q, k >= 0, same segment, two ands; local adds q - k, <= window and an and."""
ROPE_PER_ROTATED_DIM = 3
"""x1*cos - x2*sin (or x2*cos + x1*sin): two multiplies and one add per rotated output."""
ROPE_PER_FREQUENCY = 3
"""position * inverse frequency, sin, cos: once per token and frequency (rope_dims / 2)."""
SIGMOID = 4
"""1 / (1 + exp(-x)): negate, exp, add, divide (XLA expands the logistic function so)."""
RGLRU_GATES_PER_ELEMENT = 2 * SIGMOID + 11
"""two sigmoids (2 x 4); log_a = (-c * r) * softplus(a_param) (2); a = exp (1); 1 - exp(2 log_a) (3);
sqrt (1); the two document-start selects (2); sqrt(...) * i * x (2). The biases are counted with
the gate matmuls; softplus(a_param) is per channel, not per token."""
SCAN_PER_ELEMENT = 2
"""h_t = a_t * h_{t-1} + b_t: one multiply and one add."""
CROSS_ENTROPY_PER_LOGIT = 5
"""log-softmax over V: max-reduce, subtract, exp, sum-reduce, subtract log-sum-exp."""


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r} is unknown; known conventions: {list(CONVENTIONS)}")


def keys_per_query(cfg: ModelConfig, kind: str, seq_len: int, convention: str) -> float:
    """Average number of (query, key) logits computed per query token at length `seq_len`.

    exact: global attention is causal, query t sees t + 1 keys, mean (T + 1) / 2; local attention
    sees min(t + 1, w + 1) keys. as_executed: global computes every key (T); local computes, for
    T > w + 1, blocks of Bq queries against (ceil(w / Bq) + 1) * Bq keys with T padded up to a
    multiple of Bq (the padded queries' work is spread over the T real ones); for T <= w + 1 it
    computes the dense T x T product.
    """
    t = seq_len
    if t < 1:
        raise ValueError(f"seq_len={seq_len} must be positive")
    if kind not in ("attention", "local_attention"):
        raise ValueError(f"block kind {kind!r} has no attention")
    w = cfg.local_window
    if convention == "exact":
        if kind == "attention" or t <= w + 1:
            return (t + 1) / 2
        return ((w + 1) * (w + 2) / 2 + (t - w - 1) * (w + 1)) / t
    if convention == "as_executed":
        if kind == "attention" or t <= w + 1:
            return float(t)
        bq = min(cfg.attention_block, t)  # as in attention.py
        blocks = ceil_div(t, bq)
        keys = (ceil_div(w, bq) + 1) * bq
        return blocks * bq * keys / t
    raise ValueError(f"keys_per_query is defined for 'exact' and 'as_executed', not {convention!r}")


def _linear(n_in: int, n_out: int, bias: bool) -> float:
    """One dense layer per token: a multiply and an add per weight, plus the bias add."""
    return 2.0 * n_in * n_out + (n_out if bias else 0)


def _recurrent_flops(cfg: ModelConfig, out: dict[str, float]) -> None:
    d, r = cfg.width, cfg.lru_width
    out["recurrent_linears"] += 2 * _linear(d, r, True) + _linear(r, d, True)
    out["recurrent_gelu_product"] += r * GELU_PER_ELEMENT + r  # GeLU branch, then the product
    out["conv1d"] += 2.0 * cfg.conv_width * r + r  # a multiply-add per tap, plus the bias
    out["rglru_gates"] += 2 * (2.0 * r * r / cfg.num_gate_blocks + r)  # block-diagonal W_a, W_x + biases
    out["rglru_elementwise"] += r * RGLRU_GATES_PER_ELEMENT
    out["rglru_scan"] += r * SCAN_PER_ELEMENT


def _attention_flops(cfg: ModelConfig, kind: str, seq_len: int, convention: str,
                     out: dict[str, float]) -> None:
    d, hd, h = cfg.width, cfg.head_dim, cfg.num_heads
    out["attention_projections"] += _linear(d, d, False) + 2 * _linear(d, hd, False) + _linear(d, d, True)
    rope = cfg.rope_dims
    out["rope"] += ROPE_PER_ROTATED_DIM * rope * (h + 1) + ROPE_PER_FREQUENCY * rope / 2
    keys = keys_per_query(cfg, kind, seq_len, convention)
    out["attention_logits"] += 2.0 * h * hd * keys  # q . k for every head
    out["attention_values"] += 2.0 * h * hd * keys  # probabilities times values
    softmax = SOFTMAX_PER_LOGIT * h * keys
    if convention == "as_executed":
        softmax += MASK_SELECT_PER_LOGIT * h * keys + MASK_PER_PAIR[kind] * keys
    out["attention_softmax"] += softmax


BREAKDOWN_KEYS = (
    "embedding", "norms", "residual", "attention_projections", "rope", "attention_logits",
    "attention_values", "attention_softmax", "recurrent_linears", "recurrent_gelu_product",
    "conv1d", "rglru_gates", "rglru_elementwise", "rglru_scan", "mlp_linears",
    "mlp_gelu_product", "logits", "cross_entropy",
)


def flops_breakdown(cfg: ModelConfig, seq_len: int, convention: str = "exact") -> dict[str, float]:
    """Forward FLOPs per token, by component, summed over the layers. Sums to `flops_per_token`.

    For '6N' and '6N_nonembed' the components are {'non_embedding': 2 N_nonembed} plus, for
    '6N', {'embedding': 2 V D}. Otherwise the keys are `BREAKDOWN_KEYS`.
    """
    _check_convention(convention)
    n = count_params(cfg)
    if convention == "6N":
        return {"embedding": 2.0 * n.embedding, "non_embedding": 2.0 * n.non_embedding}
    if convention == "6N_nonembed":
        return {"non_embedding": 2.0 * n.non_embedding}
    d, m, v = cfg.width, cfg.mlp_width, cfg.vocab_size
    out = dict.fromkeys(BREAKDOWN_KEYS, 0.0)
    for kind in cfg.block_types:
        out["norms"] += 2 * RMSNORM_PER_ELEMENT * d  # the two pre-norms
        out["residual"] += 2 * d  # the two residual adds
        if kind == "recurrent":
            _recurrent_flops(cfg, out)
        else:
            _attention_flops(cfg, kind, seq_len, convention, out)
        out["mlp_linears"] += 2 * _linear(d, m, True) + _linear(m, d, True)
        out["mlp_gelu_product"] += m * GELU_PER_ELEMENT + m
    out["norms"] += RMSNORM_PER_ELEMENT * d  # final norm
    out["logits"] += 2.0 * d * v  # tied embedding as the output layer
    out["cross_entropy"] += CROSS_ENTROPY_PER_LOGIT * v
    return out  # embedding lookup: a gather, 0 FLOPs


def flops_per_token(cfg: ModelConfig, seq_len: int, convention: str = "exact") -> float:
    """Forward FLOPs per token of a length-`seq_len` training sequence (training = 3x this)."""
    return float(sum(flops_breakdown(cfg, seq_len, convention).values()))


def training_flops_per_token(cfg: ModelConfig, seq_len: int, convention: str = "exact") -> float:
    """Forward + backward FLOPs per token: (1 + BACKWARD_TO_FORWARD) x forward (6N for '6N')."""
    return (1.0 + BACKWARD_TO_FORWARD) * flops_per_token(cfg, seq_len, convention)


def training_flops(cfg: ModelConfig, seq_len: int, tokens: float, convention: str = "exact") -> float:
    """Total training FLOPs for `tokens` tokens in sequences of `seq_len`."""
    return training_flops_per_token(cfg, seq_len, convention) * tokens


def all_training_flops(cfg: ModelConfig, seq_len: int, tokens: float) -> dict[str, float]:
    """Training FLOPs under every convention (for result.json and the sweep plan)."""
    return {c: training_flops(cfg, seq_len, tokens, c) for c in CONVENTIONS}


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------

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


def activation_bytes_per_token(cfg: ModelConfig, seq_len: int) -> dict[str, float]:
    """What a forward + backward pass holds at its peak, per token, without rematerialisation.

    An estimate by component, following what autodiff saves for this implementation and what
    XLA keeps of it (c = bytes of the compute dtype; 4 where the code computes in fp32).
    Summed over the layers:
    - residual_and_norms: the residual stream entering each of the two pre-norms and each
      norm's output (4 D c);
    - mlp: both up branches, the GeLU output and the product (4 M c);
    - recurrent: in compute dtype linear_y's output, its tanh and GeLU, linear_x's output, the
      W Conv1D tap products, the Conv1D output and the gated product ((6 + W) R c); in fp32 the
      time-major copy of the Conv1D output, both gates before and after the sigmoid, log a, a,
      exp(2 log a), 1 - a^2, the sqrt multiplier, b, h and its batch-major copy (13 R * 4);
    - attention_linear: q and k before and after RoPE, v and the attention output
      ((3 D + 3 hd) c);
    - attention_scores: per computed logit (as_executed keys per query, H heads) the fp32
      softmax output and its compute-dtype copy for the value product (H (4 + c)), plus the
      boolean mask (1 byte per query/key pair, shared by the heads).
    Once:
    - output: the embedding output and the final norm's output (2 D c), the fp32 logits,
      log-probabilities and the logits' gradient (3 V * 4);
    - backward_workspace: cotangents live while one layer is differentiated: the residual
      stream's (2 D * 4) and, for the widest attention layer, the gradients of its
      probabilities and logits (2 H keys * 4).
    """
    c = DTYPE_BYTES[cfg.dtype]
    d, r, m, hd, h = cfg.width, cfg.lru_width, cfg.mlp_width, cfg.head_dim, cfg.num_heads
    out = dict.fromkeys(ACTIVATION_KEYS, 0.0)
    widest_scores = 0.0
    for kind in cfg.block_types:
        out["residual_and_norms"] += 4 * d * c
        out["mlp"] += 4 * m * c
        if kind == "recurrent":
            out["recurrent"] += (6 + cfg.conv_width) * r * c + 13 * r * FP32
        else:
            keys = keys_per_query(cfg, kind, seq_len, "as_executed")
            out["attention_linear"] += (3 * d + 3 * hd) * c
            out["attention_scores"] += keys * (h * (FP32 + c) + 1)
            widest_scores = max(widest_scores, 2 * h * keys * FP32)
    out["output"] += 2 * d * c + 3 * cfg.vocab_size * FP32
    out["backward_workspace"] += 2 * d * FP32 + widest_scores
    return out


ACTIVATION_KEYS = ("residual_and_norms", "mlp", "recurrent", "attention_linear", "attention_scores",
                   "output", "backward_workspace")


def activation_bytes(cfg: ModelConfig, batch: int, seq_len: int) -> float:
    """Activation bytes kept for the backward pass of one [batch, seq_len] step. With
    `cfg.remat` each layer keeps only its input (D, compute dtype) and one layer at a time
    is recomputed in full: the layers' terms are replaced by depth * D c + the largest layer."""
    per_token = activation_bytes_per_token(cfg, seq_len)
    if cfg.remat:
        layers = sum(v for k, v in per_token.items() if k not in ("output", "backward_workspace"))
        one_layer = max(sum(activation_bytes_per_token(cfg.replace(family="custom", depth=1, block_pattern=(kind,), remat=False),
                                                       seq_len)[k] for k in ACTIVATION_KEYS[:5])
                        for kind in set(cfg.block_types))
        kept = cfg.depth * cfg.width * DTYPE_BYTES[cfg.dtype] + one_layer
        return (sum(per_token.values()) - layers + kept) * batch * seq_len
    return sum(per_token.values()) * batch * seq_len


def decode_cache_bytes(cfg: ModelConfig, length: int) -> int:
    """Decoding cache of one sequence that has reached `length` tokens, over all layers.

    recurrent: the RG-LRU state (R, fp32) and the last W - 1 Conv1D inputs (compute dtype);
    local attention: a ring buffer of `local_window` keys and values (2 w hd, compute dtype),
    whatever the length; global attention: keys and values of every position (2 length hd).
    """
    c = DTYPE_BYTES[cfg.dtype]
    r, hd = cfg.lru_width, cfg.head_dim
    total = 0
    for kind in cfg.block_types:
        if kind == "recurrent":
            total += r * FP32 + (cfg.conv_width - 1) * r * c
        elif kind == "local_attention":
            total += 2 * cfg.local_window * hd * c
        else:
            total += 2 * length * hd * c
    return total


def memory_per_device(cfg: ModelConfig, batch: int, seq_len: int, data_parallel: int = 1,
                      model_parallel: int = 1, microbatches: int = 1) -> dict[str, float]:
    """Bytes per device of one training step, for the planner to reject runs that do not fit.

    `batch` is the global batch (sequences per step). Parameters, gradients and optimiser state
    are sharded over `model_parallel` (and replicated over `data_parallel`); activations are
    sharded over `data_parallel` (each device holds batch / data_parallel sequences; their
    model-parallel sharding is not counted, so this errs on the safe side); gradient
    accumulation over `microbatches` divides them again. Fragmentation, the
    compiled code and the data pipeline are not included: keep a margin (docs/counting.md).
    """
    if data_parallel < 1 or model_parallel < 1:
        raise ValueError(f"data_parallel={data_parallel} and model_parallel={model_parallel} must be >= 1")
    params = param_bytes(cfg) / model_parallel
    grads = gradient_bytes(cfg) / model_parallel
    opt = optimizer_bytes(cfg) / model_parallel
    acts = activation_bytes(cfg, math.ceil(batch / (data_parallel * microbatches)), seq_len)
    return {"params": params, "gradients": grads, "optimizer": opt, "activations": acts,
            "total": params + grads + opt + acts}


# ---------------------------------------------------------------------------------------------
# Tables (docs/counting.md): `python -m griffin_core.counting`
# ---------------------------------------------------------------------------------------------

PAPER_VOCAB = 256_000
"""Vocabulary used for the paper rows' tables (RecurrentGemma's; the paper states none)."""
CPU_VOCAB = 256
"""Vocabulary of the CPU ladder (bytes)."""
FAMILIES = ("mqa", "hawk", "griffin")


def _rows(paper_vocab: int, cpu_vocab: int):
    for table, vocab, seq_len in ((PAPER_SIZES, paper_vocab, 2048), (CPU_SIZES, cpu_vocab, 256)):
        for name in table:
            yield name, vocab, seq_len, {f: model_config(f, name, vocab) for f in FAMILIES}


def _human(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def format_param_table(paper_vocab: int = PAPER_VOCAB, cpu_vocab: int = CPU_VOCAB) -> str:
    """Markdown table: total and non-embedding parameters of each family at each size."""
    head = "| size | vocab | " + " | ".join(f"{f} total | {f} non-emb" for f in FAMILIES) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(FAMILIES))]
    for name, vocab, _, cfgs in _rows(paper_vocab, cpu_vocab):
        cells = []
        for f in FAMILIES:
            n = count_params(cfgs[f])
            cells += [f"{n.total:,} ({_human(n.total)})", f"{n.non_embedding:,} ({_human(n.non_embedding)})"]
        lines.append(f"| {name} | {vocab:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_flops_table(paper_vocab: int = PAPER_VOCAB, cpu_vocab: int = CPU_VOCAB) -> str:
    """Markdown table: training FLOPs per token (exact) and the ratios exact / as_executed and
    exact / 6N for each family; paper rows at T = 2048, CPU rows at T = 256."""
    head = "| size | vocab | T | " + " | ".join(
        f"{f} exact/tok | {f} exact/as_exec | {f} exact/6N" for f in FAMILIES) + " |"
    lines = [head, "|" + "---|" * (3 + 3 * len(FAMILIES))]
    for name, vocab, seq_len, cfgs in _rows(paper_vocab, cpu_vocab):
        cells = []
        for f in FAMILIES:
            exact = flops_per_token(cfgs[f], seq_len, "exact")
            cells += [_human(3 * exact),
                      f"{exact / flops_per_token(cfgs[f], seq_len, 'as_executed'):.3f}",
                      f"{exact / flops_per_token(cfgs[f], seq_len, '6N'):.3f}"]
        lines.append(f"| {name} | {vocab:,} | {seq_len} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_breakdown_table(size: str, seq_len: int, vocab: int, convention: str = "exact") -> str:
    """Markdown table: each component's share (%) of the forward FLOPs per token, by family."""
    cfgs = {f: model_config(f, size, vocab) for f in FAMILIES}
    parts = {f: flops_breakdown(cfgs[f], seq_len, convention) for f in FAMILIES}
    totals = {f: sum(parts[f].values()) for f in FAMILIES}
    lines = ["| component | " + " | ".join(FAMILIES) + " |", "|" + "---|" * (1 + len(FAMILIES))]
    for key in BREAKDOWN_KEYS:
        if any(parts[f][key] for f in FAMILIES):
            lines.append(f"| {key} | " + " | ".join(f"{100 * parts[f][key] / totals[f]:.2f}" for f in FAMILIES) + " |")
    lines.append("| forward FLOPs / token | " + " | ".join(_human(totals[f]) for f in FAMILIES) + " |")
    return "\n".join(lines)


BREAKDOWN_EXAMPLES = (("1.3B", 2048, PAPER_VOCAB), ("cpu-190k", 256, CPU_VOCAB))


def main() -> None:
    print(f"## Parameters (paper rows: vocab {PAPER_VOCAB:,}; CPU rows: vocab {CPU_VOCAB:,})\n")
    print(format_param_table())
    print("\n## Training FLOPs per token (exact) and ratios between conventions\n")
    print(format_flops_table())
    for size, seq_len, vocab in BREAKDOWN_EXAMPLES:
        print(f"\n## Exact forward FLOPs by component (%): {size}, T = {seq_len}, vocab {vocab:,}\n")
        print(format_breakdown_table(size, seq_len, vocab))


if __name__ == "__main__":
    main()
