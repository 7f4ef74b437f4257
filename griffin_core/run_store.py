"""The run store: one folder per run, addressed by content, and sweep manifests.

Layout (the contract between `experiments/`, `launch/` and `analysis/`)::

    <root>/runs/<family>-<size>-<budget>-<hash>/
        config.yaml      resolved config, written once
        status.json      PENDING | RUNNING | SUCCESS | FAILED | DIVERGED (see `Status`)
        lease.json       who runs it now: owner, token, heartbeat (see `Lease`)
        metrics.jsonl    one JSON object per line, each with an int "step"; append-only
        result.json      final figures, with "schema_version" (see `validate_result`)
        ckpt/            Orbax checkpoints (written by the trainer, not by this module)
    <root>/sweeps/<name>.json   a sweep: its config, its grid and its run ids

The run id's hash covers the caller's *semantic* config (model, data, optimiser, budget,
seed), the corpus fingerprint and `NUMERICS_VERSION`; never paths, logging or launcher
settings. So a grid point shared by two sweeps is trained once and a rerun finds its folder,
checkpoints and W&B run again.

This module imports only the standard library, fsspec and PyYAML: the sweep driver and the
analysis processes use it without JAX or Ray. Nothing is ever loaded with pickle.

Atomicity
---------
Local roots: every file is written to a temporary file in the same folder, fsynced and
`os.replace`d over the target, so a reader sees the old or the new file, never a mix.
Exclusive creates (the lease, config.yaml) write a complete temporary file and hard-link it
to the target name (`link` fails if the name exists), falling back to O_CREAT|O_EXCL where
hard links are not supported.

fsspec roots (buckets, `memory://`): there is no atomic rename, so every write puts a whole
new object (object stores make a PUT visible all at once). Exclusive creates use
`pipe_file(..., mode="create")`, which backends with preconditions implement as a
write-once create (S3 If-None-Match, GCS ifGenerationMatch=0); others fall back to
exists-then-write, which is best effort. `metrics.jsonl` is rewritten as a whole object on
each append there, so append in batches.

Leases
------
A run is claimed by exclusively creating `lease.json` ({owner, token, heartbeat}). The owner
refreshes the heartbeat (`Lease.heartbeat`, or `Lease.start_heartbeat` for a daemon thread):
on local roots by touching the file's mtime (the file is never rewritten, so an owner that
wakes up after a take-over cannot overwrite its successor's lease), on fsspec roots by
rewriting the object. Another process may take the lease over only once the heartbeat is
older than the timeout. It first creates a claim file `lease.json.takeover-<token>.<n>`
exclusively, so only one contender acts on a given stale lease; then it renames the stale
lease aside to a unique name (`lease.json.stale-*`, kept as evidence), checks that what it
moved is the lease it judged, and creates the lease exclusively like any newcomer. So of
several contenders exactly one wins, and a live lease is never moved. A contender that dies
holding a claim blocks take-over for one more timeout (the next takes claim n+1).

Status, result and truncate writes re-read the lease and are refused with `LeaseLostError`
unless the token is still ours (metrics appends check the flag the heartbeat thread sets).
The check and the write are two steps: a window of microseconds that matters only if an
owner silent for a whole timeout resumes exactly inside it. Timestamps are wall-clock, so
hosts sharing a root need clocks synchronised to well within the timeout.

On fsspec roots the exclusive create is as good as the backend's `mode="create"` (a real
precondition on S3/GCS with recent s3fs/gcsfs; check-then-write elsewhere) and the rename
aside is a copy plus delete, so leases there are best effort; the token checks still refuse
writes from an owner that has lost its lease.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import enum
import errno
import hashlib
import json
import logging
import math
import os
import posixpath
import re
import secrets
import socket
import tempfile
import threading
import time
from pathlib import PurePath
from typing import Any, Iterable, Mapping

import yaml

log = logging.getLogger(__name__)

NUMERICS_VERSION = "1"
"""Bump whenever a code change alters training results (the model's numerics, the data
pipeline's token stream, the optimiser): runs hashed under the old version are then not
mistaken for runs of the new code."""

RESULT_SCHEMA_VERSION = 1
"""Version of result.json's layout. Readers refuse files with a newer version."""

HASH_LENGTH = 12
"""Hex digits of sha256 kept in a run id (48 bits: collisions are negligible per study)."""

STATES = ("PENDING", "RUNNING", "SUCCESS", "FAILED", "DIVERGED")
FINAL_STATES = ("SUCCESS", "FAILED", "DIVERGED")

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
LEASE_FILE = "lease.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CKPT_DIR = "ckpt"

DEFAULT_HEARTBEAT_INTERVAL_S = 30.0
DEFAULT_LEASE_TIMEOUT_S = 90.0

_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=,-]*$")

