"""FLOPs per token under four conventions (notation: griffin_core.counting).

The conventions answer different questions, so a scaling fit can be read under each and
result.json records all of them (`CONVENTIONS`), all FLOPs *per token*:
- '6N': 2N forward (6N for training) with N = all parameters, the embedding included
  (Chinchilla's rule).
- '6N_nonembed': the same with non-embedding parameters (Kaplan's rule).
- 'exact': operation by operation, what an ideal implementation must compute: causal
  attention computes only the logits it keeps, elementwise work at fixed per-element counts.
- 'as_executed': what our compiled program computes: global attention computes the full T x T
  logits, local attention computes padded query blocks against their key blocks; the rest as
  in 'exact'.
Backward = 2 x forward under every convention, so training = 3 x forward, with one exception:
the as_executed work that only a compiled forward pass does (`FORWARD_ONLY_KEYS`: XLA
recomputes Mamba-2's cheap producers in each consumer instead of storing them, which a training
step does not do, since it stores them for the backward pass) is in the forward count only.

'as_executed' is checked against XLA's cost analysis in tests/test_counting_flops.py.
"""

from __future__ import annotations

from griffin_core.attention_plan import attention_plan
from griffin_core.config import ModelConfig, ceil_div
from griffin_core.counting.params import count_params

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
"""as_executed only: adding the mask's bias (0 or -1e30) to every computed logit of every head."""
MASK_PER_PAIR = {"attention": 6, "local_attention": 9}
"""as_executed only: building the [Tq, Tk] mask's bias once per query/key pair (shared by the
heads): k <= q, k >= 0, same segment, two ands, the select of 0 or -1e30; local adds q - k,
<= window and an and."""
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
SILU = SIGMOID + 1
"""x * sigmoid(x)."""
SOFTPLUS = 10
"""jax.nn.softplus is logaddexp(x, 0): max, subtract, isnan, abs, negate, exp, log1p, add, the
NaN select, plus dt's bias add."""
CONV_X_EVALUATIONS = 4
"""as_executed only: XLA:CPU fuses the Mamba-2 mixer's Conv1D of x (cheap elementwise work)
into each of its consumers instead of storing it (the SiLU's sigmoid, the SSD's input and the
output's two fusions), so its taps run four times (read from the compiled HLO; an optimization
barrier does not stop it). That is the forward pass when the SSD pads its input; without
padding the SSD reads x in two fusions, a fifth run counted in `ssm_forward_only`. A training
step runs this convolution fewer times, but its backward fusions recompute about as much
elsewhere (the SiLU and gated-norm products): three times the count with four runs matches
XLA's training step (docs/counting.md)."""
CONV_PER_TAP_AS_EXECUTED = 3
"""Per channel and tap, as XLA runs griffin_core.conv1d: times the document mask, times the
weight, add (the sum starts from the broadcast bias, so the bias costs no add of its own)."""
CONV_MASK_PER_TAP = 2
"""Per token and tap, in every fusion that runs a Conv1D: the mask's compare and its convert."""
CUMSUM_WINDOW = 16
"""XLA:CPU runs a cumulative sum as a reduce-window, output i adding the (up to) n inputs of
its window, and rewrites one longer than 16 into windows of 16 plus a sum over the blocks'
totals (measured: 15 FLOPs per element at n = 16, 16.1 at n = 32, 17.0 at n = 256)."""
GATED_NORM_PER_ELEMENT = 5
"""Mamba-2's gated RMSNorm after the gate product: square, sum, times 1/rms, 1 + scale (per
element, as XLA broadcasts it), times the gain."""
SSD_EXACT_PER_STATE = 5
"""Mamba-2's recurrence per state element (I x N per token): x dt times B (1), the decay times h
(1), their sum (1), and y = h C (2)."""
CROSS_ENTROPY_PER_LOGIT = 5
"""log-softmax over V: max-reduce, subtract, exp, sum-reduce, subtract log-sum-exp."""


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r} is unknown; known conventions: {list(CONVENTIONS)}")


