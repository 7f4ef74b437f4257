"""Straightforward NumPy (float64) implementations written from the paper's equations, loops
included, as independent references for the JAX layers. Nothing here is shared with the code
under test."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.log1p(np.exp(x))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def dense(x, p):
    y = x @ np.asarray(p["kernel"], np.float64)
    return y + np.asarray(p["bias"], np.float64) if "bias" in p else y


def block_diagonal(x, w, b):
    """x: [..., C]; w: [n, C/n, C/n]; b: [n, C/n]. One block at a time."""
    n, k, _ = w.shape
    out = np.zeros_like(x)
    for i in range(n):
        out[..., i * k:(i + 1) * k] = x[..., i * k:(i + 1) * k] @ w[i] + b[i]
    return out


def rglru(x, pos, p, c=8.0, h0=None):
    """x: [B, T, C], pos: [B, T]. h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t x_t), reset at pos 0."""
    x = np.asarray(x, np.float64)
    bsz, t_len, width = x.shape
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    h = np.zeros((bsz, width)) if h0 is None else f64(h0).copy()
    out = np.zeros_like(x)
    for t in range(t_len):
        xt = x[:, t]
        r = sigmoid(block_diagonal(xt, f64(p["a_gate"]["w"]), f64(p["a_gate"]["b"])))
        i = sigmoid(block_diagonal(xt, f64(p["input_gate"]["w"]), f64(p["input_gate"]["b"])))
        a = np.exp(-c * r * softplus(f64(p["a_param"])))
        for b in range(bsz):
            if pos[b, t] == 0:
                h[b] = i[b] * xt[b]
            else:
                h[b] = a[b] * h[b] + np.sqrt(1.0 - a[b] ** 2) * (i[b] * xt[b])
        out[:, t] = h
    return out


def conv1d(x, pos, w, b):
    """y_t = b + sum_s w[W-1-s] x_{t-s}, only over inputs of the same document."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    width = w.shape[0]
    bsz, t_len, _ = x.shape
    y = np.zeros_like(x) + np.asarray(b, np.float64)
    for bi in range(bsz):
        for t in range(t_len):
            for s in range(width):
                if t - s >= 0 and pos[bi, t] >= s:
                    y[bi, t] += w[width - 1 - s] * x[bi, t - s]
    return y


def rope(x, positions, rope_dims, base=10_000.0):
    """x: [B, T, ..., hd]: rotate pairs (i, i + rope_dims/2) of the first rope_dims dims."""
    x = np.asarray(x, np.float64).copy()
    half = rope_dims // 2
    out = x.copy()
    for bi in range(x.shape[0]):
        for t in range(x.shape[1]):
            for i in range(half):
                theta = positions[bi, t] / base ** (2.0 * i / rope_dims)
                c, s = math.cos(theta), math.sin(theta)
                a, b = x[bi, t, ..., i], x[bi, t, ..., i + half]
                out[bi, t, ..., i] = a * c - b * s
                out[bi, t, ..., i + half] = b * c + a * s
    return out


def mqa(x, pos, p, num_heads, rope_dims, window=None):
    """Multi-query attention by explicit loops. x: [B, T, D]; window=None is global."""
    x = np.asarray(x, np.float64)
    bsz, t_len, d = x.shape
    hd = d // num_heads
    q = dense(x, p["proj_q"]).reshape(bsz, t_len, num_heads, hd)
    k, v = dense(x, p["proj_k"]), dense(x, p["proj_v"])
    if rope_dims:
        q, k = rope(q, pos, rope_dims), rope(k, pos, rope_dims)
    seg = np.cumsum(pos == 0, axis=1)
    out = np.zeros((bsz, t_len, num_heads, hd))
    for bi in range(bsz):
        for t in range(t_len):
            keys = [s for s in range(t + 1) if seg[bi, s] == seg[bi, t] and (window is None or t - s <= window)]
            for h in range(num_heads):
                logits = np.array([q[bi, t, h] @ k[bi, s] for s in keys]) / math.sqrt(hd)
                w = np.exp(logits - logits.max())
                w /= w.sum()
                out[bi, t, h] = sum(wi * v[bi, s] for wi, s in zip(w, keys))
    return dense(out.reshape(bsz, t_len, d), p["proj_final"])


def recurrent_block(x, pos, p, c=8.0):
    y = gelu_tanh(dense(x, p["linear_y"]))
    conv = conv1d(dense(x, p["linear_x"]), pos, p["conv_1d"]["w"], p["conv_1d"]["b"])
    return dense(rglru(conv, pos, p["rg_lru"], c) * y, p["linear_out"])


def rmsnorm(x, scale, eps=1e-6):
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * (1.0 + np.asarray(scale, np.float64))


def mlp(x, p):
    return dense(gelu_tanh(dense(x, p["up_gelu"])) * dense(x, p["up_linear"]), p["down"])


def embed_scale(width):
    """RecurrentGemma's embedding multiplier: sqrt(width) (fp32), rounded to bfloat16."""
    return float(ml_dtypes.bfloat16(np.sqrt(np.float32(width))))


def cross_entropy(logits, targets):
    """-log softmax(logits)[target] in float64. logits: [..., V]; targets: [...] int."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_probs = z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    return -np.take_along_axis(log_probs, np.asarray(targets)[..., None], axis=-1)[..., 0]