# (field, allowed types, may be None). bool is refused where int/float is asked for.
_NUM = (int, float)
RESULT_FIELDS: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("family", (str,), False),
    ("size", (str,), False),
    ("seed", (int,), False),
    ("params_total", (int,), False),
    ("params_non_embedding", (int,), False),
    ("tokens", (int,), False),
    ("epochs", _NUM, False),
    ("flops", (dict,), False),
    ("final_train_loss", _NUM, True),
    ("heldout_loss_nats", _NUM, True),
    ("heldout_bits_per_byte", _NUM, True),
    ("heldout_loss_by_position", (list,), False),
    ("wall_time_s", _NUM, False),
    ("tokens_per_s", _NUM, True),
    ("mfu", _NUM, True),
    ("versions", (dict,), False),
    ("git_sha", (str,), True),
    ("corpus_fingerprint", (str,), False),
    ("run_id", (str,), False),
    ("status", (str,), False),
)
"""Required fields of result.json. None is allowed where a figure may not exist (a diverged
run has no held-out loss; an installed package has no git SHA; MFU needs a measured peak)."""
REQUIRED_RESULT_FIELDS = tuple(name for name, _, _ in RESULT_FIELDS)


class StoreError(ValueError):
    """A store file is corrupt or invalid. The message is one line naming the file."""


class LeaseLostError(RuntimeError):
    """The lease this process held is no longer ours (taken over or released)."""


# --------------------------------------------------------------------------------------
# Canonical JSON and run ids


def _canonical(value: Any, where: str) -> Any:
    """Plain JSON value with one spelling per meaning (see `canonical_json`)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return _canonical(value.value, where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (float, decimal.Decimal)):
        x = float(value)
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        if x == int(x) and abs(x) < 2**53:
            return int(x)  # 1.0 and 1 mean the same setting; -0.0 becomes 0
        return x  # json writes repr(x): the shortest round trip, so 1e-3 -> 0.001
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, enum.Enum):
                key = key.value
            if not isinstance(key, str):
                raise TypeError(f"{where}: mapping key {key!r} is not a string")
            out[key] = _canonical(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [_canonical(item, f"{where}{{}}") for item in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, where)
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return _canonical(value.item(), where)  # a NumPy/JAX scalar, without importing them
    raise TypeError(f"{where}: cannot canonicalise a {type(value).__name__} ({value!r})")


def canonical_json(value: Any) -> str:
    """One JSON spelling per meaning: sorted keys, no spaces, tuples as lists, integral floats
    as ints (1.0 == 1), other floats by their shortest repr (1e-3 == 0.001), NaN/inf as
    strings, enums by value, dataclasses as dicts. Raises TypeError for anything else."""
    return json.dumps(_canonical(value, "config"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def config_hash(payload: Any, length: int = HASH_LENGTH) -> str:
    """First `length` hex digits of sha256 over `canonical_json(payload)`."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()[:length]


