"""Pallas kernels of the linear recurrence h_t = a_t h_{t-1} + x_t (the RG-LRU's scan).

The scan is memory-bound: each element is read twice (a, x) and written once (h). A kernel
wins by reading and writing each element exactly once and keeping the state on chip:

- TPU (Mosaic): the grid is (channel blocks, time chunks). A block of `block_d` channels of a
  `chunk`-step slab [chunk, B, block_d] sits in VMEM; a VMEM scratch carries the fp32 state
  from one chunk to the next (the time axis is sequential, "arbitrary"; channels "parallel").
- NVIDIA GPU (Triton): each program owns `block_d` channels of one sequence and walks all of
  time with the state in registers.
- CPU: the TPU kernel in Pallas interpret mode (`scan_impl=pallas`: a correctness path, not a
  fast one). `scan_impl=auto` runs `_sequential` there instead: a loop writing h in place.

Document resets need nothing here: the RG-LRU sets a_t = 0 at a document start. Inputs may
be bf16; the state and h are fp32. The backward pass (custom VJP) is the reverse-time scan of
the same kernel: with g the cotangent of h, dh_t = g_t + a_{t+1} dh_{t+1}, then dx_t = dh_t,
da_t = dh_t h_{t-1} and dh0 = a_0 dh_0.

Arrays are time-major [T, B, D]; T, B and D need not be multiples of anything (padded here).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from griffin_core.kernel_platforms import (GPU_BLOCK_D, PLATFORMS, TPU_BLOCK_D, TPU_CHUNK, gpu_block_d, pad_to,
                                           platform_primitive)

__all__ = ["GPU_BLOCK_D", "PLATFORMS", "TPU_BLOCK_D", "TPU_CHUNK", "pallas_scan", "scan_p"]


# ---- kernels (the same recurrence; the loop runs backward in time when `reverse`)

def _tpu_kernel(a_ref, x_ref, h0_ref, h_ref, last_ref, state_ref, *, chunk: int, reverse: bool):
    """a, x, h: [chunk, B, block_d]; h0, last, state: [B, block_d]."""
    @pl.when(pl.program_id(1) == 0)
    def _():
        state_ref[...] = h0_ref[...].astype(jnp.float32)

    def step(i, h):
        t = chunk - 1 - i if reverse else i
        h = a_ref[t].astype(jnp.float32) * h + x_ref[t].astype(jnp.float32)
        h_ref[t] = h
        return h

    h = jax.lax.fori_loop(0, chunk, step, state_ref[...])
    state_ref[...] = h
    last_ref[...] = h


def _gpu_kernel(a_ref, x_ref, h0_ref, h_ref, last_ref, *, length: int, reverse: bool):
    """a, x, h: [T, 1, block_d] of one sequence; h0, last: [1, block_d]."""
    def step(i, h):
        t = length - 1 - i if reverse else i
        h = a_ref[t].astype(jnp.float32) * h + x_ref[t].astype(jnp.float32)
        h_ref[t] = h
        return h

    last_ref[...] = jax.lax.fori_loop(0, length, step, h0_ref[...].astype(jnp.float32))


def _call_tpu(a, x, h0, reverse: bool, interpret: bool):
    from jax.experimental.pallas import tpu as pltpu

    t, b, d = a.shape
    # Time padding where the scan meets it only after its real steps (forward: at the end;
    # reverse, whose loop starts at the end: at the front), so it never touches a real output.
    a, x = (pad_to(pad_to(v, 0, TPU_CHUNK, front=reverse), 2, TPU_BLOCK_D) for v in (a, x))
    h0 = pad_to(h0, 1, TPU_BLOCK_D)
    tp, dp = a.shape[0], a.shape[2]
    chunks = tp // TPU_CHUNK
    time = (lambda c, k: (chunks - 1 - k, 0, c)) if reverse else (lambda c, k: (k, 0, c))
    slab = pl.BlockSpec((TPU_CHUNK, b, TPU_BLOCK_D), time)
    state = pl.BlockSpec((b, TPU_BLOCK_D), lambda c, k: (0, c))
    h, last = pl.pallas_call(
        functools.partial(_tpu_kernel, chunk=TPU_CHUNK, reverse=reverse),
        out_shape=(jax.ShapeDtypeStruct((tp, b, dp), jnp.float32), jax.ShapeDtypeStruct((b, dp), jnp.float32)),
        grid=(dp // TPU_BLOCK_D, chunks), in_specs=[slab, slab, state], out_specs=(slab, state),
        scratch_shapes=[pltpu.VMEM((b, TPU_BLOCK_D), jnp.float32)],
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
        interpret=interpret, name="rglru_scan_tpu",
    )(a, x, h0)
    return h, last


def _call_gpu(a, x, h0, reverse: bool, interpret: bool = False):
    """The Triton kernel (`interpret`: the same kernel in Pallas interpret mode, which tests
    run on CPU)."""
    from jax.experimental.pallas import triton as pltr

    t, b, d = a.shape
    block_d = gpu_block_d(d)
    a, x = (pad_to(v, 2, block_d) for v in (a, x))
    h0 = pad_to(h0, 1, block_d)
    dp = a.shape[2]
    slab = pl.BlockSpec((t, 1, block_d), lambda i, c: (0, i, c))
    state = pl.BlockSpec((1, block_d), lambda i, c: (i, c))
    return pl.pallas_call(
        functools.partial(_gpu_kernel, length=t, reverse=reverse),
        out_shape=(jax.ShapeDtypeStruct((t, b, dp), jnp.float32), jax.ShapeDtypeStruct((b, dp), jnp.float32)),
        grid=(b, dp // block_d), in_specs=[slab, slab, state], out_specs=(slab, state),
        compiler_params=pltr.CompilerParams(num_warps=4, num_stages=1), interpret=interpret, name="rglru_scan_gpu",
    )(a, x, h0)


def _scan(a, x, h0, platform: str, reverse: bool = False):
    """h [T, B, D] fp32 and the state after the last step (in scan order) [B, D] fp32."""
    t, b, d = a.shape
    if platform == "cuda":
        h, last = _call_gpu(a, x, h0, reverse)
    else:
        h, last = _call_tpu(a, x, h0, reverse, interpret=platform == "cpu")
    pad = h.shape[0] - t
    h = h[pad:] if reverse else h[:t]
    return h[:, :, :d], last[:, :d]


# ---- one primitive, lowered per platform (kernel_platforms.platform_primitive)

def _abstract(a, x, h0, *, reverse: bool, cpu: str):
    return (jax.core.ShapedArray(a.shape, jnp.float32), jax.core.ShapedArray(h0.shape, jnp.float32))


def _sequential(a, x, h0, reverse: bool):
    """The recurrence written in place into one fp32 buffer (CPU's 'auto', platforms without a
    kernel): step s reads a[s], x[s] and h[s -/+ 1] and overwrites x[s]'s slot with h[s].

    Why not `lax.scan` with stacked outputs: XLA:CPU then copies the carried state each step
    and writes it again into the output, one extra pass over every element; here the loop body
    is one fusion updating the buffer in place, and the buffer is x's own when x is fp32 and
    not needed afterwards (as in the custom VJP below): 1.1-1.2x the lax.scan's GB/s in
    `griffin-bench scan` (docs/benchmarks.md)."""
    t = a.shape[0]
    first, last, step = (t - 1, 0, -1) if reverse else (0, t - 1, 1)
    h = x.astype(jnp.float32)
    h = h.at[first].set(a[first].astype(jnp.float32) * h0.astype(jnp.float32) + h[first])

    def body(i, h):
        s = first + step * i
        row = lambda v, j: jax.lax.dynamic_index_in_dim(v, j, 0, keepdims=False)
        update = row(a, s).astype(jnp.float32) * row(h, s - step) + row(h, s)
        return jax.lax.dynamic_update_index_in_dim(h, update, s, 0)

    h = jax.lax.fori_loop(1, t, body, h)
    return h, h[last]


def _lowering(platform: str):
    def impl(a, x, h0, *, reverse, cpu):
        if platform == "cpu" and cpu == "sequential" or platform == "other":
            return _sequential(a, x, h0, reverse)
        return _scan(a, x, h0, platform, reverse)
    return impl


scan_p = platform_primitive("rglru_linear_scan", _abstract, _lowering)


def _bind(a, x, h0, reverse: bool, cpu: str):
    return scan_p.bind(a, x, h0, reverse=reverse, cpu=cpu)


# ---- the differentiable scan

@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def pallas_scan(a: jax.Array, x: jax.Array, h0: jax.Array, cpu: str = "interpret") -> tuple[jax.Array, jax.Array]:
    """a, x: [T, B, D] (any float dtype), h0: [B, D] -> (h [T, B, D] fp32, h_T [B, D] fp32).

    The kernel of the platform the program is compiled for. cpu: 'interpret' (the TPU kernel
    in Pallas interpret mode: `scan_impl=pallas`) or 'sequential' (`scan_impl=auto`)."""
    h, _ = _bind(a, x, h0, False, cpu)
    return h, h[-1]


def _fwd(a, x, h0, cpu):
    h, _ = _bind(a, x, h0, False, cpu)
    return (h, h[-1]), (a, h, h0, jnp.zeros((), x.dtype))


def _bwd(cpu, res, cotangents):
    a, h, h0, x_dtype = res
    g_h, g_last = cotangents
    g = g_h.astype(jnp.float32).at[-1].add(g_last.astype(jnp.float32))
    # dh_t = g_t + a_{t+1} dh_{t+1}: the same recurrence run backward with a shifted by one.
    a_next = jnp.concatenate([a[1:].astype(jnp.float32), jnp.zeros_like(a[:1], jnp.float32)])
    dh, _ = _bind(a_next, g, jnp.zeros_like(h0, jnp.float32), True, cpu)
    h_prev = jnp.concatenate([h0[None].astype(jnp.float32), h[:-1]])
    return (dh * h_prev).astype(a.dtype), dh.astype(x_dtype.dtype), (a[0].astype(jnp.float32) * dh[0]).astype(h0.dtype)


pallas_scan.defvjp(_fwd, _bwd)
