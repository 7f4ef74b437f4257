"""The CUDA (Triton) kernels themselves, run on this CPU in Pallas interpret mode: the bare
scan forward and in reverse against a NumPy loop, and the fused RG-LRU's forward and backward
kernels against the TPU kernels (tested against autodiff in tests/test_rglru_fused.py). The
other tests run the TPU kernel in interpret mode and only export the CUDA one, so without
these the kernel a GPU runs would be checked only by `make device-check` on a GPU."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from griffin_core import rglru_fused, scan_pallas

SHAPES = [((37, 3, 200), jnp.float32), ((130, 1, 20), jnp.float32), ((37, 2, 130), jnp.bfloat16)]
"""Lengths and widths off the 128-channel block, batch 1 and > 1, bf16 inputs with fp32 state."""


def _numpy_scan(a, x, h0, reverse):
    a, x, h = (np.asarray(v, np.float64) for v in (a, x, h0))
    out = np.zeros_like(x)
    for t in (range(a.shape[0] - 1, -1, -1) if reverse else range(a.shape[0])):
        h = a[t] * h + x[t]
        out[t] = h
    return out


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape, dtype", SHAPES)
def test_triton_scan_equals_a_numpy_loop(shape, dtype, reverse):
    t, b, d = shape
    ka, kx, kh = jax.random.split(jax.random.key(0), 3)
    a = jax.random.uniform(ka, shape, minval=0.5, maxval=0.9999).at[t // 3, b - 1].set(0.0).astype(dtype)
    x = jax.random.normal(kx, shape).astype(dtype)
    h0 = jax.random.normal(kh, (b, d))
    h, _ = scan_pallas._call_gpu(a, x, h0, reverse, interpret=True)
    assert h.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(h[:, :, :d]), _numpy_scan(a, x, h0, reverse), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, dtype", SHAPES)
def test_triton_fused_kernels_equal_the_tpu_kernels(shape, dtype):
    t, b, d = shape
    k = jax.random.split(jax.random.key(1), 6)
    lin_a, lin_x, x = (jax.random.normal(k[i], shape).astype(dtype) for i in range(3))
    keep = jnp.ones((t, b, 1), jnp.float32).at[0].set(0.0).at[t // 3, b - 1].set(0.0)
    log_decay = -8.0 * jax.nn.softplus(jax.random.normal(k[3], (d,)))
    h0, g = jax.random.normal(k[4], (b, d)), jax.random.normal(k[5], shape)
    args = (lin_a, lin_x, x, keep, log_decay, h0)
    (h_gpu,) = rglru_fused._forward("cuda", *args, gpu_interpret=True)
    (h_tpu,) = rglru_fused._forward("cpu", *args)
    np.testing.assert_allclose(h_gpu, h_tpu, rtol=1e-6, atol=1e-6)
    grads_gpu = rglru_fused._backward("cuda", lin_a, lin_x, x, keep, log_decay, h_tpu, h0, g, floor=2.5e-7,
                                      gpu_interpret=True)
    grads_tpu = rglru_fused._backward("cpu", lin_a, lin_x, x, keep, log_decay, h_tpu, h0, g, floor=2.5e-7)
    for name, got, want in zip(("lin_a", "lin_x", "x", "log_decay (per row)", "h0"), grads_gpu, grads_tpu):
        assert got.dtype == want.dtype, name
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=1e-5,
                                   atol=1e-5 * float(jnp.max(jnp.abs(want.astype(jnp.float32)))), err_msg=name)
