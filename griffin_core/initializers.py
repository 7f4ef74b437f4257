"""Initialisers of the reference code (see docs/model.md, "Initialisation").

- Dense layers: LeCun normal, variance 1 / fan_in.
- The last projection of each sub-block (recurrent out, attention out, MLP down): variance
  (2 / depth) / fan_in, so the residual stream's variance does not grow with depth.
- Embedding: normal with std 1 / sqrt(D).
- Conv1D: variance 0.01 / width. Biases and RMSNorm scales: 0.
- RG-LRU gates: normal with variance 1 / D_RNN, the fan-in of the whole layer (not of one
  diagonal block, which would be num_blocks times larger).
- RG-LRU Lambda: see `lambda_init`.
- Mamba-2 (its authors' choices): A_log = log A with A uniform in [1, 16]; dt_bias the inverse
  softplus of dt log-uniform in [0.001, 0.1] (at least 1e-4); the D skip 1.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn


def named(initializer, *names):
    """`initializer` whose parameter carries logical axis names (griffin_core.parallelism), one
    per dimension (None: never sharded). Values are those of `initializer`."""
    return nn.with_logical_partitioning(initializer, names)


def zeros(*names):
    return named(nn.initializers.zeros_init(), *names)


def dense(name, features, w_init, names, dtype, param_dtype, bias=True):
    """The blocks' dense layer: kernel from `w_init` and bias zeros, carrying the logical names
    (input axis, output axis) that shard them (griffin_core.parallelism)."""
    return nn.Dense(features, use_bias=bias, kernel_init=named(w_init, *names), bias_init=zeros(names[1]),
                    dtype=dtype, param_dtype=param_dtype, name=name)


def lecun_normal():
    return nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def final_layer_normal(depth: int):
    return nn.initializers.variance_scaling(2.0 / depth, "fan_in", "normal")


def embedding_normal(width: int):
    return nn.initializers.normal(stddev=1.0 / math.sqrt(width))


def conv1d_normal(conv_width: int):
    return nn.initializers.normal(stddev=math.sqrt(0.01 / conv_width))


def gate_normal(lru_width: int):
    return nn.initializers.normal(stddev=1.0 / math.sqrt(lru_width))


def lambda_init(kind: str, c: float, min_rad: float = 0.9, max_rad: float = 0.999):
    """Initialiser of the RG-LRU's `a_param` (= -Lambda): the decay at r_t = 1/c is
    a = sigmoid(Lambda) = exp(-softplus(a_param)).

    'ring' (reference code): a in [min_rad, max_rad] with a^2 uniform (uniform by area of a ring).
    'uniform_ac' (paper text): a^c uniform in [min_rad, max_rad].
    """

    def init(key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape, jnp.float32)
        if kind == "ring":
            log_a = 0.5 * jnp.log(u * (max_rad**2 - min_rad**2) + min_rad**2)
        elif kind == "uniform_ac":
            log_a = jnp.log(u * (max_rad - min_rad) + min_rad) / c
        else:
            raise ValueError(f"lambda_init={kind!r}: expected 'ring' or 'uniform_ac'")
        # softplus(a_param) = -log_a  =>  a_param = log(exp(-log_a) - 1) = log(expm1(-log_a)).
        return jnp.log(jnp.expm1(-log_a)).astype(dtype)

    return init


def ssm_a_log(low: float = 1.0, high: float = 16.0):
    """Mamba-2's A_log: A = exp(A_log) uniform in [low, high]; the decay is exp(-dt A)."""

    def init(key, shape, dtype=jnp.float32):
        return jnp.log(jax.random.uniform(key, shape, jnp.float32, low, high)).astype(dtype)

    return init


def ssm_dt_bias(dt_min: float = 0.001, dt_max: float = 0.1, floor: float = 1e-4):
    """Mamba-2's dt bias: softplus(dt_bias) = dt, dt log-uniform in [dt_min, dt_max] (>= floor)."""

    def init(key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape, jnp.float32)
        dt = jnp.maximum(jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)), floor)
        # softplus(y) = dt  <=>  y = dt + log(1 - exp(-dt)) = dt + log(-expm1(-dt)).
        return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)

    return init
