"""Device meshes and shardings for data (and model) parallelism.

The mesh has axes ('data', 'model'). Batches are split over 'data'. Parameters are replicated
over 'data'; on 'model' a matrix is split along its larger dimension when that dimension
divides evenly (a simple rule that keeps the big MLP and embedding matrices sharded for sizes
that need it). Works unchanged across processes (jax.distributed): every process builds the
same global mesh and feeds its own rows.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(data_parallel: int = -1, model_parallel: int = 1, devices: list | None = None,
              batch_size: int | None = None) -> Mesh:
    """data_parallel = -1: as many devices as divide the batch (all of them for a batch that
    is a multiple of the device count)."""
    devices = list(jax.devices() if devices is None else devices)
    if data_parallel == -1:
        data_parallel = len(devices) // model_parallel
        while batch_size and data_parallel > 1 and batch_size % data_parallel:
            data_parallel -= 1
    needed = data_parallel * model_parallel
    if needed > len(devices) or needed < 1:
        raise ValueError(f"trainer.data_parallel x model_parallel = {data_parallel} x {model_parallel} "
                         f"needs {needed} devices; {len(devices)} available")
    if batch_size and batch_size % data_parallel:
        raise ValueError(f"trainer.data_parallel={data_parallel} must divide the batch size {batch_size}")
    grid = np.array(devices[:needed]).reshape(data_parallel, model_parallel)
    return Mesh(grid, ("data", "model"))


def param_spec(shape: tuple[int, ...], model_size: int) -> P:
    if model_size == 1 or len(shape) < 2:
        return P()
    axis = int(np.argmax(shape))
    if shape[axis] % model_size:
        return P()
    return P(*[("model" if i == axis else None) for i in range(len(shape))])


def param_shardings(mesh: Mesh, params: Any) -> Any:
    """NamedSharding for every leaf of a parameter-shaped tree (arrays or ShapeDtypeStructs)."""
    size = mesh.shape["model"]
    return jax.tree_util.tree_map(lambda x: NamedSharding(mesh, param_spec(tuple(x.shape), size)), params)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(mesh: Mesh, local: dict[str, np.ndarray], global_batch_size: int) -> dict[str, jax.Array]:
    """Assemble this process's rows into global arrays split over 'data'."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v, (global_batch_size,) + v.shape[1:])
            for k, v in local.items()}