def _check_label(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _LABEL_RE.match(value):
        raise ValueError(f"{kind} label {value!r} must match {_LABEL_RE.pattern} (no '/' or spaces)")
    return value


def compute_run_id(family: str, size: str, budget: str, semantic: Mapping[str, Any],
                   corpus_fingerprint: str, numerics_version: str = NUMERICS_VERSION) -> str:
    """`<family>-<size>-<budget>-<hash>`.

    `semantic` is what determines the result (model, data, optimiser, budget, seed); the
    caller leaves out paths, logging and launcher settings. `budget` is a short label
    ('20tpp', '1e15F'). The labels are hashed too, with the corpus fingerprint and the
    numerics version.
    """
    _check_label("family", family)
    _check_label("size", size)
    _check_label("budget", budget)
    if not isinstance(semantic, Mapping):
        raise TypeError(f"semantic config must be a mapping, got {type(semantic).__name__}")
    digest = config_hash({
        "family": family, "size": size, "budget": budget, "semantic": semantic,
        "corpus_fingerprint": str(corpus_fingerprint), "numerics_version": str(numerics_version),
    })
    return f"{family}-{size}-{budget}-{digest}"


def _plain(value: Any, where: str = "config") -> Any:
    """A YAML/JSON-safe copy: dicts, lists, str, int, float, bool, None (order kept)."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, where)
    if isinstance(value, (PurePath, decimal.Decimal)):
        return str(value) if isinstance(value, PurePath) else float(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    raise TypeError(f"{where}: cannot store a {type(value).__name__} ({value!r})")


# --------------------------------------------------------------------------------------
# Backends: a local folder (os) or any fsspec filesystem


class _LocalBackend:
    """Plain files with atomic replace, hard-link exclusive create and fsync."""

    local = True

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def basename(self, path: str) -> str:
        return os.path.basename(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def mtime(self, path: str) -> float | None:
        try:
            return os.path.getmtime(path)
        except OSError:
            return None

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    @staticmethod
    def _fsync_dir(path: str) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _write_temp(self, path: str, data: bytes) -> str:
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    def write_atomic(self, path: str, data: bytes) -> None:
        tmp = self._write_temp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fsync_dir(os.path.dirname(path) or ".")

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` holding `data` if it does not exist; False if it does. Readers never
        see a partial file: the complete temp file is hard-linked to the name."""
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)
            self._fsync_dir(os.path.dirname(path) or ".")
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        # No hard links here (some network or FUSE filesystems): O_EXCL. A reader may see
        # the file empty for an instant; lease readers treat an unreadable lease by its mtime.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def move_aside(self, path: str, new_path: str) -> bool:
        """Atomically rename; False if `path` no longer exists (someone else moved it)."""
        try:
            os.rename(path, new_path)
            return True
        except FileNotFoundError:
            return False

    def append(self, path: str, data: bytes, fsync: bool = False) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())

    def ends_with_newline_or_empty(self, path: str) -> bool:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return True
                f.seek(-1, os.SEEK_END)
                return f.read(1) == b"\n"
        except FileNotFoundError:
            return True


