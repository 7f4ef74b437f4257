"""Real-Gated Linear Recurrent Unit (RG-LRU), exactly as the paper and reference code:

  r_t = sigmoid(W_a x_t + b_a)                 recurrence gate
  i_t = sigmoid(W_x x_t + b_x)                 input gate
  log a_t = -c * r_t * softplus(a_param)       a_param = -Lambda, so a_t = sigmoid(Lambda)^(c r_t)
  h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * x_t)

W_a, W_x are block-diagonal. At a document start (position 0) a_t := 0 and the sqrt factor
is 1, so the state restarts. Everything from the gates on is fp32: a_t is close to 1 and the
state integrates over thousands of steps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

from griffin_core import initializers as init
from griffin_core import scan as scan_lib
from griffin_core.rglru_fused import fused_rglru
from griffin_core.sharding import constrain, local


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bounded_derivative(x: jax.Array, max_gradient: float) -> jax.Array:
    """sqrt(x) whose derivative is capped at `max_gradient` (it is infinite at x = 0, which
    1 - a^2 reaches in bf16 when a rounds to 1)."""
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_gradient):
    return jnp.sqrt(x), x


def _sqrt_bwd(max_gradient, x, g):
    # d sqrt(x)/dx = 1 / (2 sqrt(x)) <= max_gradient  <=>  x >= 1 / (4 max_gradient^2).
    x_floor = jnp.maximum(x, 1.0 / (4.0 * max_gradient**2))
    return (g / (2.0 * jnp.sqrt(x_floor)),)


sqrt_bounded_derivative.defvjp(_sqrt_fwd, _sqrt_bwd)


def block_diagonal_pair(x: jax.Array, w1: jax.Array, b1: jax.Array, w2: jax.Array, b2: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
    """Two block-diagonal linears of the same input, x @ blockdiag(w1) + b1 and x @ blockdiag(w2) + b2.

    x: [..., C]; w1, w2: [n, C/n, C/n]; b1, b2: [n, C/n] -> two [..., C].

    Computed as one batched matmul with the blocks as its (leading) batch axis:
    [n, N, C/n] @ [n, C/n, 2 C/n], N the number of rows of x. Each output is the same
    C/n-term dot product as in `x @ blockdiag(w)`; only the layout differs. XLA:CPU's
    batched matmul needs its batch axis outermost; written as `einsum('...hi,hij->...hj')`
    XLA instead put the rows innermost ([n, C/n, N]), which made the transposes in and out
    element-by-element gathers. In the training benchmark (docs/benchmarks.md, "Training step")
    these transposes cost more than all of the recurrent block's dense layers. Here they move
    contiguous C/n-element runs, and the shared input is transposed once for both gates (and,
    going backward, the two input gradients are summed by the matmul).
    """
    n, k = w1.shape[0], w1.shape[-1]
    lead = x.shape[:-1]
    xb = jnp.swapaxes(x.reshape((-1, n, k)), 0, 1)  # [n, N, k]
    y = jnp.matmul(xb, jnp.concatenate([w1, w2], axis=-1))  # [n, N, 2k]
    y = jnp.swapaxes(y, 0, 1) + jnp.concatenate([b1, b2], axis=-1)  # [N, n, 2k]
    return y[..., :k].reshape(lead + (n * k,)), y[..., k:].reshape(lead + (n * k,))


class BlockDiagonalGate(nn.Module):
    """The parameters of one gate x @ blockdiag(W_1..W_n) + b: W [n, C/n, C/n] (`w`), b [n, C/n]
    (`b`). `RGLRU` reads them and applies its two gates together (`block_diagonal_pair`)."""

    width: int
    num_blocks: int
    param_dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        n, k = self.num_blocks, self.width // self.num_blocks
        # Split by whole blocks under tensor parallelism (the reason the gates are block-diagonal).
        self.w = self.param("w", init.named(init.gate_normal(self.width), "rnn_block", "rnn_gate", None),
                            (n, k, k), self.param_dtype)
        self.b = self.param("b", init.zeros("rnn_block", None), (n, k), self.param_dtype)


class RGLRU(nn.Module):
    width: int
    num_blocks: int
    c: float = 8.0
    lambda_init: str = "ring"
    sqrt_max_grad: float = 1000.0
    scan_impl: str = "auto"
    scan_unroll: int = 0
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    def setup(self) -> None:
        self.a_param = self.param("a_param", init.named(init.lambda_init(self.lambda_init, self.c), "rnn"),
                                  (self.width,), self.param_dtype)
        gate = functools.partial(BlockDiagonalGate, self.width, self.num_blocks, param_dtype=self.param_dtype)
        self.input_gate = gate(name="input_gate")
        self.a_gate = gate(name="a_gate")

    def _preactivations(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The two gates' inputs to their sigmoids (input gate, recurrence gate), shaped like x:
        [T, B, C] (time-major) or [B, C].

        Under a mesh each device multiplies its own rows and channel blocks (`local`: its
        blocks' weights gathered, as FSDP gathers any layer's). Left to XLA's partitioner, the
        rows flattened from [T, B] (B split, T not) lose their split, and with weights that do
        not divide the mesh (Hawk 1.3B: 16 blocks on 64 devices) every device computed the
        gates of the whole microbatch: 13 GiB of temporaries per device more than with them."""
        cast = lambda p: p.astype(self.dtype)  # noqa: E731
        rows = ("length", "batch", "act_rnn") if x.ndim == 3 else ("batch", "act_rnn")
        blocks = ("act_rnn", None)
        return local(block_diagonal_pair, (rows, blocks + (None,), blocks, blocks + (None,), blocks), (rows, rows))(
            x.astype(self.dtype), cast(self.input_gate.w), cast(self.input_gate.b), cast(self.a_gate.w),
            cast(self.a_gate.b))

    def _coefficients(self, x: jax.Array, reset: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The scan's inputs: a_t and b_t = sqrt(1 - a_t^2) i_t x_t, both fp32, shaped like x."""
        lin_x, lin_a = self._preactivations(x)
        gate_x = jax.nn.sigmoid(lin_x.astype(jnp.float32))
        gate_a = jax.nn.sigmoid(lin_a.astype(jnp.float32))
        log_a = -self.c * gate_a * jax.nn.softplus(self.a_param.astype(jnp.float32))
        a = jnp.exp(log_a)
        multiplier = sqrt_bounded_derivative(1.0 - jnp.exp(2.0 * log_a), self.sqrt_max_grad)
        reset = reset[..., None]
        multiplier = jnp.where(reset, 1.0, multiplier)
        a = jnp.where(reset, 0.0, a)
        return a, multiplier * gate_x * x.astype(jnp.float32)

    def __call__(self, x: jax.Array, segment_pos: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x: [B, T, C], segment_pos: [B, T] -> (y [B, T, C] in x's dtype, h [B, T, C] fp32).

        The recurrence runs time-major ([T, B, C]): the transpose is fused into the gate
        computation, and each scan step then reads one contiguous [B, C] slab.
        """
        x_tm = jnp.swapaxes(x, 0, 1)
        reset = jnp.swapaxes(segment_pos, 0, 1) == 0
        if self.scan_impl == "pallas_fused":
            h = jnp.swapaxes(self._fused(x_tm, reset), 0, 1)
            return h.astype(x.dtype), h
        a, b = self._coefficients(x_tm, reset)
        # Each device scans its own channels: no communication inside the time loop.
        a, b = (constrain(v, ("length", "batch", "act_rnn")) for v in (a, b))
        names = ("length", "batch", "act_rnn")
        scan = functools.partial(scan_lib.linear_scan, h0=None, impl=self.scan_impl, unroll=self.scan_unroll)
        h, _ = local(scan, (names, names), (names, names[1:]))(a, b)
        h = jnp.swapaxes(h, 0, 1)
        return h.astype(x.dtype), h

    def _fused(self, x: jax.Array, reset: jax.Array) -> jax.Array:
        """h [T, B, C] fp32 from time-major x [T, B, C] by the kernel computing the gates inside
        the scan (`rglru_fused`: a_t and b_t never reach memory)."""
        lin_x, lin_a = self._preactivations(x)
        log_decay = -self.c * jax.nn.softplus(self.a_param.astype(jnp.float32))
        keep = jnp.logical_not(reset)[..., None].astype(jnp.float32)

        def scan(lin_a, lin_x, x, keep, log_decay):
            h0 = jnp.zeros(x.shape[1:], jnp.float32)
            return fused_rglru(lin_a, lin_x, x, keep, log_decay, h0, self.sqrt_max_grad)

        names = ("length", "batch", "act_rnn")
        h, _ = local(scan, (names, names, names, names[:2] + (None,), ("act_rnn",)), (names, names[1:]))(
            lin_a, lin_x, x, keep, log_decay)
        return h

    def step(self, x: jax.Array, pos: jax.Array, h_prev: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One decoding step. x: [B, 1, C], pos: [B], h_prev: [B, C] fp32 -> (y [B, 1, C], h [B, C])."""
        a, b = self._coefficients(x[:, 0], pos == 0)
        h = a * h_prev + b
        return h[:, None].astype(x.dtype), h