def keys_per_query(cfg: ModelConfig, kind: str, seq_len: int, convention: str) -> float:
    """Average number of (query, key) logits computed per query token at length `seq_len`.

    exact: global attention is causal, query t sees t + 1 keys, mean (T + 1) / 2; local attention
    sees min(t + 1, w + 1) keys. as_executed: the pairs the model computes
    (griffin_core.attention_plan: query blocks against the keys they can see, or batched local
    blocks with the sequence padded, whose padded queries' work is spread over the T real ones).
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
        return attention_plan(cfg, kind == "local_attention", t).logits / t
    raise ValueError(f"keys_per_query is defined for 'exact' and 'as_executed', not {convention!r}")


def _linear(n_in: int, n_out: int, bias: bool) -> float:
    """One dense layer per token: a multiply and an add per weight, plus the bias add."""
    return 2.0 * n_in * n_out + (n_out if bias else 0)


def _recurrent_flops(cfg: ModelConfig, out: dict[str, float]) -> None:
    """Add one recurrent block's forward FLOPs per token to `out`, by component."""
    d, r = cfg.width, cfg.lru_width
    out["recurrent_linears"] += 2 * _linear(d, r, True) + _linear(r, d, True)
    out["recurrent_gelu_product"] += r * GELU_PER_ELEMENT + r  # GeLU branch, then the product
    out["conv1d"] += 2.0 * cfg.conv_width * r + r  # a multiply-add per tap, plus the bias
    out["rglru_gates"] += 2 * (2.0 * r * r / cfg.num_gate_blocks + r)  # block-diagonal W_a, W_x + biases
    out["rglru_elementwise"] += r * RGLRU_GATES_PER_ELEMENT
    out["rglru_scan"] += r * SCAN_PER_ELEMENT


def cumsum_flops(n: int) -> float:
    """FLOPs of XLA:CPU's cumulative sum over n elements (`CUMSUM_WINDOW`): n (n - 1) up to the
    window; beyond it, 16 per element of the padded blocks (15 inside a block, 1 to add the
    blocks before) plus the cumulative sum of the block totals."""
    if n <= CUMSUM_WINDOW:
        return n * (n - 1.0)
    blocks = ceil_div(n, CUMSUM_WINDOW)
    return CUMSUM_WINDOW * CUMSUM_WINDOW * blocks + cumsum_flops(blocks)


def ssd_as_executed(cfg: ModelConfig, seq_len: int) -> float:
    """FLOPs per token of griffin_core.ssd.ssd_chunked as it runs: chunks of Q steps (the tail
    padded, its work spread over the T real tokens), each a masked [Q, Q] product per head, and
    the state passed between chunks."""
    h, p, n = cfg.ssm_heads, cfg.ssm_head_dim, cfg.ssm_state
    q = max(1, min(cfg.ssm_chunk, seq_len))
    padded = ceil_div(seq_len, q) * q / seq_len
    per_token = (
        h  # dt * A
        + h * cumsum_flops(q) / q  # its running sum over the chunk
        + 2 * q  # segment ids: the same-segment compare and the causal and, per (i, j) pair
        + 4 * h * q  # per pair and head: cum_i - cum_j, the mask select, exp, scores * decay
        + 2 * q * h * n  # scores C_i . B_j
        + 2 * q * h * p  # (scores * decay) @ (dt x)
        + h * p  # x * dt
        + 4 * h  # the decay to the chunk's end (subtract, exp, select) and its product with dt x
        + h * p  # to_end * x dt
        + 2 * h * p * n  # the chunk's own state
        + 2 * h * p * n / q  # passing the state on (per chunk)
        + 3 * h  # the decay from the chunk's start (exp, select, times C)
        + h * n  # exp(cum) * C
        + 2 * h * p * n  # the entering state's contribution
        + h * p  # summing the two contributions
    )
    return per_token * padded


def _conv_run(cfg: ModelConfig, channels: int) -> float:
    """as_executed: one run of a Conv1D over `channels`, per token, as XLA fuses it."""
    return cfg.conv_width * (CONV_PER_TAP_AS_EXECUTED * channels + CONV_MASK_PER_TAP)


def ssm_forward_only(cfg: ModelConfig, seq_len: int) -> float:
    """as_executed: FLOPs per token of one Mamba-2 mixer that XLA:CPU's compiled forward pass
    runs on top of the training-step count, read from its HLO. Each fusion that reads a cheap
    producer recomputes it instead of loading it; a training step stores these values for the
    backward pass, so this is not in `training_flops_per_token` (docs/counting.md)."""
    i, h = cfg.ssm_inner, cfg.ssm_heads
    bc = 2 * cfg.ssm_groups * cfg.ssm_state
    q = max(1, min(cfg.ssm_chunk, seq_len))
    padded = seq_len % q != 0
    # The SSD reads x dt in two fusions (the chunk products, the chunk's state) and B and C in
    # three (the scores' two operand layouts, the chunk's state; the entering state reuses C's
    # layout), each rerunning the Conv1D and SiLU product. When the tail is padded, one pad
    # fusion each copies x, B and C instead. x: one run more than CONV_X_EVALUATIONS; B and C:
    # runs beyond the base's one (the SiLU's sigmoid fusion).
    x_runs, bc_runs = (0, 2) if padded else (1, 3)
    flops = x_runs * _conv_run(cfg, i) + bc_runs * _conv_run(cfg, bc)
    # The SiLU's product x * sigmoid(x) runs in every consumer but the sigmoid's own fusion: for
    # x the SSD's fusions and the output's two, for B and C the SSD's; the base counts one.
    flops += (x_runs + 2) * i + (bc_runs - 1) * bc
    if not padded:
        # softplus: the dt bias add reruns in dt * A and the two x dt fusions, the four
        # operations after log1p (max, add, the NaN compare and select) in two of them.
        flops += 3 * h + 2 * 4 * h
    # The output's two fusions (sum of squares, normalised output) each compute the SSD's last
    # add, the D skip (multiply, add), SiLU(z)'s product and the gate product.
    return flops + 5 * i


