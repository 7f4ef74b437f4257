"""metrics.jsonl: one JSON object per line, each with an integer "step"; append-only.

Readers tolerate a cut-off last line (a writer killed mid-line); a corrupt line anywhere
else is an error naming the file and line. On resume the file is cut back to the
checkpoint's step, atomically.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterable, Mapping

from run_store.backends import resolve
from run_store.errors import StoreError, one_line
from run_store.jsonfiles import plain
from run_store.locations import METRICS_FILE, join

log = logging.getLogger(__name__)


def parse_metrics(raw: bytes, path: str) -> tuple[list[dict], list[bytes], bool]:
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
            err = one_line(e)
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
    backend, path = resolve(join(run_dir, METRICS_FILE))
    try:
        raw = backend.read(path)
    except FileNotFoundError:
        return []
    rows, _, dropped = parse_metrics(raw, path)
    if dropped:
        log.warning("%s: dropped a cut-off last line", path)
    return rows


def cut_back_at(backend: Any, path: str, step: int | None) -> bytes:
    """Rewrite `path` atomically with its complete rows of step <= `step` (all if None), if
    that changes it; the content it holds now."""
    try:
        raw = backend.read(path)
    except FileNotFoundError:
        return b""
    rows, lines, _ = parse_metrics(raw, path)
    data = b"".join(line + b"\n" for row, line in zip(rows, lines) if step is None or row["step"] <= step)
    if data != raw:
        backend.write_atomic(path, data)
    return data


def truncate_at(backend: Any, path: str, step: int | None) -> int:
    """Rewrite `path` atomically with its complete rows of step <= `step` (all if None);
    the number of rows kept."""
    return cut_back_at(backend, path, step).count(b"\n")


def truncate_metrics(run_dir: str | os.PathLike, step: int) -> int:
    """Cut `<run_dir>/metrics.jsonl` back to rows with step <= `step` (the checkpoint's step,
    on resume), atomically. Also removes a cut-off last line. Returns the rows kept."""
    backend, path = resolve(join(run_dir, METRICS_FILE))
    return truncate_at(backend, path, step)


def encode_rows(rows: Iterable[Mapping[str, Any]], path: str) -> bytes:
    out = []
    for row in rows:
        step = row.get("step") if isinstance(row, Mapping) else None
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"{path}: every metrics row needs an integer 'step', got {row!r}")
        line = json.dumps(plain(dict(row), "metrics row"), separators=(",", ":"), allow_nan=True)
        out.append(line.encode("utf-8") + b"\n")
    return b"".join(out)


def append_at(backend: Any, path: str, rows: Iterable[Mapping[str, Any]], fsync: bool) -> int:
    data = encode_rows(rows, path)
    if not data:
        return 0
    if not backend.ends_with_newline_or_empty(path):
        # A previous writer died mid-line: drop the partial line first, or appending would
        # turn it into a corrupt line in the middle of the file.
        truncate_at(backend, path, None)
    backend.append(path, data, fsync=fsync)
    return data.count(b"\n")