class _FsspecBackend:
    """Any fsspec filesystem. Every write puts a whole new object (see the module doc)."""

    local = False

    def __init__(self, fs: Any):
        self.fs = fs

    def join(self, *parts: str) -> str:
        return posixpath.join(*parts)

    def basename(self, path: str) -> str:
        return posixpath.basename(path.rstrip("/"))

    def makedirs(self, path: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def isdir(self, path: str) -> bool:
        return bool(self.fs.isdir(path))

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def listdir(self, path: str) -> list[str]:
        try:
            entries = self.fs.ls(path, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        here = path.rstrip("/")
        return sorted(self.basename(e) for e in entries if self.basename(e) and e.rstrip("/") != here)

    def mtime(self, path: str) -> float | None:
        try:
            return self.fs.modified(path).timestamp()
        except Exception:  # not every fsspec backend implements modified()
            return None

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def _parent(self, path: str) -> None:
        self.makedirs(posixpath.dirname(path))

    def write_atomic(self, path: str, data: bytes) -> None:
        self._parent(path)
        self.fs.pipe_file(path, data)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        self._parent(path)
        try:
            self.fs.pipe_file(path, data, mode="create")
            return True
        except FileExistsError:
            return False
        except TypeError:  # an implementation without the `mode` argument: best effort
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
            return True

    def move_aside(self, path: str, new_path: str) -> bool:
        try:
            self.fs.mv(path, new_path)
            return True
        except FileNotFoundError:
            return False

    def append(self, path: str, data: bytes, fsync: bool = False) -> None:
        try:
            old = self.fs.cat_file(path)
        except FileNotFoundError:
            old = b""
        self.write_atomic(path, old + data)

    def ends_with_newline_or_empty(self, path: str) -> bool:
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return True
        return not data or data.endswith(b"\n")


_LOCAL = _LocalBackend()


def _resolve(location: str | os.PathLike) -> tuple[Any, str]:
    """(backend, backend-native path) for a local path or an fsspec URL."""
    if isinstance(location, os.PathLike):
        return _LOCAL, os.fspath(location)
    location = str(location)
    if "://" not in location and "::" not in location:
        return _LOCAL, location
    import fsspec  # imported lazily: local stores never need it
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(location)
    if isinstance(fs, LocalFileSystem):
        return _LOCAL, path
    return _FsspecBackend(fs), path


def _url_join(base: str, *parts: str) -> str:
    base = os.fspath(base)
    if "://" in base or "::" in base:
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


# --------------------------------------------------------------------------------------
# Reading files with one-line errors


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _read_json(backend: Any, path: str, what: str) -> dict | None:
    """The JSON object in `path`, None if the file does not exist, StoreError if corrupt."""
    try:
        raw = backend.read(path)
    except FileNotFoundError:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path}: corrupt {what} ({_one_line(e)})") from None
    if not isinstance(value, dict):
        raise StoreError(f"{path}: corrupt {what} (a JSON object was expected, got {type(value).__name__})")
    return value


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode("utf-8")


def read_json(location: str | os.PathLike, what: str = "JSON file") -> dict | None:
    """The JSON object at a local path or fsspec URL; None if absent; StoreError (one line,
    naming the file) if corrupt. For small sidecar files next to the store's own."""
    backend, path = _resolve(location)
    return _read_json(backend, path, what)


def write_json(location: str | os.PathLike, obj: Mapping[str, Any]) -> None:
    """Write a JSON object atomically to a local path or fsspec URL (see the module doc)."""
    backend, path = _resolve(location)
    backend.write_atomic(path, _dumps(_plain(dict(obj), "json")))


# --------------------------------------------------------------------------------------
# Status


@dataclasses.dataclass(frozen=True)
class Status:
    """A run's state as read from status.json (and its lease, for the heartbeat)."""

    state: str
    """One of STATES. A run with no status.json is PENDING."""
    run_id: str
    """The run this describes."""
    updated: float | None = None
    """Wall-clock time (s since the epoch) of the last status write."""
    owner: str | None = None
    """`host:pid` of the process that wrote the status (RUNNING and after)."""
    token: str | None = None
    """The writer's lease token."""
    heartbeat: float | None = None
    """Latest heartbeat known: the lease's if it is the writer's, else the status's."""
    reason: str | None = None
    """Why a run FAILED or DIVERGED."""
    step: int | None = None
    """The step at which a run DIVERGED (or any step the writer chose to record)."""
    extra: dict = dataclasses.field(default_factory=dict)
    """Any other fields the writer added."""

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def is_stale(self, timeout_s: float = DEFAULT_LEASE_TIMEOUT_S, now: float | None = None) -> bool:
        """True for a RUNNING run whose owner has not heartbeaten within `timeout_s`."""
        if self.state != "RUNNING":
            return False
        now = time.time() if now is None else now
        last = self.heartbeat if self.heartbeat is not None else self.updated
        return last is None or now - last > timeout_s


_STATUS_KEYS = ("state", "run_id", "updated", "owner", "token", "heartbeat", "reason", "step")


def _status_from_dict(run_id: str, data: dict, path: str) -> Status:
    state = data.get("state")
    if state not in STATES:
        raise StoreError(f"{path}: corrupt status file (state {state!r} is not one of {list(STATES)})")
    fields = {k: data.get(k) for k in _STATUS_KEYS if k not in ("state", "run_id")}
    extra = {k: v for k, v in data.items() if k not in _STATUS_KEYS}
    return Status(state=state, run_id=data.get("run_id") or run_id, extra=extra, **fields)


# --------------------------------------------------------------------------------------
# Metrics


def _parse_metrics(raw: bytes, path: str) -> tuple[list[dict], list[bytes], bool]:
    """(rows, their raw lines, whether a bad last line was dropped)."""
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    rows: list[dict] = []
    kept: list[bytes] = []
    dropped = False
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        err = None
        try:
            row = json.loads(line.decode("utf-8"))
            if not isinstance(row, dict):
                err = "not a JSON object"
            elif isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
                err = "no integer 'step'"
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            err = _one_line(e)
        if err is not None:
            if i == len(lines) - 1:
                dropped = True  # a writer killed mid-line: the row was never complete
                break
            raise StoreError(f"{path}: corrupt metrics line {i + 1} of {len(lines)} ({err})")
        rows.append(row)
        kept.append(line)
    return rows, kept, dropped


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """Rows of `<run_dir>/metrics.jsonl` in file order ([] if there is none).

    A cut-off or corrupt last line (a writer killed mid-write) is dropped; a corrupt line
    anywhere else raises StoreError naming the file and line."""
    backend, path = _resolve(_url_join(run_dir, METRICS_FILE))
    try:
        raw = backend.read(path)
    except FileNotFoundError:
        return []
    rows, _, dropped = _parse_metrics(raw, path)
    if dropped:
        log.warning("%s: dropped a cut-off last line", path)
    return rows


def _truncate(backend: Any, path: str, step: int | None) -> int:
    """Rewrite `path` atomically with its complete rows of step <= `step` (all if None)."""
    try:
        raw = backend.read(path)
    except FileNotFoundError:
        return 0
    rows, lines, _ = _parse_metrics(raw, path)
    keep = [line for row, line in zip(rows, lines) if step is None or row["step"] <= step]
    data = b"".join(line + b"\n" for line in keep)
    if data != raw:
        backend.write_atomic(path, data)
    return len(keep)


def truncate_metrics(run_dir: str | os.PathLike, step: int) -> int:
    """Cut `<run_dir>/metrics.jsonl` back to rows with step <= `step` (the checkpoint's step,
    on resume), atomically. Also removes a cut-off last line. Returns the rows kept."""
    backend, path = _resolve(_url_join(run_dir, METRICS_FILE))
    return _truncate(backend, path, step)


def _encode_rows(rows: Iterable[Mapping[str, Any]], path: str) -> bytes:
    out = []
    for row in rows:
        step = row.get("step") if isinstance(row, Mapping) else None
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"{path}: every metrics row needs an integer 'step', got {row!r}")
        line = json.dumps(_plain(dict(row), "metrics row"), separators=(",", ":"), allow_nan=True)
        out.append(line.encode("utf-8") + b"\n")
    return b"".join(out)


