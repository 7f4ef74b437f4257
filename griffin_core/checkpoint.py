"""Orbax checkpoints of the train state, as two items: `params` and `optimizer` (the step and
the optimiser state), so evaluation reads the parameters alone.

Restores go into an abstract target (`jax.ShapeDtypeStruct`s carrying shardings), so a resume
never holds two train states and a checkpoint written on one mesh restores on any other
(Orbax reads each device's slice). A checkpoint written with the other layer layout
(`model.scan_layers`) is restored in its own layout and converted (griffin_core.layer_layout).

Saves are finalised by Orbax with an atomic rename, so a process killed during a save leaves
an unfinished temporary folder that is ignored (and cleaned) at the next start. They are
asynchronous when `async_save` is set: the arrays are copied off the device before `save`
returns and written in the background; `close` (or the next save) waits for them.

The folder is a local path or a URL Orbax writes itself (`gs://`; on a bucket Orbax marks a
finished step with `commit_success.txt` instead of renaming it). Other buckets are staged by
the run store (run_store.checkpoints).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from griffin_core.layer_layout import SCAN_NAME

ITEMS = ("params", "optimizer")
LEGACY_ITEM = "default"
"""Checkpoints before the split held the whole TrainState in one item."""


def abstract_like(tree: Any, shardings: Any | None = None) -> Any:
    """ShapeDtypeStructs of `tree` (arrays or ShapeDtypeStructs), with `shardings` if given
    (a matching tree of shardings) or the arrays' own."""
    if shardings is None:
        return jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def orbax_path(directory: str | os.PathLike) -> epath.Path:
    """`directory` as Orbax takes it: an absolute local path, or a URL Orbax writes itself
    (`gs://`). etils.epath (Orbax's path type) parses URLs, so a relative local path is the
    one thing made absolute here. A bucket Orbax cannot write (`s3://`) is staged by the
    caller (run_store.checkpoints)."""
    path = epath.Path(directory)
    return path if path.is_absolute() else path.resolve()


class LegacyCheckpoint(ValueError):
    """A checkpoint from before the params/optimizer split: only the whole state restores."""


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2, async_save: bool = False,
                 read_only: bool = False):
        path = orbax_path(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                               cleanup_tmp_directories=not read_only, read_only=read_only,
                                               enable_async_checkpointing=async_save)
        # Handlers named up front, so metadata (the stored layout) reads before any restore.
        handlers = {name: ocp.StandardCheckpointHandler() for name in (*ITEMS, LEGACY_ITEM)}
        self._manager = ocp.CheckpointManager(path, options=options, item_handlers=handlers)

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """state: a TrainState (step, params, opt_state)."""
        self._manager.save(step, force=True, args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            optimizer=ocp.args.StandardSave({"step": state.step, "opt_state": state.opt_state})))

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def _items(self, step: int) -> set[str]:
        return {k for k, v in self._manager.item_metadata(step).items() if v is not None}

    def stored_scanned(self, step: int) -> bool:
        """Whether the checkpoint at `step` holds its layers in the scanned layout."""
        meta = self._manager.item_metadata(step)
        params = meta["params"] if meta.get("params") is not None else meta[LEGACY_ITEM]["params"]
        return SCAN_NAME in params

    def restore(self, step: int, abstract_state: Any) -> Any:
        """The TrainState at `step`, restored into `abstract_state`'s structure, dtypes and
        shardings (ShapeDtypeStructs; see `abstract_like`)."""
        if LEGACY_ITEM in self._items(step):
            out = self._manager.restore(step, args=ocp.args.Composite(
                **{LEGACY_ITEM: ocp.args.StandardRestore(abstract_state)}))
            return out[LEGACY_ITEM]
        out = self._manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_state.params),
            optimizer=ocp.args.StandardRestore({"step": abstract_state.step, "opt_state": abstract_state.opt_state})))
        return abstract_state.replace(step=out["optimizer"]["step"], params=out["params"],
                                      opt_state=out["optimizer"]["opt_state"])

    def restore_params(self, step: int, abstract_params: Any) -> Any:
        """The parameters alone (the optimiser state is not read)."""
        if LEGACY_ITEM in self._items(step):
            raise LegacyCheckpoint(f"the checkpoint at step {step} predates the params/optimizer split: "
                                   "resume the run (griffin-train) to write a current one")
        out = self._manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params)))
        return out["params"]

    def close(self) -> None:
        """Wait for a pending save, then release the manager (idempotent)."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None  # type: ignore[assignment]


__all__ = ["Checkpointer", "ITEMS", "LegacyCheckpoint", "abstract_like"]
