"""A run's compiled side: its mesh, the train state's shardings, the jitted programs, and the
restore of a checkpoint into them. Also used without devices: `abstract_state` and the
programs' `lower` let the sweep planner compile a run for a simulated mesh.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import optax

from experiments.spec import RunSpec
from griffin_core.checkpoint import Checkpointer, abstract_like
from griffin_core.config import ConfigError
from griffin_core.layer_layout import to_layout
from griffin_core.model import init_params, param_logical_names
from griffin_core.optim import learning_rate_schedule, make_optimizer
from griffin_core.optim_config import OptimSpec
from griffin_core.parallelism import MeshPlan, check_batch, check_model, resolve_mesh
from griffin_core.scan import check_platform, current_platform
from griffin_core.sharding import batch_sharding, replicated, tree_shardings, with_mesh
from griffin_core.train_step import TrainState, eval_step, init_state, predictions, train_step


@dataclasses.dataclass(frozen=True)
class Programs:
    """A run's jitted programs."""

    init: Callable  # PRNG key -> train state, created directly in its shardings
    step: Callable  # (state, batch) -> (state, metrics); donates the state
    eval: Callable  # (params, batch) -> per-sequence and per-position loss sums
    predict: Callable  # (params, batch) -> [B, T] argmax tokens
    state_sharding: Any  # the train state's shardings (a TrainState of NamedShardings)
    abstract_state: Any  # the train state's ShapeDtypeStructs, with those shardings


INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
"""The init program runs once per run: LLVM's level 1 compiles it in about half the time of the
default (1.7 s less per run on CPU) and gives bitwise the same state (tests/test_train.py)."""


def mesh_layout(spec: RunSpec, devices: int) -> MeshPlan:
    """The run's mesh over `devices` devices, checked against its model and batch, and its
    scan against the platform (ConfigError naming the key, before anything compiles)."""
    trainer = spec.trainer
    layout = resolve_mesh(trainer["strategy"], trainer["mesh"], devices, trainer["axis_rules"])
    check_model(spec.model, layout)
    check_batch(layout, spec.schedule.batch_size, int(trainer["microbatches"]))
    try:
        check_platform(spec.model.scan_impl, current_platform())
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return layout


@functools.lru_cache(maxsize=1)
def programs(model, optim: OptimSpec, microbatches: int, layout: MeshPlan, mesh) -> Programs:
    """The jitted programs of a run. Cached (one entry) because a sweep's worker process trains
    runs in turn: the next run with the same model, optimiser and mesh (another seed, say) takes
    them traced and compiled already. The PRNG key is an argument, not a constant, so that
    seeds share the init program here and in the persistent compilation cache."""
    optimizer, lr_schedule = make_optimizer(optim), learning_rate_schedule(optim)

    # Parameters are created directly in their shardings (no host-side copy of a large model).
    def make_state(key):
        return init_state(init_params(model, key), optimizer)

    abstract = jax.eval_shape(make_state, jax.random.PRNGKey(0))
    state_sharding = state_shardings(model, optimizer, layout, mesh, abstract)
    on_mesh = functools.partial(with_mesh, layout, mesh)
    step = jax.jit(functools.partial(train_step, model, optimizer, lr_schedule, microbatches=microbatches),
                   in_shardings=(state_sharding, batch_sharding(mesh)), out_shardings=(state_sharding, replicated(mesh)),
                   donate_argnums=0)
    init = jax.jit(make_state, out_shardings=state_sharding, compiler_options=INIT_COMPILER_OPTIONS)
    return Programs(init=on_mesh(init), step=on_mesh(step), eval=on_mesh(jax.jit(functools.partial(eval_step, model))),
                    predict=on_mesh(jax.jit(functools.partial(predictions, model))), state_sharding=state_sharding,
                    abstract_state=abstract_like(abstract, state_sharding))


def state_shardings(model, optimizer, layout: MeshPlan, mesh, abstract_state):
    """The train state's shardings: parameters by their logical names under `layout`, the
    optimiser's moments as their parameters (optax.tree_map_params), counters replicated."""
    params = tree_shardings(layout, mesh, param_logical_names(model), abstract_state.params)
    opt_state = optax.tree_map_params(optimizer, lambda _, s: s, abstract_state.opt_state, params,
                                      transform_non_params=lambda _: replicated(mesh))
    return abstract_state.replace(step=replicated(mesh), params=params, opt_state=opt_state)


def restore_state(checkpoints: Checkpointer, step: int, model, jitted: Programs) -> TrainState:
    """The train state saved at `step`, placed in the run's shardings without first creating
    one (a resume holds one train state). A checkpoint of the other layer layout is read in
    its own layout (replicated) and converted: a layout change holds two copies, once."""
    stored_scanned = checkpoints.stored_scanned(step)
    target = jitted.abstract_state
    if stored_scanned == model.scan_layers:
        return checkpoints.restore(step, target)
    mesh = jax.tree_util.tree_leaves(jitted.state_sharding)[0].mesh
    other = jax.eval_shape(lambda s: to_layout(s, model, stored_scanned), target)
    restored = checkpoints.restore(step, abstract_like(other, jax.tree_util.tree_map(lambda _: replicated(mesh), other)))
    convert = jax.jit(lambda s: to_layout(s, model, model.scan_layers), out_shardings=jitted.state_sharding)
    return convert(restored)