def _mamba2_flops(cfg: ModelConfig, seq_len: int, convention: str, out: dict[str, float]) -> None:
    """Add one Mamba-2 mixer's forward FLOPs per token to `out`, by component."""
    d, i, h = cfg.width, cfg.ssm_inner, cfg.ssm_heads
    bc = 2 * cfg.ssm_groups * cfg.ssm_state
    conv_channels = i + bc
    out["ssm_linears"] += _linear(d, 2 * i + bc + h, False) + _linear(i, d, False)
    # exact: a multiply-add per tap and the bias; as executed, each tap also multiplies by its
    # document mask (griffin_core.conv1d), and x's convolution runs in several fusions.
    if convention == "exact":
        out["ssm_conv1d"] += 2.0 * cfg.conv_width * conv_channels + conv_channels
    else:
        out["ssm_conv1d"] += CONV_X_EVALUATIONS * _conv_run(cfg, i) + _conv_run(cfg, bc)
        out["ssm_forward_only"] += ssm_forward_only(cfg, seq_len)
    # SiLU of x, B and C; softplus(dt + bias); the D skip (2); SiLU(z) and the gate product;
    # the gated RMSNorm (square, sum, times 1/rms, 1 + scale, times the gain).
    out["ssm_elementwise"] += (SILU * conv_channels + SOFTPLUS * h + 2 * i + (SILU + 1) * i
                               + GATED_NORM_PER_ELEMENT * i)
    if convention == "exact":
        out["ssm_scan"] += SSD_EXACT_PER_STATE * i * cfg.ssm_state + i + 2 * h  # + dt x; exp(dt A)
    else:
        out["ssm_scan"] += ssd_as_executed(cfg, seq_len)


def _attention_flops(cfg: ModelConfig, kind: str, seq_len: int, convention: str,
                     out: dict[str, float]) -> None:
    """Add one (global or local) MQA block's forward FLOPs per token to `out`, by component."""
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
    "conv1d", "rglru_gates", "rglru_elementwise", "rglru_scan", "ssm_linears", "ssm_conv1d",
    "ssm_elementwise", "ssm_scan", "ssm_forward_only", "mlp_linears", "mlp_gelu_product", "logits",
    "cross_entropy",
)
FORWARD_ONLY_KEYS = ("ssm_forward_only",)
"""Components a compiled forward pass runs but a training step does not (as_executed only)."""


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
    halves = 2 if m else 1  # a model without MLPs has one pre-norm and one residual add per block
    for kind in cfg.block_types:
        out["norms"] += halves * RMSNORM_PER_ELEMENT * d  # the pre-norms
        out["residual"] += halves * d  # the residual adds
        if kind == "recurrent":
            _recurrent_flops(cfg, out)
        elif kind == "mamba2":
            _mamba2_flops(cfg, seq_len, convention, out)
        else:
            _attention_flops(cfg, kind, seq_len, convention, out)
        if m:
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
    """Forward + backward FLOPs per token: (1 + BACKWARD_TO_FORWARD) x forward (6N for '6N'),
    the forward without `FORWARD_ONLY_KEYS` (as_executed Mamba-2; zero otherwise)."""
    parts = flops_breakdown(cfg, seq_len, convention)
    forward = sum(v for k, v in parts.items() if k not in FORWARD_ONLY_KEYS)
    return (1.0 + BACKWARD_TO_FORWARD) * float(forward)


def training_flops(cfg: ModelConfig, seq_len: int, tokens: float, convention: str = "exact") -> float:
    """Total training FLOPs for `tokens` tokens in sequences of `seq_len`."""
    return training_flops_per_token(cfg, seq_len, convention) * tokens


def all_training_flops(cfg: ModelConfig, seq_len: int, tokens: float) -> dict[str, float]:
    """Training FLOPs under every convention (for result.json and the sweep plan)."""
    return {c: training_flops(cfg, seq_len, tokens, c) for c in CONVENTIONS}
