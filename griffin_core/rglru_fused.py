"""The RG-LRU's gates and recurrence in one Pallas kernel (`model.scan_impl=pallas_fused`).

Unfused, the gates are one elementwise pass that writes a_t and b_t = sqrt(1 - a_t^2) i_t x_t
to memory, and the scan a second pass that reads them back; the backward pass stores or
re-reads them again. Here the kernel reads the gate pre-activations and x and writes only h:

  r_t = sigmoid(lin_a_t)          i_t = sigmoid(lin_x_t)
  log a_t = r_t * log_decay       log_decay = -c softplus(a_param), per channel (<= 0)
  a_t = exp(log a_t), m_t = sqrt(1 - a_t^2)  (a_t := 0, m_t := 1 at a document start)
  h_t = a_t h_{t-1} + m_t i_t x_t

The backward pass recomputes the gates from the same inputs instead of storing them, running
time backward with g the cotangent of h: dh_t = g_t + a_{t+1} dh_{t+1}; then
  dx_t = dh_t m_t i_t,  d lin_x_t = dh_t m_t x_t i_t (1 - i_t),
  d log a_t = dh_t h_{t-1} a_t + dh_t i_t x_t dm/dlog a,   dm/dlog a = -a_t^2 / sqrt(max(1 - a_t^2, floor)),
  d lin_a_t = d log a_t log_decay r_t (1 - r_t),  d log_decay = sum over t and rows of d log a_t r_t,
with the derivative of the square root bounded as in `rglru.sqrt_bounded_derivative`
(floor = 1 / (4 max_grad^2)). The d log_decay partial sums are carried per (row, channel) like
the state and summed over rows outside the kernel.

Layouts and platforms as `scan_pallas`: time-major [T, B, D]; TPU (Mosaic) blocks of 128
channels x 128 steps in VMEM with the state (and, backward, the carried terms) in VMEM scratch
across time chunks; CUDA (Triton) one program per (row, 128 channels) walking all of time;
CPU the TPU kernel in interpret mode (a correctness path). `keep` [T, B, 1] is 0 at a
document start and 1 elsewhere. Padding (time at the end, channels) is zeros: a padded step
comes after every real one forward and, going backward, before them with a zero cotangent, so
it changes no real output.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from griffin_core.kernel_platforms import TPU_BLOCK_D, TPU_CHUNK, gpu_block_d, pad_to, platform_primitive

F32 = jnp.float32


# ---- one time step, shared by every kernel: rows are [B or 1, block_d]

def _gates(lin_a, lin_x, keep, log_decay):
    """(a_t, m_t i_t, and what the backward pass reuses) for one step."""
    r, i = jax.nn.sigmoid(lin_a.astype(F32)), jax.nn.sigmoid(lin_x.astype(F32))
    log_a = r * log_decay
    a_free, a_sq = jnp.exp(log_a), jnp.exp(2.0 * log_a)
    starts = keep == 0.0
    a = jnp.where(starts, 0.0, a_free)
    m = jnp.where(starts, 1.0, jnp.sqrt(1.0 - a_sq))
    return a, m * i, (r, i, a_free, a_sq, m, starts)


def _forward_step(lin_a, lin_x, x, keep, log_decay, h):
    a, mi, _ = _gates(lin_a, lin_x, keep, log_decay)
    return a * h + mi * x.astype(F32)


def _backward_step(lin_a, lin_x, x, keep, log_decay, h_prev, g, carry, acc, floor):
    """One step of the reverse pass: (d lin_a, d lin_x, dx, the next carry a_t dh_t, acc)."""
    a, mi, (r, i, a_free, a_sq, m, starts) = _gates(lin_a, lin_x, keep, log_decay)
    x = x.astype(F32)
    dh = g.astype(F32) + carry
    d_mi = dh * x
    dm = d_mi * i
    d_log_a = dh * h_prev * a_free - dm * a_sq / jnp.sqrt(jnp.maximum(1.0 - a_sq, floor))
    d_log_a = jnp.where(starts, 0.0, d_log_a)
    d_lin_a = d_log_a * log_decay * r * (1.0 - r)
    d_lin_x = d_mi * m * i * (1.0 - i)
    return d_lin_a, d_lin_x, dh * mi, a * dh, acc + d_log_a * r


def _backward_row(inputs, grads, dec, floor, t, h_prev, carry, acc):
    """Step t of a backward kernel: read row t of (lin_a, lin_x, x, keep, g), write row t of
    (d lin_a, d lin_x, dx); the carried a_t dh_t and decay-gradient sum."""
    la, lx, x, keep, g = (ref[t] for ref in inputs)
    *out, carry, acc = _backward_step(la, lx, x, keep, dec, h_prev, g, carry, acc, floor)
    for ref, value in zip(grads, out):
        ref[t] = value.astype(ref.dtype)
    return carry, acc


# ---- TPU: grid (channel blocks, time chunks); time runs backward in the backward kernel

def _tpu_forward(la_ref, lx_ref, x_ref, keep_ref, dec_ref, h0_ref, h_ref, state_ref, *, chunk):
    """la, lx, x, h: [chunk, B, block_d]; keep: [chunk, B, 1]; dec: [1, block_d]; h0, state: [B, block_d]."""
    @pl.when(pl.program_id(1) == 0)
    def _():
        state_ref[...] = h0_ref[...].astype(F32)

    dec = dec_ref[...]

    def step(t, h):
        h = _forward_step(la_ref[t], lx_ref[t], x_ref[t], keep_ref[t], dec, h)
        h_ref[t] = h
        return h

    state_ref[...] = jax.lax.fori_loop(0, chunk, step, state_ref[...])


def _tpu_backward(la_ref, lx_ref, x_ref, keep_ref, dec_ref, h_ref, before_ref, h0_ref, g_ref,
                  dla_ref, dlx_ref, dx_ref, ddec_ref, dh0_ref, carry_ref, acc_ref, *, chunk, floor):
    """As `_tpu_forward` plus h, g (cotangent), dla, dlx, dx: [chunk, B, block_d]; before:
    [1, B, block_d], the h just before this chunk; ddec, dh0, carry, acc: [B, block_d]."""
    k = pl.program_id(1)

    @pl.when(k == 0)
    def _():
        carry_ref[...] = jnp.zeros_like(carry_ref)
        acc_ref[...] = jnp.zeros_like(acc_ref)

    dec = dec_ref[...]

    row = functools.partial(_backward_row, (la_ref, lx_ref, x_ref, keep_ref, g_ref), (dla_ref, dlx_ref, dx_ref),
                            dec, floor)

    def step(i, c):
        t = chunk - 1 - i
        return row(t, h_ref[t - 1], *c)

    carry, acc = jax.lax.fori_loop(0, chunk - 1, step, (carry_ref[...], acc_ref[...]))
    # Row 0 of the chunk: h_{t-1} is the previous chunk's last row, or h0 in the first chunk.
    first = k == pl.num_programs(1) - 1
    h_prev = jnp.where(first, h0_ref[...].astype(F32), before_ref[0])
    carry, acc = row(0, h_prev, carry, acc)
    carry_ref[...], acc_ref[...] = carry, acc
    ddec_ref[...], dh0_ref[...] = acc, carry


def _tpu_call(kernel, inputs, outputs, specs, out_specs, scratch, interpret, name, **params):
    from jax.experimental.pallas import tpu as pltpu

    return pl.pallas_call(
        functools.partial(kernel, chunk=TPU_CHUNK, **params), out_shape=outputs,
        grid=(inputs[0].shape[2] // TPU_BLOCK_D, inputs[0].shape[0] // TPU_CHUNK),
        in_specs=specs, out_specs=out_specs,
        scratch_shapes=[pltpu.VMEM(s, F32) for s in scratch],
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
        interpret=interpret, name=name,
    )(*inputs)


def _tpu_specs(b: int, chunks: int, reverse: bool):
    """BlockSpecs: a time slab, keep's slab, a per-channel vector, a [B, block_d] state, and
    (backward) the row just before each chunk."""
    time = (lambda c, k: (chunks - 1 - k, 0, c)) if reverse else (lambda c, k: (k, 0, c))
    slab = pl.BlockSpec((TPU_CHUNK, b, TPU_BLOCK_D), time)
    keep = pl.BlockSpec((TPU_CHUNK, b, 1), lambda c, k: (time(c, k)[0], 0, 0))
    vector = pl.BlockSpec((1, TPU_BLOCK_D), lambda c, k: (0, c))
    state = pl.BlockSpec((b, TPU_BLOCK_D), lambda c, k: (0, c))
    before = pl.BlockSpec((1, b, TPU_BLOCK_D), lambda c, k: (jnp.maximum((chunks - 1 - k) * TPU_CHUNK - 1, 0), 0, c))
    return slab, keep, vector, state, before


# ---- CUDA: grid (rows, channel blocks); each program walks all of time

def _gpu_forward(la_ref, lx_ref, x_ref, keep_ref, dec_ref, h0_ref, h_ref, *, length):
    """la, lx, x, h: [T, 1, block_d]; keep: [T, 1, 1]; dec, h0: [1, block_d]."""
    dec = dec_ref[...]

    def step(t, h):
        h = _forward_step(la_ref[t], lx_ref[t], x_ref[t], keep_ref[t], dec, h)
        h_ref[t] = h
        return h

    jax.lax.fori_loop(0, length, step, h0_ref[...].astype(F32))


def _gpu_backward(la_ref, lx_ref, x_ref, keep_ref, dec_ref, h_ref, h0_ref, g_ref,
                  dla_ref, dlx_ref, dx_ref, ddec_ref, dh0_ref, *, length, floor):
    dec = dec_ref[...]

    row = functools.partial(_backward_row, (la_ref, lx_ref, x_ref, keep_ref, g_ref), (dla_ref, dlx_ref, dx_ref),
                            dec, floor)

    zeros = jnp.zeros(dec.shape, F32)
    carry, acc = jax.lax.fori_loop(0, length - 1, lambda i, c: row(length - 1 - i, h_ref[length - 2 - i], *c),
                                   (zeros, zeros))
    carry, acc = row(0, h0_ref[...].astype(F32), carry, acc)
    ddec_ref[...], dh0_ref[...] = acc, carry


def _gpu_specs(t: int, block_d: int):
    slab = pl.BlockSpec((t, 1, block_d), lambda i, c: (0, i, c))
    keep = pl.BlockSpec((t, 1, 1), lambda i, c: (0, i, 0))
    vector = pl.BlockSpec((1, block_d), lambda i, c: (0, c))
    state = pl.BlockSpec((1, block_d), lambda i, c: (i, c))
    return slab, keep, vector, state


def _gpu_call(kernel, inputs, outputs, specs, out_specs, block_d, name, interpret=False, **params):
    from jax.experimental.pallas import triton as pltr

    t, b, d = inputs[0].shape
    return pl.pallas_call(
        functools.partial(kernel, length=t, **params), out_shape=outputs, grid=(b, d // block_d),
        in_specs=specs, out_specs=out_specs,
        compiler_params=pltr.CompilerParams(num_warps=4, num_stages=1), interpret=interpret, name=name,
    )(*inputs)


# ---- the two primitives, padded and unpadded around the kernels

def _padded(platform, lin_a, lin_x, x, keep, log_decay, *states):
    """Operands padded for `platform`'s blocks: time to TPU_CHUNK on TPU; channels to the block."""
    block = gpu_block_d(lin_a.shape[2]) if platform == "cuda" else TPU_BLOCK_D
    chunk = 1 if platform == "cuda" else TPU_CHUNK
    slabs = [pad_to(pad_to(v, 0, chunk), 2, block) for v in (lin_a, lin_x, x)]
    keep = pad_to(keep, 0, chunk)
    vectors = [pad_to(v, 1, block) for v in (log_decay[None].astype(F32),) + states]
    return block, slabs, keep, vectors


