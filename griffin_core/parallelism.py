"""Parallelism as named strategies: a three-axis mesh and a table from logical axes to it.

Plain Python (the sweep planner checks meshes without JAX). `griffin_core.sharding` turns the
result into JAX shardings.

Every parameter and the main activations carry logical axis names (`LOGICAL_AXES`; the model
declares them where it creates each array). A strategy's rule table maps those names onto the
mesh axes `data`, `fsdp` and `tensor`:

- `dp`: batches split over data x fsdp; parameters, gradients and optimiser state replicated.
- `fsdp` (ZeRO-3): batches as dp; every parameter split over `fsdp` along its first dimension
  that divides evenly (gathered layer by layer inside the step, which XLA schedules).
- `fsdp_tp`: fsdp plus Megatron-style tensor parallelism, as the paper's section 4.1: MLP
  up-projections split on their output and the down-projection on its input (one all-reduce
  per MLP); query heads split, the single key/value head replicated; the recurrent block's
  input projections split on D_RNN, its Conv1D and the RG-LRU's block-diagonal gates by whole
  blocks, so the recurrence runs with no communication; its output projection on its input;
  embeddings and logits on the vocabulary. Mamba-2 mixers split by whole heads (z, x, dt, A,
  D and the SSD state), B and C replicated, the output projection on its input.

A rule is (logical name, mesh axes). Rules are tried in order; for each dimension of an array
the first rule naming it whose mesh axes are not yet used by that array and whose size divides
the dimension wins (axes of size 1 are skipped); otherwise the dimension is replicated.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from griffin_core.config import ConfigError, ModelConfig

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_AXES = (
    # parameters
    "vocab", "embed", "mlp", "q_heads", "kv", "rnn", "rnn_block", "rnn_gate", "conv", "layers",
    "ssm_inner", "ssm_heads", "ssm_bc",
    # activations
    "batch", "length", "act_embed", "act_mlp", "act_heads", "act_kv", "act_rnn", "act_vocab", "act_ssm",
)
"""Parameters: vocab V, embed D, mlp M*D, q_heads H*head_dim (query heads flattened), kv head_dim
(the shared key/value head), rnn D_RNN, rnn_block the gate blocks, rnn_gate D_RNN / blocks (inside
one block), conv the Conv1D's width, layers the stacked axis of scanned layers; Mamba-2's
ssm_inner (its heads x head dimension), ssm_heads (per-head decay, dt and skip) and ssm_bc
(B and C, shared by the heads of a group: never split by tensor parallelism). Activations:
batch B, length T, act_* the activation counterparts of the parameter axes."""

Rule = tuple[str, tuple[str, ...]]

_BATCH: list[Rule] = [("batch", ("data", "fsdp"))]
_FSDP: list[Rule] = [("embed", ("fsdp",)), ("mlp", ("fsdp",)), ("q_heads", ("fsdp",)), ("rnn", ("fsdp",)),
                     ("rnn_block", ("fsdp",)), ("rnn_gate", ("fsdp",)), ("vocab", ("fsdp",)),
                     ("ssm_inner", ("fsdp",))]
_TENSOR: list[Rule] = [("vocab", ("tensor",)), ("mlp", ("tensor",)), ("q_heads", ("tensor",)),
                       ("rnn", ("tensor",)), ("rnn_block", ("tensor",)), ("ssm_inner", ("tensor",)),
                       ("ssm_heads", ("tensor",)),
                       ("act_vocab", ("tensor",)), ("act_mlp", ("tensor",)), ("act_heads", ("tensor",)),
                       ("act_rnn", ("tensor",)), ("act_ssm", ("tensor",))]

STRATEGIES: dict[str, list[Rule]] = {
    "dp": _BATCH,
    "fsdp": _BATCH + _FSDP,
    # Tensor rules first: a [D, M*D] kernel takes `tensor` on its output and then `fsdp` on D.
    "fsdp_tp": _BATCH + _TENSOR + _FSDP,
}

FILL_AXIS = {"dp": "data", "fsdp": "fsdp", "fsdp_tp": "fsdp"}
"""The axis a strategy's mesh grows when its size is left unset (-1)."""


@dataclasses.dataclass(frozen=True)
class MeshPlan:
    """A resolved mesh: axis sizes whose product is the device count, and the rule table."""

    strategy: str
    sizes: dict[str, int]
    rules: tuple[Rule, ...]

    def __hash__(self) -> int:
        return hash((self.strategy, tuple(self.sizes.items()), self.rules))

    @property
    def devices(self) -> int:
        return math.prod(self.sizes.values())

    @property
    def batch_shards(self) -> int:
        """How many ways a batch is split (data x fsdp)."""
        return self.sizes["data"] * self.sizes["fsdp"]

    def spec(self, names: Sequence[str | None], shape: Sequence[int]) -> tuple[Any, ...]:
        """Mesh axes of each dimension of an array with these logical names and shape: None
        (replicated), one axis name, or a tuple of axis names."""
        return partition_entries(names, shape, self.sizes, self.rules)


