"""`scan_impl=pallas_fused`: the RG-LRU's gates computed inside the scan kernel (interpret mode
on this CPU), against a NumPy loop from the paper's equations and against autodiff of the
unfused computation: outputs, last state, gradients (including the bounded square root's),
fp32 and bf16, resets mid-row, lengths past one 128-step chunk, widths off the 128 block."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import unbox

import reference_numpy as ref
from griffin_core.rglru import RGLRU, sqrt_bounded_derivative
from griffin_core.rglru_fused import fused_rglru


def _unfused(lin_a, lin_x, x, keep, log_decay, h0, max_grad=1000.0):
    """The same function as the unfused model computes it: gates, then `lax.scan`."""
    r, i = jax.nn.sigmoid(lin_a.astype(jnp.float32)), jax.nn.sigmoid(lin_x.astype(jnp.float32))
    log_a = r * log_decay
    starts = keep == 0.0
    a = jnp.where(starts, 0.0, jnp.exp(log_a))
    m = jnp.where(starts, 1.0, sqrt_bounded_derivative(1.0 - jnp.exp(2.0 * log_a), max_grad))
    b = m * i * x.astype(jnp.float32)

    def step(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    last, h = jax.lax.scan(step, h0.astype(jnp.float32), (a, b))
    return h, last


def _inputs(t, b, d, dtype, seed=0, decay_scale=1.0):
    k = jax.random.split(jax.random.key(seed), 6)
    lin_a, lin_x, x = (jax.random.normal(k[i], (t, b, d)).astype(dtype) for i in range(3))
    keep = jnp.ones((t, b, 1), jnp.float32).at[0].set(0.0).at[t // 3, b - 1].set(0.0).at[t - 2, 0].set(0.0)
    log_decay = -8.0 * jax.nn.softplus(jax.random.normal(k[3], (d,))) * decay_scale
    h0 = jax.random.normal(k[4], (b, d))
    cotangent = jax.random.normal(k[5], (t, b, d))
    return (lin_a, lin_x, x, keep, log_decay, h0), cotangent


def _loss(fn, cotangent):
    def loss(*args):
        h, last = fn(*args)
        return jnp.sum(h * cotangent) + jnp.sum(last ** 2)
    return loss


@pytest.mark.parametrize("shape, dtype", [((150, 2, 130), jnp.float32), ((37, 1, 20), jnp.float32),
                                          ((150, 3, 24), jnp.bfloat16)])
def test_outputs_and_gradients_equal_the_unfused_rglru(shape, dtype):
    """150 steps: two 128-step chunks, so the backward pass crosses a chunk boundary."""
    args, cotangent = _inputs(*shape, dtype)
    h, last = jax.jit(fused_rglru)(*args)
    h_ref, last_ref = jax.jit(_unfused)(*args)
    assert h.dtype == last.dtype == jnp.float32
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(last, last_ref, rtol=1e-5, atol=1e-5)
    wrt = (0, 1, 2, 4, 5)
    grads = jax.jit(jax.grad(_loss(fused_rglru, cotangent), argnums=wrt))(*args)
    grads_ref = jax.jit(jax.grad(_loss(_unfused, cotangent), argnums=wrt))(*args)
    tol = 2e-2 if dtype == jnp.bfloat16 else 2e-5
    for name, g, r in zip(("lin_a", "lin_x", "x", "log_decay", "h0"), grads, grads_ref):
        assert g.dtype == r.dtype, name
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(r, np.float32), rtol=tol,
                                   atol=tol * float(jnp.max(jnp.abs(r.astype(jnp.float32)))), err_msg=name)


def test_bounded_square_root_derivative_near_a_equal_one():
    """Decays near zero put 1 - a^2 below the bound's floor: the gradient is the capped one,
    finite, and equal to the unfused computation's."""
    args, cotangent = _inputs(40, 2, 16, jnp.float32, seed=3, decay_scale=1e-7)
    wrt = (0, 4)
    grads = jax.grad(_loss(fused_rglru, cotangent), argnums=wrt)(*args)
    grads_ref = jax.grad(_loss(_unfused, cotangent), argnums=wrt)(*args)
    for g, r in zip(grads, grads_ref):
        assert bool(jnp.all(jnp.isfinite(g)))
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(r))))


def test_layer_equals_numpy_from_the_papers_equations():
    """The RG-LRU layer with the fused kernel against reference_numpy.rglru (float64 loops)."""
    width, t = 24, 140
    layer = RGLRU(width=width, num_blocks=4, scan_impl="pallas_fused")
    x = jax.random.normal(jax.random.key(1), (2, t, width))
    pos = np.concatenate([np.arange(90), np.arange(t - 90)])[None].repeat(2, 0)
    pos[1] = np.arange(t)
    params = unbox(layer.init(jax.random.key(2), x, jnp.asarray(pos)))["params"]
    y, h = layer.apply({"params": params}, x, jnp.asarray(pos))
    expected = ref.rglru(np.asarray(x), pos, jax.tree_util.tree_map(np.asarray, params))
    np.testing.assert_allclose(np.asarray(h), expected, rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(y, h.astype(x.dtype))
