"""What the griffin_core.counting tests share: tiny configs, and the compiled loss whose
XLA cost and memory analyses the FLOP and memory counts are checked against. JAX is imported
inside the functions, so a test of the plain-Python counters does not start it."""

from __future__ import annotations

import pathlib

from griffin_core.config import ModelConfig

FAMILIES = ("mqa", "hawk", "griffin", "mamba2")
"""(mamba2_mlp is mamba2's mixer plus the MLP both are counted with: its counts are checked in
test_config and tests/test_model_properties.py builds it.)"""
ROOT = pathlib.Path(__file__).resolve().parents[1]


def jax_modules():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def xla_flops(cost) -> float:
    """XLA's FLOPs: our conventions count a transcendental (exp, tanh, ...) as one FLOP, XLA
    reports them apart from 'flops'. jax 0.10 returns a dict (older versions a list of dicts)."""
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"]) + float(cost.get("transcendentals", 0.0))


def tiny(family: str, **kw) -> ModelConfig:
    fields = dict(family=family, vocab_size=64, width=64, depth=3, num_heads=2, lru_width=96,
                  num_gate_blocks=4, local_window=8, ssm_state=16, ssm_head_dim=16, ssm_chunk=24)
    fields.update(kw)
    return ModelConfig(**fields)


def loss_fn(cfg: ModelConfig):
    """The model's mean next-token loss as a function of (params, tokens, segment_pos)."""
    jax, jnp = jax_modules()
    from griffin_core.model import Griffin

    model = Griffin(cfg)

    def loss(params, tokens, segment_pos):
        logits = model.apply({"params": params}, tokens, segment_pos)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, tokens[..., None], axis=-1))

    return loss


def abstract_inputs(cfg: ModelConfig, batch: int, seq_len: int):
    """Shapes of `loss_fn`'s arguments, for lowering without allocating anything."""
    jax, jnp = jax_modules()
    from griffin_core.model import init_params

    params = jax.eval_shape(lambda: init_params(cfg, jax.random.PRNGKey(0), seq_len=1))
    tokens = jax.ShapeDtypeStruct((batch, seq_len), jnp.int32)
    return params, tokens, tokens
