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


IMPLS = [("sequential", 1), ("sequential", 4), ("sequential", True), ("associative", 0), ("chunked", 0),
         ("pallas", 0), ("auto", 0)]


@pytest.mark.parametrize("impl,unroll", IMPLS)
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


def _loss(impl):
    """A scalar of both outputs, so the gradient flows through h and the last state."""
    def loss(a, x, h0):
        h, last = scan_lib.linear_scan(a, x, h0, impl=impl)
        return jnp.sum(jnp.sin(h) * jnp.arange(h.shape[-1])) + jnp.sum(last ** 2)
    return loss


@pytest.mark.parametrize("impl", ["chunked", "pallas", "associative", "auto"])
@pytest.mark.parametrize("shape, dtype", [((37, 3, 200), jnp.float32), ((130, 1, 20), jnp.float32),
                                          ((37, 2, 130), jnp.bfloat16)])
def test_outputs_last_state_and_gradients_equal_the_sequential_scan(impl, shape, dtype):
    """Lengths and widths that are not multiples of the kernels' chunk (128) and block (128),
    batch 1 and > 1, a document reset mid-row (a = 0), bf16 inputs with the fp32 state."""
    t, b, d = shape
    a, x, h0 = (v.astype(dtype) for v in _inputs(t, b, d, seed=1))
    a = a.at[t // 3, b - 1].set(0.0)
    h, last = scan_lib.linear_scan(a, x, h0, impl=impl)
    h_ref, last_ref = scan_lib.linear_scan(a, x, h0, impl="sequential")
    assert h.dtype == last.dtype == jnp.float32
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(last, last_ref, rtol=1e-5, atol=1e-5)
    grads = jax.grad(_loss(impl), argnums=(0, 1, 2))(a, x, h0)
    grads_ref = jax.grad(_loss("sequential"), argnums=(0, 1, 2))(a, x, h0)
    for name, g, r in zip(("a", "x", "h0"), grads, grads_ref):
        assert g.dtype == r.dtype == dtype
        tol = 2e-2 if dtype == jnp.bfloat16 else 2e-4
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(r, np.float32), rtol=tol, atol=tol,
                                   err_msg=name)


def test_scan_accumulates_in_fp32_for_bf16_inputs():
    a, x, _ = _inputs(t=200)
    h16, _ = scan_lib.linear_scan(a.astype(jnp.bfloat16), x.astype(jnp.bfloat16), impl="sequential")
    assert h16.dtype == jnp.float32
    expected = _numpy_scan(np.asarray(a.astype(jnp.bfloat16), np.float64),
                           np.asarray(x.astype(jnp.bfloat16), np.float64), np.zeros(a.shape[1:]))
    np.testing.assert_allclose(np.asarray(h16), expected, rtol=1e-4, atol=1e-4)


def test_platform_checks_and_defaults():
    assert scan_lib.default_unroll("tpu") == 128 and scan_lib.default_unroll("cpu") == 1
    for platform in ("tpu", "cuda", "cpu"):
        scan_lib.check_platform("pallas", platform)
    for impl in ("pallas", "pallas_fused"):
        scan_lib.check_platform(impl, "cpu")
        with pytest.raises(ValueError, match=rf"model.scan_impl='{impl}' has no kernel on platform 'rocm': "
                                             r"supported \['tpu', 'cuda', 'cpu'\]"):
            scan_lib.check_platform(impl, "rocm")
    scan_lib.check_platform("auto", "rocm")
    with pytest.raises(ValueError, match="scan_impl"):
        scan_lib.linear_scan(*_inputs()[:2], impl="fast")


@pytest.mark.parametrize("family", ["hawk", "griffin"])
def test_model_logits_and_gradients_equal_across_scan_impls(family):
    from griffin_core.config import ModelConfig
    from griffin_core.model import Griffin, init_params
    from griffin_core.train_step import mean_loss

    # Hawk at depth 1 (its recurrent block is Griffin's); Griffin at 3: recurrent, recurrent,
    # local attention. Six compiles each: depth is what they cost.
    base = ModelConfig(family=family, vocab_size=32, width=16, depth=1 if family == "hawk" else 3, num_heads=2,
                       lru_width=24, num_gate_blocks=4, local_window=4, scan_impl="sequential")
    params = init_params(base, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 20), 0, 32)
    pos = jnp.asarray(np.concatenate([np.arange(9), np.arange(11)])[None].repeat(2, 0))
    batch = {"tokens": tokens, "targets": jnp.roll(tokens, -1, 1), "segment_pos": pos,
             "loss_mask": jnp.ones((2, 20), jnp.float32)}

    def run(impl):
        cfg = base.replace(scan_impl=impl)
        logits = Griffin(cfg).apply({"params": params}, tokens, pos)
        return logits, jax.grad(lambda p: mean_loss(cfg, p, batch))(params)

    ref_logits, ref_grads = jax.jit(lambda: run("sequential"))()
    for impl in ("associative", "chunked", "pallas", "pallas_fused", "auto"):
        logits, grads = jax.jit(lambda impl=impl: run(impl))()
        np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-6, err_msg=impl)
        for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(ref_grads)):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6, err_msg=f"{impl} {jax.tree_util.keystr(path)}")
