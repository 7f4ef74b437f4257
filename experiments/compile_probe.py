"""Compile (never run) runs' sharded train steps for a simulated mesh and read XLA's memory.

`python -m experiments.compile_probe` reads a JSON list of resolved run configs on stdin and
writes one JSON line per run to stdout. It must start with as many CPU devices as the runs'
chips (`--xla_force_host_platform_device_count`; `launch.compile_check` sets it): every input
is a `jax.ShapeDtypeStruct` carrying its sharding, so no parameter memory is allocated and
a 14B model compiles on a laptop.

Per-device bytes = arguments + outputs + temporaries - aliased (the donated train state is
written in place). On CPU XLA may keep some bf16 work in fp32, so the figure is an upper
bound of what a TPU compile of the same program needs.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp

from experiments.programs import mesh_layout, programs
from experiments.spec import validate
from griffin_core.config import ConfigError
from griffin_core.optim_config import OptimSpec
from run_store import one_line
from griffin_core.sharding import batch_sharding, make_mesh

BATCH_DTYPES = {"tokens": jnp.int32, "targets": jnp.int32, "segment_pos": jnp.int32, "loss_mask": jnp.float32,
                "segment_ids": jnp.int32}


def abstract_batch(mesh, batch: int, seq_len: int) -> dict[str, jax.ShapeDtypeStruct]:
    sharding = batch_sharding(mesh)
    return {k: jax.ShapeDtypeStruct((batch, seq_len), d, sharding=sharding) for k, d in BATCH_DTYPES.items()}


def compile_step(cfg: dict[str, Any]):
    """(compiled train step, mesh plan, seconds to lower and compile, the abstract sharded
    train state) of one resolved config."""
    spec = validate(cfg)
    layout = mesh_layout(spec, jax.device_count())
    mesh = make_mesh(layout)
    sched = spec.schedule
    jitted = programs(spec.model, OptimSpec(total_steps=sched.steps, **spec.optim), int(spec.trainer["microbatches"]),
                      layout, mesh)
    started = time.perf_counter()
    compiled = jitted.step.lower(jitted.abstract_state, abstract_batch(mesh, sched.batch_size, sched.seq_len)).compile()
    return compiled, layout, time.perf_counter() - started, jitted.abstract_state


def bytes_per_device(compiled) -> dict[str, int]:
    m = compiled.memory_analysis()
    parts = {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
             "temporaries": m.temp_size_in_bytes, "aliased": m.alias_size_in_bytes}
    parts["total"] = parts["arguments"] + parts["outputs"] + parts["temporaries"] - parts["aliased"]
    return parts


def replicated_state_bytes(abstract_state, strategy: str) -> int:
    """Bytes per device of train-state arrays (parameters, optimiser moments) that a sharding
    strategy (fsdp, fsdp_tp) leaves whole on every device because none of their dimensions
    divides its mesh axes (Hawk 1.3B's gates, 16 blocks of 160 x 160, on 64 devices): the
    part of the state the plan's even split does not account for. 0 under dp."""
    if strategy == "dp":
        return 0
    leaves = jax.tree_util.tree_leaves(abstract_state)
    return sum(x.size * x.dtype.itemsize for x in leaves
               if x.ndim and x.size > 1 and all(axis is None for axis in x.sharding.spec))


def probe(cfg: dict[str, Any]) -> dict[str, Any]:
    compiled, layout, seconds, state = compile_step(cfg)
    return {"mesh": layout.sizes, "strategy": layout.strategy, "compiled_bytes": bytes_per_device(compiled),
            "compile_seconds": seconds, "replicated_state_bytes": replicated_state_bytes(state, layout.strategy)}


def main() -> int:
    configs = json.load(sys.stdin)
    for cfg in configs:
        try:
            out = probe(cfg)
        except (ConfigError, ValueError) as err:  # a run the mesh cannot hold: named, the rest go on
            out = {"error": one_line(err)}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
