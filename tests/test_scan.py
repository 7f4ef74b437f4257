"""Scan implementations agree with each other and with a NumPy loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from griffin_core import scan as scan_lib


def _inputs(t=37, b=3, d=5, seed=0):
    ka, kb, kh = jax.random.split(jax.random.PRNGKey(seed), 3)
    a = jax.random.uniform(ka, (t, b, d), minval=0.5, maxval=0.9999)
    x = jax.random.normal(kb, (t, b, d))
    h0 = jax.random.normal(kh, (b, d))
    return a, x, h0


def _numpy_scan(a, x, h0):
    a, x, h = np.asarray(a, np.float64), np.asarray(x, np.float64), np.asarray(h0, np.float64).copy()
    out = np.zeros_like(x)
    for t in range(a.shape[0]):
        h = a[t] * h + x[t]
        out[t] = h
    return out


@pytest.mark.parametrize("impl,unroll", [("sequential", 1), ("sequential", 4), ("sequential", True),
                                         ("associative", 0)])
@pytest.mark.parametrize("time_major", [True, False])
def test_scans_match_numpy(impl, unroll, time_major):
    a, x, h0 = _inputs()
    expected = _numpy_scan(a, x, h0)
    if not time_major:
        a, x = jnp.swapaxes(a, 0, 1), jnp.swapaxes(x, 0, 1)
    h, last = scan_lib.linear_scan(a, x, h0, impl=impl, unroll=unroll, time_major=time_major)
    if not time_major:
        h = jnp.swapaxes(h, 0, 1)
    np.testing.assert_allclose(np.asarray(h), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(last), expected[-1], rtol=1e-5, atol=1e-5)


def test_scan_accumulates_in_fp32_for_bf16_inputs():
    a, x, _ = _inputs(t=200)
    h16, _ = scan_lib.linear_scan(a.astype(jnp.bfloat16), x.astype(jnp.bfloat16), impl="sequential")
    assert h16.dtype == jnp.float32
    expected = _numpy_scan(np.asarray(a.astype(jnp.bfloat16), np.float64),
                           np.asarray(x.astype(jnp.bfloat16), np.float64), np.zeros(a.shape[1:]))
    np.testing.assert_allclose(np.asarray(h16), expected, rtol=1e-4, atol=1e-4)


def test_auto_resolves_per_backend():
    assert scan_lib.default_impl("cpu") == "sequential"
    assert scan_lib.default_impl("tpu") == "sequential"
    assert scan_lib.default_unroll("tpu") == 128
    assert scan_lib.default_impl("gpu") == "associative"
    impl, unroll = scan_lib.resolve("auto", 0)
    assert impl in scan_lib.SCAN_IMPLS and unroll >= 1
    with pytest.raises(ValueError, match="scan_impl"):
        scan_lib.resolve("pallas", 0)