def _append_metrics(backend: Any, path: str, rows: Iterable[Mapping[str, Any]], fsync: bool) -> int:
    data = _encode_rows(rows, path)
    if not data:
        return 0
    if not backend.ends_with_newline_or_empty(path):
        # A previous writer died mid-line: drop the partial line first, or appending would
        # turn it into a corrupt line in the middle of the file.
        _truncate(backend, path, None)
    backend.append(path, data, fsync=fsync)
    return data.count(b"\n")


# --------------------------------------------------------------------------------------
# Results


def validate_result(result: Mapping[str, Any], path: str = "result.json") -> dict:
    """Check result.json's fields and types; returns it as a dict. StoreError (one line,
    naming `path`) lists every missing or mistyped field, or a newer schema version."""
    if not isinstance(result, Mapping):
        raise StoreError(f"{path}: a result must be a JSON object, got {type(result).__name__}")
    version = result.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise StoreError(f"{path}: result has no integer 'schema_version'")
    if version > RESULT_SCHEMA_VERSION:
        raise StoreError(f"{path}: result schema_version {version} is newer than this code's "
                         f"{RESULT_SCHEMA_VERSION}; upgrade griffin_core to read it")
    missing = [name for name in REQUIRED_RESULT_FIELDS if name not in result]
    wrong = []
    for name, types, nullable in RESULT_FIELDS:
        if name not in result:
            continue
        value = result[name]
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            wrong.append(f"{name} ({'/'.join(t.__name__ for t in types)}"
                         f"{' or null' if nullable else ''} expected, got {type(value).__name__})")
    flops = result.get("flops")
    if isinstance(flops, dict):
        bad = [k for k, v in flops.items() if isinstance(v, bool) or not isinstance(v, _NUM)]
        if bad:
            wrong.append(f"flops values must be numbers (bad: {bad})")
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing fields {missing}")
        if wrong:
            parts.append("wrong types: " + "; ".join(wrong))
        raise StoreError(f"{path}: invalid result: {', '.join(parts)}")
    return dict(result)


def read_result(run_dir: str | os.PathLike) -> dict | None:
    """The validated result.json of a run folder, or None if it has none."""
    backend, path = _resolve(_url_join(run_dir, RESULT_FILE))
    data = _read_json(backend, path, "result file")
    return None if data is None else validate_result(data, path)


# --------------------------------------------------------------------------------------
# The store


