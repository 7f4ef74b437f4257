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

import contextlib
import gc
import logging
import os
import sys
import traceback
from typing import Any, Iterator

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


@contextlib.contextmanager
def _without_read_only_notice() -> Iterator[None]:
    """Orbax logs a warning for every read-only manager ("Given directory is read only"):
    a resume and griffin-eval open one each, and their stderr is for errors."""
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Given directory is read only")

    logger = logging.getLogger("absl")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


class LegacyCheckpoint(ValueError):
    """A checkpoint from before the params/optimizer split: only the whole state restores."""


class UnreadableCheckpoint(ValueError):
    """Orbax cannot read the checkpoint at `step` (truncated, missing or garbled files; or
    arrays of another model). `reason` is the innermost error on one line; `older` the
    checkpoint's earlier steps, still in the folder (unchecked)."""

    def __init__(self, step: int, reason: str, older: list[int]):
        super().__init__(f"the checkpoint at step {step} cannot be read ({reason})")
        self.step, self.reason, self.older = step, reason, older


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception of `err`'s chain (Orbax wraps TensorStore's error in its own),
    skipping contexts their handlers suppressed (`raise ... from None`)."""
    seen = {id(err)}
    while (inner := err.__cause__ or (None if err.__suppress_context__ else err.__context__)) is not None \
            and id(inner) not in seen:
        seen.add(id(inner))
        err = inner
    return err


@contextlib.contextmanager
def _quiet_abandoned_reads() -> Iterator[None]:
    """While Orbax reads, and for good once a read has failed: filter out what its abandoned
    reads print. One failed read makes Orbax give up on the others mid-flight and close their
    event loop, so each would print a traceback, before and after the command's one line
    (TensorStore's callbacks into the closed loop; asyncio's "Task exception was never
    retrieved"; coroutines closed at exit). Nothing else is filtered."""
    previous = sys.unraisablehook

    def unraisablehook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        closed_loop = unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"
        if not (closed_loop or code and "orbax" in code.co_filename):
            previous(unraisable)

    sys.unraisablehook = unraisablehook
    asyncio_log = logging.getLogger("asyncio")
    added = _not_abandoned_read not in asyncio_log.filters  # else kept from an earlier failure
    asyncio_log.addFilter(_not_abandoned_read)
    failed = False
    try:
        yield
    except Exception as err:
        failed = True
        _collect_abandoned(err)
        raise
    finally:
        if not failed:  # otherwise kept: the abandoned reads finish later
            sys.unraisablehook = previous
            if added:
                asyncio_log.removeFilter(_not_abandoned_read)


def _collect_abandoned(err: BaseException) -> None:
    """Free the abandoned reads now (the failed reads' frames hold the others)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if err.__traceback__ is not None:
            traceback.clear_frames(err.__traceback__)
        err = err.__cause__ or err.__context__
    gc.collect()


def _not_abandoned_read(record: logging.LogRecord) -> bool:
    """False for asyncio's report of an abandoned Orbax / TensorStore read: a Task's names
    Orbax's coroutine, a bare Future's only TensorStore's error (an OCDBT database)."""
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += f" {record.exc_info[1]!r}"
    lowered = text.lower()
    return not ("never retrieved" in lowered or "destroyed but it is pending" in lowered) or not any(
        name in lowered for name in ("orbax", "tensorstore", "ocdbt"))


def _out_of_memory(err: BaseException) -> bool:
    while err is not None:
        if isinstance(err, MemoryError) or "RESOURCE_EXHAUSTED" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2, async_save: bool = False,
                 read_only: bool = False):
        path = orbax_path(directory)
        # Read-only: the options Orbax would otherwise reset with a warning each (on stderr).
        options = ocp.CheckpointManagerOptions(max_to_keep=None if read_only else max_to_keep, create=not read_only,
                                               cleanup_tmp_directories=not read_only, read_only=read_only,
                                               save_interval_steps=0 if read_only else 1,
                                               enable_async_checkpointing=async_save)
        # Handlers named up front, so metadata (the stored layout) reads before any restore.
        handlers = {name: ocp.StandardCheckpointHandler() for name in (*ITEMS, LEGACY_ITEM)}
        with _without_read_only_notice():
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

    @contextlib.contextmanager
    def _reading(self, step: int) -> Iterator[None]:
        """Orbax's and TensorStore's errors while reading `step` as one UnreadableCheckpoint
        (running out of memory is not the checkpoint's fault and passes as it is)."""
        try:
            with _quiet_abandoned_reads():
                yield
        except (LegacyCheckpoint, UnreadableCheckpoint):
            raise
        except Exception as err:  # noqa: BLE001 - Orbax raises bare Exception around TensorStore's
            if _out_of_memory(err):
                raise
            cause = _root_cause(err)
            reason = " ".join(str(cause).split()) or type(cause).__name__
            older = [s for s in self._manager.all_steps() if s < step]
            raise UnreadableCheckpoint(step, f"{type(cause).__name__}: {reason[:300]}", sorted(older)) from None

    def _items(self, step: int) -> set[str]:
        with self._reading(step):
            return {k for k, v in self._manager.item_metadata(step).items() if v is not None}

    def stored_scanned(self, step: int) -> bool:
        """Whether the checkpoint at `step` holds its layers in the scanned layout."""
        with self._reading(step):
            meta = self._manager.item_metadata(step)
            params = meta["params"] if meta.get("params") is not None else meta[LEGACY_ITEM]["params"]
            return SCAN_NAME in params

    def restore(self, step: int, abstract_state: Any) -> Any:
        """The TrainState at `step`, restored into `abstract_state`'s structure, dtypes and
        shardings (ShapeDtypeStructs; see `abstract_like`)."""
        if LEGACY_ITEM in self._items(step):
            with self._reading(step):
                out = self._manager.restore(step, args=ocp.args.Composite(
                    **{LEGACY_ITEM: ocp.args.StandardRestore(abstract_state)}))
            return out[LEGACY_ITEM]
        with self._reading(step):
            out = self._manager.restore(step, args=ocp.args.Composite(
                params=ocp.args.StandardRestore(abstract_state.params),
                optimizer=ocp.args.StandardRestore({"step": abstract_state.step,
                                                    "opt_state": abstract_state.opt_state})))
        return abstract_state.replace(step=out["optimizer"]["step"], params=out["params"],
                                      opt_state=out["optimizer"]["opt_state"])

    def restore_params(self, step: int, abstract_params: Any) -> Any:
        """The parameters alone (the optimiser state is not read)."""
        if LEGACY_ITEM in self._items(step):
            raise LegacyCheckpoint(f"the checkpoint at step {step} predates the params/optimizer split: "
                                   "resume the run (griffin-train) to write a current one")
        with self._reading(step):
            out = self._manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params)))
        return out["params"]

    def close(self) -> None:
        """Wait for a pending save, then release the manager (idempotent)."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None  # type: ignore[assignment]


__all__ = ["Checkpointer", "ITEMS", "LegacyCheckpoint", "UnreadableCheckpoint", "abstract_like"]
