"""A held lease: the right to run one run. Heartbeats, release, and the writes only the
holder may make (status, result, metrics).

A run is claimed by exclusively creating `lease.json` ({owner, token, heartbeat}; see
`run_store.acquire`). The owner refreshes the heartbeat (`Lease.heartbeat`, or
`Lease.start_heartbeat` for a daemon thread): on local roots by touching the file's mtime (the
file is never rewritten, so an owner that wakes up after a take-over cannot overwrite its
successor's lease), on fsspec roots by rewriting the object.

Status, result and truncate writes re-read the lease and are refused with `LeaseLostError`
unless the token is still ours (metrics appends check the flag the heartbeat thread sets).
The check and the write are two steps: a window of microseconds that matters only if an
owner silent for a whole timeout resumes exactly inside it. Timestamps are wall-clock, so
hosts sharing a root need clocks synchronised to well within the timeout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any, Iterable, Mapping

from run_store import metrics as metrics_file
from run_store.errors import LeaseLostError, StoreError, one_line
from run_store.jsonfiles import dumps, plain
from run_store.locations import METRICS_FILE, RESULT_FILE, STATUS_FILE
from run_store.results import RunResult, make_result
from run_store.status import Status, check_status_fields, status_from_dict

log = logging.getLogger(__name__)


def default_owner() -> str:
    """`host:pid` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def read_lease(backend: Any, path: str) -> dict | None:
    """The lease in `path` with "heartbeat" (latest of the recorded one and, on local roots,
    the file's mtime, which `Lease.heartbeat` refreshes) and "key" (what a take-over claim is
    named after: the token). None if there is no such file."""
    mtime = backend.mtime(path) if backend.local else None
    try:
        raw = backend.read(path)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise ValueError("no token")
        data["heartbeat"] = max(float(data["heartbeat"]), mtime or 0.0)
        data["key"] = data["token"]
        return data
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        # Partial (the O_EXCL fallback, mid-write) or garbage: judge its age by mtime.
        # No mtime on an object store means garbage (PUTs are atomic): stale at once.
        if mtime is None:
            mtime = backend.mtime(path)
        digest = hashlib.sha256(raw).hexdigest()[:12]
        return {"token": None, "owner": None, "heartbeat": mtime or 0.0, "corrupt": True,
                "key": f"corrupt-{digest}-{int(mtime or 0)}"}


def restore(backend: Any, aside: str, path: str) -> None:
    """Put a lease moved aside by mistake back under its name (unless one exists now)."""
    try:
        data = backend.read(aside)
    except FileNotFoundError:
        return
    if backend.create_exclusive(path, data):
        backend.remove(aside)