def default_owner() -> str:
    """`host:pid` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunStore:
    """A run store rooted at a local folder or an fsspec URL (see the module doc)."""

    def __init__(self, root: str | os.PathLike, *,
                 heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
                 lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S):
        self.root = os.fspath(root)
        self.heartbeat_interval_s = float(heartbeat_interval_s)
        self.lease_timeout_s = float(lease_timeout_s)
        self._backend, self._root_path = _resolve(self.root)

    def __repr__(self) -> str:
        return f"RunStore({self.root!r})"

    # -- paths
    def _path(self, *parts: str) -> str:
        return self._backend.join(self._root_path, *parts)

    def _run_path(self, run_id: str, *parts: str) -> str:
        _check_run_id(run_id)
        return self._path("runs", run_id, *parts)

    def run_dir(self, run_id: str) -> str:
        """The run's folder as a path or URL of the same kind as the root."""
        _check_run_id(run_id)
        return _url_join(self.root, "runs", run_id)

    def ckpt_dir(self, run_id: str) -> str:
        """Where the trainer keeps Orbax checkpoints for this run."""
        return _url_join(self.run_dir(run_id), CKPT_DIR)

    def sweep_path(self, name: str) -> str:
        _check_name(name)
        return _url_join(self.root, "sweeps", f"{name}.json")

    # -- runs
    def list_runs(self) -> list[str]:
        """Ids of every run folder, sorted."""
        return [name for name in self._backend.listdir(self._path("runs")) if _LABEL_RE.match(name)]

    def exists(self, run_id: str) -> bool:
        return self._backend.exists(self._run_path(run_id))

    def write_config(self, run_id: str, config: Mapping[str, Any]) -> bool:
        """Write config.yaml once. Returns False (and leaves the file) if it already exists:
        the id fixes the semantic config, and the first writer's full config is kept."""
        data = yaml.safe_dump(_plain(config), sort_keys=False, default_flow_style=False,
                              allow_unicode=True).encode("utf-8")
        return self._backend.create_exclusive(self._run_path(run_id, CONFIG_FILE), data)

    def read_config(self, run_id: str) -> dict | None:
        path = self._run_path(run_id, CONFIG_FILE)
        try:
            raw = self._backend.read(path)
        except FileNotFoundError:
            return None
        try:
            value = yaml.safe_load(raw.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as e:
            raise StoreError(f"{path}: corrupt config file ({_one_line(e)})") from None
        if not isinstance(value, dict):
            raise StoreError(f"{path}: corrupt config file (a mapping was expected)")
        return value

    def init_run(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Register a run: its folder, config.yaml and a PENDING status, where absent."""
        self._backend.makedirs(self._run_path(run_id))
        self.write_config(run_id, config)
        self._backend.create_exclusive(self._run_path(run_id, STATUS_FILE), _dumps(
            {"state": "PENDING", "run_id": run_id, "updated": time.time()}))

    def status(self, run_id: str) -> Status:
        """The run's Status; PENDING if it has no status.json. For RUNNING, the heartbeat is
        the lease's when the lease belongs to the status's writer."""
        path = self._run_path(run_id, STATUS_FILE)
        data = _read_json(self._backend, path, "status file")
        if data is None:
            return Status(state="PENDING", run_id=run_id)
        status = _status_from_dict(run_id, data, path)
        if status.state == "RUNNING":
            lease = self.lease_info(run_id)
            if lease and lease.get("token") == status.token:
                beat = max(lease["heartbeat"], status.heartbeat or 0.0)
                status = dataclasses.replace(status, heartbeat=beat)
        return status

    def lease_info(self, run_id: str) -> dict | None:
        """The current lease file's content ({owner, token, heartbeat, ...}) or None."""
        return self._read_lease(self._run_path(run_id, LEASE_FILE))

    def _read_lease(self, path: str) -> dict | None:
        """The lease in `path` with "heartbeat" (latest of the recorded one and, on local
        roots, the file's mtime, which `Lease.heartbeat` refreshes) and "key" (what a
        take-over claim is named after: the token). None if there is no such file."""
        mtime = self._backend.mtime(path) if self._backend.local else None
        try:
            raw = self._backend.read(path)
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
                mtime = self._backend.mtime(path)
            digest = hashlib.sha256(raw).hexdigest()[:12]
            return {"token": None, "owner": None, "heartbeat": mtime or 0.0, "corrupt": True,
                    "key": f"corrupt-{digest}-{int(mtime or 0)}"}

    def acquire(self, run_id: str, owner: str | None = None,
                timeout_s: float | None = None) -> "Lease | None":
        """Claim the run's lease; None if a live owner holds it (or another process is
        taking it over right now).

        A lease whose heartbeat is older than `timeout_s` (default: the store's
        lease_timeout_s) is taken over: a contender first creates the claim file
        `lease.json.takeover-<stale token>.<n>` exclusively (so only one contender acts on
        a given stale lease), moves the stale lease aside to a unique name, then creates
        the lease exclusively like any newcomer. Of several contenders exactly one gets the
        lease, and no contender ever displaces a live lease. A claim left by a contender
        that died is itself judged stale after `timeout_s` (the next one takes claim n+1).
        Taking the lease does not change status.json."""
        timeout = self.lease_timeout_s if timeout_s is None else float(timeout_s)
        owner = owner or default_owner()
        self._backend.makedirs(self._run_path(run_id))
        path = self._run_path(run_id, LEASE_FILE)
        token = secrets.token_hex(16)
        took_over: dict | None = None
        claim: str | None = None
        try:
            for _ in range(4):
                now = time.time()
                content = {"run_id": run_id, "owner": owner, "token": token, "acquired": now,
                           "heartbeat": now}
                if self._backend.create_exclusive(path, _dumps(content)):
                    current = self._read_lease(path)
                    if current is None or current.get("token") != token:
                        return None  # a best-effort backend let someone else in: theirs
                    if took_over is not None:
                        log.warning("%s took over the lease of run %s from %s (heartbeat %.1f s old)",
                                    owner, run_id, took_over.get("owner"), now - took_over["heartbeat"])
                    return Lease(self, run_id, owner, token, path, timeout)
                current = self._read_lease(path)
                if current is None:
                    continue  # released meanwhile: try to create it again
                if time.time() - current["heartbeat"] <= timeout or claim is not None:
                    return None
                claim = self._claim_takeover(path, current["key"], owner, timeout)
                if claim is None:
                    return None  # another contender is taking this stale lease over
                # Holding the claim, only we may move a lease with this key. Look again: the
                # lease may have been replaced, or its owner may have come back to life.
                again = self._read_lease(path)
                if again is None or again["key"] != current["key"]:
                    continue
                if time.time() - again["heartbeat"] <= timeout:
                    return None
                aside = f"{path}.stale-{int(now)}-{secrets.token_hex(4)}"
                if not self._backend.move_aside(path, aside):
                    continue
                moved = self._read_lease(aside)
                if moved is None or moved["key"] != current["key"]:
                    self._restore(aside, path)  # cannot happen without a stalled claimant
                    return None
                took_over = current
            return None
        finally:
            if claim is not None:
                self._backend.remove(claim)

    def _claim_takeover(self, path: str, key: str, owner: str, timeout: float) -> str | None:
        """Create the take-over claim for the lease named `key`; its path, or None if a live
        claim by someone else exists."""
        for n in range(64):
            claim = f"{path}.takeover-{key}.{n}"
            if self._backend.create_exclusive(claim, _dumps({"owner": owner, "time": time.time()})):
                return claim
            try:
                other = json.loads(self._backend.read(claim).decode("utf-8"))
                claimed_at = float(other["time"])
            except FileNotFoundError:
                return None  # its holder just finished: the lease has changed
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                claimed_at = self._backend.mtime(claim) or 0.0
            if time.time() - claimed_at <= timeout:
                return None
        return None

    def _restore(self, aside: str, path: str) -> None:
        try:
            data = self._backend.read(aside)
        except FileNotFoundError:
            return
        if self._backend.create_exclusive(path, data):
            self._backend.remove(aside)

    # -- metrics and results
    def append_metrics(self, run_id: str, rows: Iterable[Mapping[str, Any]], fsync: bool = False) -> int:
        """Append rows (each with an int 'step') to metrics.jsonl and flush. Unguarded: the
        trainer should prefer `Lease.append_metrics`. Returns the number of rows written."""
        return _append_metrics(self._backend, self._run_path(run_id, METRICS_FILE), rows, fsync)

    def read_metrics(self, run_id: str) -> list[dict]:
        return read_metrics(self.run_dir(run_id))

    def truncate_metrics(self, run_id: str, step: int) -> int:
        return truncate_metrics(self.run_dir(run_id), step)

    def read_result(self, run_id: str) -> dict | None:
        return read_result(self.run_dir(run_id))

    # -- sweeps
    def write_sweep(self, name: str, manifest: Mapping[str, Any]) -> str:
        """Write `<root>/sweeps/<name>.json` (atomically, replacing an older plan). The
        manifest holds at least `runs` (run ids); by convention also `config` and `grid`."""
        _check_name(name)
        runs = manifest.get("runs")
        if not isinstance(runs, (list, tuple)) or not all(isinstance(r, str) for r in runs):
            raise ValueError(f"sweep {name!r}: manifest['runs'] must be a list of run ids")
        for run_id in runs:
            _check_run_id(run_id)
        data = {"name": name, "written": time.time(), **_plain(dict(manifest), "sweep")}
        self._backend.write_atomic(self._path("sweeps", f"{name}.json"), _dumps(data))
        return self.sweep_path(name)

    def read_sweep(self, name: str) -> dict | None:
        _check_name(name)
        path = self._path("sweeps", f"{name}.json")
        data = _read_json(self._backend, path, "sweep manifest")
        if data is not None and not isinstance(data.get("runs"), list):
            raise StoreError(f"{path}: corrupt sweep manifest (no 'runs' list)")
        return data

    def list_sweeps(self) -> list[str]:
        return [n[:-5] for n in self._backend.listdir(self._path("sweeps")) if n.endswith(".json")]


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not _LABEL_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} must match {_LABEL_RE.pattern}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"sweep name {name!r} must match {_NAME_RE.pattern}")


