"""The Mamba-2 mixer against plain NumPy written here from the paper's equations (SSD, arXiv
2405.21060): per head h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t + D x_t, with
the state restarting at each document start; and the whole mixer (projections, Conv1D, SiLU,
softplus, gated RMSNorm) step by step in NumPy from its parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from griffin_core.config import ModelConfig
from griffin_core.mamba2_block import Mamba2Block
from griffin_core.ssd import ssd_chunked, ssd_step


def ssd_reference(x, dt, a, b, c, reset, d_skip):
    """x: [B, T, H, P], dt: [B, T, H], a: [H], b, c: [B, T, G, N], reset: [B, T] -> y, last h."""
    batch, t, heads, p = x.shape
    groups, n = b.shape[2:]
    y = np.zeros((batch, t, heads, p))
    h = np.zeros((batch, heads, p, n))
    for i in range(batch):
        for s in range(t):
            for k in range(heads):
                g = k // (heads // groups)
                decay = 0.0 if reset[i, s] else np.exp(dt[i, s, k] * a[k])
                h[i, k] = decay * h[i, k] + dt[i, s, k] * np.outer(x[i, s, k], b[i, s, g])
                y[i, s, k] = h[i, k] @ c[i, s, g] + d_skip[k] * x[i, s, k]
    return y, h


def random_inputs(seed, batch=2, t=23, heads=4, p=3, groups=2, n=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, t, heads, p))
    dt = np.log1p(np.exp(rng.normal(size=(batch, t, heads)) - 1.0))  # softplus: positive
    a = -rng.uniform(0.5, 4.0, size=heads)
    b, c = rng.normal(size=(2, batch, t, groups, n))
    reset = np.zeros((batch, t), bool)
    reset[:, 0] = True
    reset[0, [r for r in (5, 6, 17) if r < t]] = True  # resets mid-row, two in a row
    reset[1, 11 % t] = True
    d_skip = rng.normal(size=heads)
    return x, dt, a, b, c, reset, d_skip


@pytest.mark.parametrize("chunk", [1, 4, 5, 8, 23, 64])
def test_chunked_equals_sequential_reference(chunk):
    """Chunks that divide the length (1) and that do not (4, 5, 8), one chunk (23) and a chunk
    longer than the sequence (64): outputs and the last state equal the NumPy recurrence."""
    x, dt, a, b, c, reset, d_skip = random_inputs(0)
    want_y, want_h = ssd_reference(x, dt, a, b, c, reset, d_skip)
    y, h = jax.jit(ssd_chunked, static_argnums=6)(*(jnp.asarray(v, jnp.float32) for v in (x, dt, a, b, c)),
                                                  jnp.asarray(reset), chunk)
    y = np.asarray(y) + d_skip[:, None] * x
    np.testing.assert_allclose(y, want_y, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(np.asarray(h), want_h, rtol=2e-5, atol=2e-5)


def test_step_continues_the_chunked_state():
    """ssd_step from the chunked algorithm's last state equals the reference one step later,
    and a reset in the step drops the state."""
    x, dt, a, b, c, reset, d_skip = random_inputs(1, t=9)
    want_y, _ = ssd_reference(x, dt, a, b, c, reset, d_skip)
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    _, h = ssd_chunked(f32(x[:, :8]), f32(dt[:, :8]), f32(a), f32(b[:, :8]), f32(c[:, :8]), jnp.asarray(reset[:, :8]), 3)
    y, _ = ssd_step(f32(x[:, 8]), f32(dt[:, 8]), f32(a), f32(b[:, 8]), f32(c[:, 8]), jnp.asarray(reset[:, 8]), h)
    np.testing.assert_allclose(np.asarray(y) + d_skip[:, None] * x[:, 8], want_y[:, 8], rtol=2e-5, atol=2e-5)
    y_reset, _ = ssd_step(f32(x[:, 8]), f32(dt[:, 8]), f32(a), f32(b[:, 8]), f32(c[:, 8]), jnp.ones(2, bool), h)
    fresh, _ = ssd_step(f32(x[:, 8]), f32(dt[:, 8]), f32(a), f32(b[:, 8]), f32(c[:, 8]), jnp.ones(2, bool), 0 * h)
    np.testing.assert_allclose(np.asarray(y_reset), np.asarray(fresh), rtol=1e-6)


def test_chunked_gradients_equal_across_chunk_sizes():
    """The chunk size changes the work, not the function: gradients agree too."""
    x, dt, a, b, c, reset, _ = random_inputs(2, t=19)
    args = [jnp.asarray(v, jnp.float32) for v in (x, dt, a, b, c)]

    def grads(chunk):
        loss = lambda *v: jnp.sum(jnp.sin(ssd_chunked(*v, jnp.asarray(reset), chunk)[0]))  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))(*args)

    for got, want in zip(grads(4), grads(1)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def _silu(v):
    return v / (1.0 + np.exp(-v))


def _conv(v, w, bias, pos):
    """Causal depthwise conv with document masking: w[W-1] multiplies the current input."""
    width = w.shape[0]
    out = np.zeros_like(v) + bias
    for shift in range(width):
        shifted = np.zeros_like(v)
        shifted[:, shift:] = v[:, : v.shape[1] - shift]
        out += shifted * (pos >= shift)[..., None] * w[width - 1 - shift]
    return out


def mixer_reference(p, u, pos, cfg):
    """The mixer in NumPy from its parameters (names as in Mamba2Block)."""
    k = lambda name: np.asarray(p[name]["kernel"], np.float64)  # noqa: E731
    z, x, bc, dt = u @ k("in_z"), u @ k("in_x"), u @ k("in_bc"), u @ k("in_dt")
    x = _silu(_conv(x, np.asarray(p["conv_x"]["w"]), np.asarray(p["conv_x"]["b"]), pos))
    bc = _silu(_conv(bc, np.asarray(p["conv_bc"]["w"]), np.asarray(p["conv_bc"]["b"]), pos))
    dt = np.log1p(np.exp(dt + np.asarray(p["dt_bias"])))
    batch, t = u.shape[:2]
    gn = cfg.ssm_groups * cfg.ssm_state
    xh = x.reshape(batch, t, cfg.ssm_heads, cfg.ssm_head_dim)
    b = bc[..., :gn].reshape(batch, t, cfg.ssm_groups, cfg.ssm_state)
    c = bc[..., gn:].reshape(batch, t, cfg.ssm_groups, cfg.ssm_state)
    y, _ = ssd_reference(xh, dt, -np.exp(np.asarray(p["a_log"])), b, c, pos == 0, np.asarray(p["d_skip"]))
    gated = y.reshape(batch, t, -1) * _silu(z)
    groups = gated.reshape(batch, t, cfg.ssm_groups, -1)
    normed = groups / np.sqrt(np.mean(groups**2, axis=-1, keepdims=True) + cfg.norm_eps)
    normed = normed.reshape(batch, t, -1) * (1.0 + np.asarray(p["norm_scale"]))
    return normed @ k("out")


def test_mixer_equals_numpy_reference():
    cfg = ModelConfig(family="mamba2", vocab_size=32, width=12, depth=2, num_heads=2, lru_width=16,
                      num_gate_blocks=4, ssm_state=3, ssm_head_dim=4, ssm_groups=2, ssm_chunk=5)
    block = Mamba2Block(cfg)
    u = jax.random.normal(jax.random.PRNGKey(1), (2, 13, 12))
    pos = np.array([list(range(13)), list(range(6)) + list(range(7))], np.int32)
    params = nn.unbox(block.init(jax.random.PRNGKey(0), u, jnp.asarray(pos))["params"])
    params = jax.tree_util.tree_map(lambda v: v + 0.1 * jax.random.normal(jax.random.PRNGKey(2), v.shape), params)
    got, _ = block.apply({"params": params}, u, jnp.asarray(pos))
    want = mixer_reference(params, np.asarray(u, np.float64), pos, cfg)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)


def test_initial_decay_and_step_size_follow_the_authors():
    """A = exp(A_log) in [1, 16], softplus(dt_bias) in [0.001, 0.1], D = 1."""
    cfg = ModelConfig(family="mamba2", vocab_size=32, width=64, depth=2, num_heads=2, lru_width=16,
                      num_gate_blocks=4, ssm_state=4, ssm_head_dim=2)
    u = jnp.zeros((1, 4, 64))
    p = nn.unbox(Mamba2Block(cfg).init(jax.random.PRNGKey(0), u, jnp.zeros((1, 4), jnp.int32))["params"])
    a = np.exp(np.asarray(p["a_log"]))
    dt = np.log1p(np.exp(np.asarray(p["dt_bias"])))
    assert a.shape == (64,) and 1.0 <= a.min() and a.max() <= 16.0 and a.max() - a.min() > 5
    assert 0.001 * 0.999 <= dt.min() and dt.max() <= 0.1 * 1.001 and dt.max() / dt.min() > 10
    np.testing.assert_array_equal(np.asarray(p["d_skip"]), 1.0)