class Lease:
    """The right to run one run. Obtain it with `RunStore.acquire`; use as a context manager
    (heartbeats stop and the lease is released on exit).

    Every status/result write first re-reads the lease file and raises LeaseLostError if
    the token there is not ours."""

    def __init__(self, backend: Any, run_path: str, run_id: str, owner: str, token: str, path: str,
                 timeout_s: float, heartbeat_interval_s: float):
        self.run_id = run_id
        self.owner = owner
        self.token = token
        self.timeout_s = timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._path = path
        self._backend = backend
        self._run_path = run_path
        self._lost = threading.Event()
        self._released = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_heartbeat = time.time()

    def __repr__(self) -> str:
        return f"Lease({self.run_id!r}, owner={self.owner!r})"

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    @property
    def lost(self) -> bool:
        """True once a check found the lease taken over (the trainer should stop)."""
        return self._lost.is_set()

    def check(self) -> None:
        """Raise LeaseLostError unless the lease file still holds our token."""
        self._current()

    def _current(self) -> dict:
        if self._released:
            raise LeaseLostError(f"lease on run {self.run_id} was released by {self.owner}")
        current = read_lease(self._backend, self._path)
        if current is None or current.get("token") != self.token:
            self._lost.set()
            holder = current.get("owner") if current else None
            raise LeaseLostError(f"{self._path}: lease of run {self.run_id} is no longer held by "
                                 f"{self.owner} (now: {holder or 'nobody'}); refusing to write")
        return current

    def heartbeat(self) -> None:
        """Refresh the lease's heartbeat. Raises LeaseLostError if it was taken over."""
        with self._lock:
            current = self._current()
            now = time.time()
            if self._backend.local:
                # Refresh the mtime only: the file is never rewritten, so an owner that wakes
                # after a take-over cannot clobber the new owner's lease.
                try:
                    os.utime(self._path)
                except FileNotFoundError:
                    self._current()  # moved aside meanwhile: raises LeaseLostError
                    raise
            else:
                content = {k: v for k, v in current.items() if k not in ("key", "corrupt")}
                self._backend.write_atomic(self._path, dumps({**content, "heartbeat": now}))
            self.last_heartbeat = now

    def start_heartbeat(self, interval_s: float | None = None) -> None:
        """Heartbeat from a daemon thread every `interval_s` (default: the store's). The
        thread stops when the lease is lost (see `lost`) or released; I/O errors are logged
        and retried at the next tick."""
        if self._thread is not None:
            return
        interval = self.heartbeat_interval_s if interval_s is None else float(interval_s)

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.heartbeat()
                except LeaseLostError as e:
                    log.error("%s", e)
                    return
                except Exception as e:  # transient storage errors must not kill the run
                    log.warning("heartbeat of run %s failed: %s", self.run_id, one_line(e))

        self._thread = threading.Thread(target=beat, name=f"lease-heartbeat-{self.run_id}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._thread = None

    def release(self) -> None:
        """Stop heartbeats and remove the lease file if it is still ours. Idempotent."""
        self.stop_heartbeat()
        if self._released:
            return
        self._released = True
        current = read_lease(self._backend, self._path)
        if current is None or current.get("token") != self.token:
            return
        # Move it aside first, so a lease created by someone else meanwhile is never deleted.
        aside = f"{self._path}.released-{secrets.token_hex(4)}"
        if not self._backend.move_aside(self._path, aside):
            return
        moved = read_lease(self._backend, aside)
        if moved is not None and moved.get("token") == self.token:
            self._backend.remove(aside)
        else:
            restore(self._backend, aside, self._path)

    # -- guarded writes
    def _file(self, name: str) -> str:
        return self._backend.join(self._run_path, name)

    def write_status(self, state: str, **fields: Any) -> Status:
        """Write status.json. RUNNING records owner, token and heartbeat; FAILED needs
        `reason`; DIVERGED needs `step` and `reason`. Other keyword fields are kept."""
        check_status_fields(state, fields)
        self.check()
        data = {**plain(fields, "status"), "state": state, "run_id": self.run_id, "updated": time.time(),
                "owner": self.owner, "token": self.token, "heartbeat": self.last_heartbeat}
        path = self._file(STATUS_FILE)
        self._backend.write_atomic(path, dumps(data))
        return status_from_dict(self.run_id, data, path)

    def write_result(self, result: RunResult | Mapping[str, Any]) -> RunResult:
        """Validate and write result.json (a RunResult, or its fields as a mapping)."""
        path = self._file(RESULT_FILE)
        if not isinstance(result, RunResult):
            try:
                result = make_result(**dict(result))
            except StoreError as err:
                raise StoreError(f"{path}: {err}") from None
        if result.run_id != self.run_id:
            raise StoreError(f"{path}: result names run {result.run_id!r}, not {self.run_id!r}")
        self.check()
        self._backend.write_atomic(path, dumps(result.to_json()))
        return result

    def append_metrics(self, rows: Iterable[Mapping[str, Any]], fsync: bool = False) -> int:
        """Append metrics rows (each with an int 'step') while the lease is held. Checks the
        flag the heartbeat sets, not the lease file, so it costs no extra read."""
        if self._released or self.lost:
            raise LeaseLostError(f"lease of run {self.run_id} is not held by {self.owner}; "
                                 "refusing to append metrics")
        return metrics_file.append_at(self._backend, self._file(METRICS_FILE), rows, fsync)

    def truncate_metrics(self, step: int) -> int:
        """On resume: cut metrics.jsonl back to the checkpoint's `step`."""
        return self.cut_back_metrics(step).count(b"\n")

    def cut_back_metrics(self, step: int | None) -> bytes:
        """`truncate_metrics` (None: only a cut-off last line goes), returning what metrics.jsonl
        holds now (a bucket's batched writer keeps it, so that later batches need no read)."""
        self.check()
        return metrics_file.cut_back_at(self._backend, self._file(METRICS_FILE), step)

    @property
    def local(self) -> bool:
        """Whether the run's folder is a local one (appends are cheap) or on a bucket."""
        return bool(self._backend.local)

    def replace_metrics(self, data: bytes) -> None:
        """Write metrics.jsonl whole (a bucket's batched append: `data` is the old content and
        the new rows). Guarded like `append_metrics`."""
        if self._released or self.lost:
            raise LeaseLostError(f"lease of run {self.run_id} is not held by {self.owner}; "
                                 "refusing to write metrics")
        self._backend.write_atomic(self._file(METRICS_FILE), data, durable=False)