# --------------------------------------------------------------------------------------
# Leases


class Lease:
    """The right to run one run. Obtain it with `RunStore.acquire`; use as a context manager
    (heartbeats stop and the lease is released on exit).

    Every status/result write first re-reads the lease file and raises LeaseLostError if
    the token there is not ours."""

    def __init__(self, store: RunStore, run_id: str, owner: str, token: str, path: str,
                 timeout_s: float):
        self.store = store
        self.run_id = run_id
        self.owner = owner
        self.token = token
        self.timeout_s = timeout_s
        self._path = path
        self._backend = store._backend
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
        current = self.store._read_lease(self._path)
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
                self._backend.write_atomic(self._path, _dumps({**content, "heartbeat": now}))
            self.last_heartbeat = now

    def start_heartbeat(self, interval_s: float | None = None) -> None:
        """Heartbeat from a daemon thread every `interval_s` (default: the store's). The
        thread stops when the lease is lost (see `lost`) or released; I/O errors are logged
        and retried at the next tick."""
        if self._thread is not None:
            return
        interval = self.store.heartbeat_interval_s if interval_s is None else float(interval_s)

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.heartbeat()
                except LeaseLostError as e:
                    log.error("%s", e)
                    return
                except Exception as e:  # transient storage errors must not kill the run
                    log.warning("heartbeat of run %s failed: %s", self.run_id, _one_line(e))

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
        current = self.store._read_lease(self._path)
        if current is None or current.get("token") != self.token:
            return
        # Move it aside first, so a lease created by someone else meanwhile is never deleted.
        aside = f"{self._path}.released-{secrets.token_hex(4)}"
        if not self._backend.move_aside(self._path, aside):
            return
        moved = self.store._read_lease(aside)
        if moved is not None and moved.get("token") == self.token:
            self._backend.remove(aside)
        else:
            self.store._restore(aside, self._path)

    # -- guarded writes
    def write_status(self, state: str, **fields: Any) -> Status:
        """Write status.json. RUNNING records owner, token and heartbeat; FAILED needs
        `reason`; DIVERGED needs `step` and `reason`. Other keyword fields are kept."""
        if state not in STATES:
            raise ValueError(f"state {state!r} is not one of {list(STATES)}")
        if state in ("FAILED", "DIVERGED") and not fields.get("reason"):
            raise ValueError(f"a {state} status needs a reason")
        step = fields.get("step")
        if state == "DIVERGED" and (isinstance(step, bool) or not isinstance(step, int)):
            raise ValueError("a DIVERGED status needs the integer step at which it diverged")
        self.check()
        now = time.time()
        data = {**_plain(fields, "status"), "state": state, "run_id": self.run_id, "updated": now,
                "owner": self.owner, "token": self.token, "heartbeat": self.last_heartbeat}
        path = self.store._run_path(self.run_id, STATUS_FILE)
        self._backend.write_atomic(path, _dumps(data))
        return _status_from_dict(self.run_id, data, path)

    def write_result(self, result: Mapping[str, Any]) -> dict:
        """Validate and write result.json (schema_version filled in if absent)."""
        result = {"schema_version": RESULT_SCHEMA_VERSION, **_plain(dict(result), "result")}
        path = self.store._run_path(self.run_id, RESULT_FILE)
        validate_result(result, path)
        if result["run_id"] != self.run_id:
            raise StoreError(f"{path}: result names run {result['run_id']!r}, not {self.run_id!r}")
        self.check()
        self._backend.write_atomic(path, _dumps(result))
        return result

    def append_metrics(self, rows: Iterable[Mapping[str, Any]], fsync: bool = False) -> int:
        """Append metrics rows (see RunStore.append_metrics) while the lease is held. Checks
        the flag the heartbeat sets, not the lease file, so it costs no extra read."""
        if self._released or self.lost:
            raise LeaseLostError(f"lease of run {self.run_id} is not held by {self.owner}; "
                                 "refusing to append metrics")
        return self.store.append_metrics(self.run_id, rows, fsync=fsync)

    def truncate_metrics(self, step: int) -> int:
        """On resume: cut metrics.jsonl back to the checkpoint's `step`."""
        self.check()
        return self.store.truncate_metrics(self.run_id, step)


__all__ = [
    "CKPT_DIR", "CONFIG_FILE", "FINAL_STATES", "LEASE_FILE", "METRICS_FILE", "NUMERICS_VERSION",
    "REQUIRED_RESULT_FIELDS", "RESULT_FIELDS", "RESULT_FILE", "RESULT_SCHEMA_VERSION", "STATES",
    "STATUS_FILE", "Lease", "LeaseLostError", "RunStore", "Status", "StoreError", "canonical_json",
    "compute_run_id", "config_hash", "default_owner", "read_json", "read_metrics", "read_result",
    "truncate_metrics", "validate_result", "write_json",
]