def _forward(platform: str, lin_a, lin_x, x, keep, log_decay, h0, gpu_interpret: bool = False):
    t, b, d = x.shape
    block, (la, lx, xs), keep, (dec, h0) = _padded(platform, lin_a, lin_x, x, keep, log_decay, h0)
    out = jax.ShapeDtypeStruct(xs.shape, F32)
    if platform == "cuda":
        slab, keep_spec, vector, state = _gpu_specs(xs.shape[0], block)
        h = _gpu_call(_gpu_forward, (la, lx, xs, keep, dec, h0), out, [slab, slab, slab, keep_spec, vector, state],
                      slab, block, "rglru_fused_forward_gpu", gpu_interpret)
    else:
        slab, keep_spec, vector, state, _ = _tpu_specs(b, xs.shape[0] // TPU_CHUNK, reverse=False)
        h = _tpu_call(_tpu_forward, (la, lx, xs, keep, dec, h0), out, [slab, slab, slab, keep_spec, vector, state],
                      slab, [(b, TPU_BLOCK_D)], platform == "cpu", "rglru_fused_forward_tpu")
    return [h[:t, :, :d]]


def _backward(platform: str, lin_a, lin_x, x, keep, log_decay, h, h0, g, *, floor, gpu_interpret: bool = False):
    """`gpu_interpret` (tests on CPU): the CUDA kernels in Pallas interpret mode."""
    t, b, d = x.shape
    block, (la, lx, xs), keep, (dec, h0) = _padded(platform, lin_a, lin_x, x, keep, log_decay, h0)
    h, g = (pad_to(pad_to(v, 0, 1 if platform == "cuda" else TPU_CHUNK), 2, block) for v in (h, g))
    outs = (*(jax.ShapeDtypeStruct(xs.shape, v.dtype) for v in (lin_a, lin_x, x)),
            jax.ShapeDtypeStruct((b, xs.shape[2]), F32), jax.ShapeDtypeStruct((b, xs.shape[2]), F32))
    if platform == "cuda":
        slab, keep_spec, vector, state = _gpu_specs(xs.shape[0], block)
        grads = _gpu_call(_gpu_backward, (la, lx, xs, keep, dec, h, h0, g), outs,
                          [slab, slab, slab, keep_spec, vector, slab, state, slab], (slab, slab, slab, state, state),
                          block, "rglru_fused_backward_gpu", gpu_interpret, floor=floor)
    else:
        slab, keep_spec, vector, state, before = _tpu_specs(b, xs.shape[0] // TPU_CHUNK, reverse=True)
        grads = _tpu_call(_tpu_backward, (la, lx, xs, keep, dec, h, h, h0, g), outs,
                          [slab, slab, slab, keep_spec, vector, slab, before, state, slab],
                          (slab, slab, slab, state, state), [(b, TPU_BLOCK_D)] * 2, platform == "cpu",
                          "rglru_fused_backward_tpu", floor=floor)
    dla, dlx, dx, ddec, dh0 = grads
    return [dla[:t, :, :d], dlx[:t, :, :d], dx[:t, :, :d], ddec[:, :d], dh0[:, :d]]


def _no_kernel(platform: str):
    def fail(*args, **params):
        raise NotImplementedError(f"model.scan_impl='pallas_fused' has no kernel on platform {platform!r}")
    return fail


forward_p = platform_primitive(
    "rglru_fused_forward", lambda la, lx, x, keep, dec, h0: [jax.core.ShapedArray(x.shape, F32)],
    lambda p: functools.partial(_forward, p) if p != "other" else _no_kernel(p))
backward_p = platform_primitive(
    "rglru_fused_backward",
    lambda la, lx, x, keep, dec, h, h0, g, *, floor: [jax.core.ShapedArray(v.shape, v.dtype) for v in (la, lx, x)]
    + [jax.core.ShapedArray(h0.shape, F32)] * 2,
    lambda p: functools.partial(_backward, p) if p != "other" else _no_kernel(p))


# ---- the differentiable operation

@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def fused_rglru(lin_a: jax.Array, lin_x: jax.Array, x: jax.Array, keep: jax.Array, log_decay: jax.Array,
                h0: jax.Array, max_grad: float = 1000.0) -> tuple[jax.Array, jax.Array]:
    """lin_a, lin_x, x: [T, B, D] (any float dtype); keep: [T, B, 1] fp32 (0 at a document
    start); log_decay: [D] fp32; h0: [B, D] -> (h [T, B, D] fp32, h_T [B, D] fp32)."""
    (h,) = forward_p.bind(lin_a, lin_x, x, keep, log_decay.astype(F32), h0.astype(F32))
    return h, h[-1]


def _fwd(lin_a, lin_x, x, keep, log_decay, h0, max_grad):
    h, last = fused_rglru(lin_a, lin_x, x, keep, log_decay, h0, max_grad)
    return (h, last), (lin_a, lin_x, x, keep, log_decay, h0, h)


def _bwd(max_grad, res, cotangents):
    lin_a, lin_x, x, keep, log_decay, h0, h = res
    g_h, g_last = cotangents
    g = g_h.astype(F32).at[-1].add(g_last.astype(F32))
    dla, dlx, dx, ddec, dh0 = backward_p.bind(lin_a, lin_x, x, keep, log_decay.astype(F32), h, h0.astype(F32), g,
                                              floor=1.0 / (4.0 * max_grad**2))
    return (dla, dlx, dx, jnp.zeros_like(keep), ddec.sum(0).astype(log_decay.dtype), dh0.astype(h0.dtype))


fused_rglru.defvjp(_fwd, _bwd)
