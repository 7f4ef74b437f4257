"""Orbax checkpoints of the train state.

Saves are synchronous and finalised by Orbax with an atomic rename, so a process killed during
a save leaves an unfinished temporary folder that is ignored (and cleaned) at the next start.
Restores use the target state's shardings, so a resumed run has exactly the layout (and on CPU
the bitwise numerics) of an uninterrupted one.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 2):
        path = directory if "://" in directory else os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               cleanup_tmp_directories=True, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(path, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int, target: Any) -> Any:
        """Restore into `target`'s structure, dtypes and shardings (arrays or ShapeDtypeStructs)."""
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
