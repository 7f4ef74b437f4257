"""JAX shardings from a `parallelism.MeshPlan`: the device mesh, parameter and train-state
shardings from the logical names the model declares, activation constraints, and batches.

The model marks its parameters with `nn.with_logical_partitioning` and its main activations
with `constrain`. Both are inert until `activate(mesh_plan, mesh)` is entered (on one device,
and in decoding, they cost nothing). Works unchanged across processes (jax.distributed): every
process builds the same global mesh and feeds its own rows.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from griffin_core.parallelism import MESH_AXES, MeshPlan

_ACTIVE: contextvars.ContextVar[tuple[MeshPlan, Mesh] | None] = contextvars.ContextVar("griffin_mesh", default=None)


def make_mesh(plan: MeshPlan, devices: Sequence[Any] | None = None) -> Mesh:
    """The ('data', 'fsdp', 'tensor') mesh over the first plan.devices devices."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) < plan.devices:
        raise ValueError(f"the mesh {plan.sizes} needs {plan.devices} devices; {len(devices)} available")
    grid = np.array(devices[:plan.devices]).reshape([plan.sizes[a] for a in MESH_AXES])
    return Mesh(grid, MESH_AXES)


def spec_of(plan: MeshPlan, names: Sequence[str | None] | None, shape: Sequence[int]) -> P:
    if names is None:
        return P()
    return P(*plan.spec(names, shape))


def logical_names(abstract_boxed: Any) -> Any:
    """Logical names of every leaf of a boxed (`nn.LogicallyPartitioned`) tree, as tuples; a
    leaf without names gets None."""
    return jax.tree_util.tree_map(lambda x: tuple(x.names) if isinstance(x, nn.Partitioned) else None,
                                  abstract_boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def tree_shardings(plan: MeshPlan, mesh: Mesh, names: Any, abstract: Any) -> Any:
    """NamedShardings for an unboxed tree `abstract` (arrays or ShapeDtypeStructs) whose
    logical names are `names` (same structure, tuples or None)."""
    flat_names = jax.tree_util.tree_leaves(names, is_leaf=lambda x: x is None or isinstance(x, tuple))
    leaves, treedef = jax.tree_util.tree_flatten(abstract)
    if len(flat_names) != len(leaves):
        raise ValueError(f"{len(flat_names)} logical names for {len(leaves)} arrays")
    return treedef.unflatten([NamedSharding(mesh, spec_of(plan, n, x.shape)) for n, x in zip(flat_names, leaves)])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Rows split over data x fsdp (whichever of them are larger than 1)."""
    axes = tuple(a for a in ("data", "fsdp") if mesh.shape[a] > 1)
    return NamedSharding(mesh, P(axes if axes else None))


@contextlib.contextmanager
def activate(plan: MeshPlan, mesh: Mesh) -> Iterator[None]:
    """Within this context, `constrain` pins activations to the plan's layout (enter it around
    the tracing of a jitted step: calls of the jitted function do)."""
    token = _ACTIVE.set((plan, mesh))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """x pinned to the layout its logical names give under the active plan; x itself when no
    plan is active or it has one device."""
    active = _ACTIVE.get()
    if active is None or active[0].devices == 1:
        return x
    plan, mesh = active
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec_of(plan, names, x.shape)))


def local(fn, in_names: Sequence[Sequence[str | None]], out_names: Sequence[Sequence[str | None]]):
    """fn run on each device's own shard (`jax.shard_map`) under the active plan, for work that
    is independent across the sharded dimensions (the RG-LRU scan: per sequence and channel).
    A kernel's custom call cannot be split by XLA's partitioner, which would gather its inputs
    whole; run locally it sees its shard and no communication. fn itself with no active plan."""
    def run(*args):
        active = _ACTIVE.get()
        if active is None or active[0].devices == 1:
            return fn(*args)
        plan, mesh = active
        specs = lambda names, arrays: tuple(spec_of(plan, n, a.shape) for n, a in zip(names, arrays))  # noqa: E731
        out_shapes = jax.eval_shape(fn, *args)
        return jax.shard_map(fn, mesh=mesh, in_specs=specs(in_names, args), out_specs=specs(out_names, out_shapes),
                             check_vma=False)(*args)
    return run


def with_mesh(plan: MeshPlan, mesh: Mesh, fn):
    """fn (a jitted function) called within `activate(plan, mesh)`, so its trace sees the plan."""
    def call(*args, **kwargs):
        with activate(plan, mesh):
            return fn(*args, **kwargs)
    call.lower = lambda *a, **k: _lower(plan, mesh, fn, *a, **k)  # type: ignore[attr-defined]
    return call


def _lower(plan, mesh, fn, *args, **kwargs):
    with activate(plan, mesh):
        return fn.lower(*args, **kwargs)


def global_batch(mesh: Mesh, local: dict[str, np.ndarray], global_batch_size: int) -> dict[str, jax.Array]:
    """Assemble this process's rows into global arrays split over data x fsdp."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v, (global_batch_size,) + v.shape[1:])
            for k, v in local.items()}