def partition_entries(names: Sequence[str | None], shape: Sequence[int], sizes: Mapping[str, int],
                      rules: Sequence[Rule]) -> tuple[Any, ...]:
    if len(names) != len(shape):
        raise ValueError(f"logical names {tuple(names)} do not match the shape {tuple(shape)}")
    out: list[Any] = [None] * len(shape)
    decided = [False] * len(shape)
    used: set[str] = set()
    for name, axes in rules:
        if name not in names:
            continue
        dim = list(names).index(name)
        if decided[dim]:
            continue
        if not axes:  # an explicit "replicate" rule
            decided[dim] = True
            continue
        live = tuple(a for a in axes if sizes.get(a, 1) > 1)
        if not live or used & set(live) or shape[dim] % math.prod(sizes[a] for a in live):
            continue
        out[dim] = live[0] if len(live) == 1 else live
        decided[dim] = True
        used |= set(live)
    return tuple(out)


def resolve_mesh(strategy: str, sizes: Mapping[str, Any], devices: int,
                 overrides: Mapping[str, Any] | None = None, key: str = "trainer") -> MeshPlan:
    """The mesh for `devices` devices. sizes: axis -> size, -1 (fill) or None (1, or the
    strategy's fill axis when no axis is -1). overrides: logical name -> mesh axis, list of
    axes, or None (replicate); they take precedence over the strategy's rules."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"{key}.strategy={strategy!r} is unknown; known strategies: {sorted(STRATEGIES)}")
    unknown = sorted(set(sizes) - set(MESH_AXES))
    if unknown:
        raise ConfigError(f"{key}.mesh has unknown axes {unknown}; the mesh axes are {list(MESH_AXES)}")
    given: dict[str, int | None] = {}
    for axis in MESH_AXES:
        value = sizes.get(axis)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or (value < 1 and value != -1)):
            raise ConfigError(f"{key}.mesh.{axis}={value!r} must be a positive integer or -1 (fill)")
        given[axis] = value
    fills = [a for a, v in given.items() if v == -1]
    if len(fills) > 1:
        raise ConfigError(f"{key}.mesh: only one axis may be -1 (fill); got {fills}")
    default_fill = FILL_AXIS[strategy] if given[FILL_AXIS[strategy]] is None else None
    fill = fills[0] if fills else default_fill
    fixed = {a: (v if v not in (None, -1) else 1) for a, v in given.items()}
    if fill is not None:
        rest = math.prod(v for a, v in fixed.items() if a != fill)
        if devices % rest:
            raise ConfigError(f"{key}.mesh: the fixed axes ({_show(fixed, fill)}) = {rest} do not divide "
                              f"the {devices} devices")
        fixed[fill] = devices // rest
    if math.prod(fixed.values()) != devices:
        raise ConfigError(f"{key}.mesh: data x fsdp x tensor = {_show(fixed)} = {math.prod(fixed.values())} "
                          f"is not the device count {devices}")
    rules = tuple(_override_rules(overrides or {}, key)) + tuple(STRATEGIES[strategy])
    return MeshPlan(strategy, fixed, rules)


def _show(sizes: Mapping[str, int], skip: str | None = None) -> str:
    return " x ".join(f"{a}={v}" for a, v in sizes.items() if a != skip)


def _override_rules(overrides: Mapping[str, Any], key: str) -> list[Rule]:
    rules: list[Rule] = []
    for name, axes in overrides.items():
        if name not in LOGICAL_AXES:
            raise ConfigError(f"{key}.axis_rules.{name}: unknown logical axis; known: {list(LOGICAL_AXES)}")
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        bad = [a for a in axes if a not in MESH_AXES]
        if bad:
            raise ConfigError(f"{key}.axis_rules.{name}={list(axes)}: unknown mesh axes {bad}; known: {list(MESH_AXES)}")
        # An empty tuple still claims the name first: that dimension stays replicated.
        rules.append((name, axes))
    return rules


def check_settings(strategy: str, sizes: Mapping[str, Any], overrides: Mapping[str, Any] | None,
                   cfg: ModelConfig | None = None, key: str = "trainer") -> None:
    """Everything about a mesh that can be checked before the device count is known (names,
    sizes, rules, and that the tensor size divides the model), raising ConfigError."""
    fixed = [v for v in sizes.values() if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    plan = resolve_mesh(strategy, sizes, math.prod(fixed), overrides, key)
    if cfg is not None:
        check_model(cfg, plan, key)


def check_batch(mesh: MeshPlan, batch: int, microbatches: int) -> None:
    """Every device of the batch axes gets whole sequences in every microbatch."""
    if batch % (mesh.batch_shards * microbatches):
        raise ConfigError(f"trainer.microbatches={microbatches}: the batch of {batch} sequences does not split "
                          f"over data x fsdp = {mesh.batch_shards} devices x {microbatches} microbatches")


def check_model(cfg: ModelConfig, mesh: MeshPlan, key: str = "trainer") -> None:
    """Tensor parallelism needs whole heads, MLP columns and gate blocks per device."""
    tensor = mesh.sizes["tensor"]
    if tensor == 1:
        return
    needs = {"model.num_heads": cfg.num_heads, "model.mlp_width": cfg.mlp_width,
             "model.num_gate_blocks": cfg.num_gate_blocks}
    if cfg.has_ssm:
        needs["model.ssm_heads"] = cfg.ssm_heads
    for name, value in needs.items():
        if value % tensor:
            raise ConfigError(f"{key}.mesh.tensor={tensor} does not divide {name}={value}: tensor parallelism "
                              f"splits whole heads, MLP columns and gate blocks")


__all__ = ["FILL_AXIS", "LOGICAL_AXES", "MESH_AXES", "MeshPlan", "STRATEGIES", "check_batch", "check_model", "check_settings",
           "partition_entries",
           "resolve_mesh"]
