"""Metrics rows on their way to metrics.jsonl: at once on a local folder, in batches on a bucket.

A local append is cheap, so every row is written when it comes (a reader sees the run live).
A bucket has no append: each write puts the whole object again, and object stores throttle
writes to one name above about one a second. There rows wait in memory and go out together
at most every `flush_s` seconds, and whenever the caller forces it (the trainer does at every
evaluation, checkpoint and exit). The writer remembers what the object holds (it wrote it, or
read it once when the run started and was cut back to its checkpoint), so a batch costs one
PUT and no read.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from run_store.lease import Lease
from run_store.locations import METRICS_FILE
from run_store.metrics import encode_rows, parse_metrics

DEFAULT_FLUSH_S = 5.0
"""`store.metrics_flush_s`'s default: a bucket receives metrics at most this often."""


class MetricsWriter:
    """Writes a run's metrics rows through its lease (see the module doc).

    flush_s: on a bucket, the longest rows wait before a write (0: every batch at once);
    ignored on local folders. `writes` counts the writes made."""

    def __init__(self, lease: Lease, flush_s: float = DEFAULT_FLUSH_S,
                 clock: Callable[[], float] = time.monotonic):
        if flush_s < 0:
            raise ValueError(f"store.metrics_flush_s={flush_s} must be non-negative")
        self.lease = lease
        self.flush_s = 0.0 if lease.local else float(flush_s)
        self.writes = 0
        self._clock = clock
        self._pending: list[Mapping[str, Any]] = []
        self._content: bytes | None = None  # what the bucket's object holds, when known
        self._last = clock()

    def cut_back(self, step: int) -> list[dict]:
        """On (re)start: cut metrics.jsonl back to `step` (the checkpoint's) and return the
        rows it keeps. Rows still waiting are dropped: they came after the checkpoint."""
        self._pending = []
        self._content = self.lease.cut_back_metrics(step)
        rows, _, _ = parse_metrics(self._content, METRICS_FILE)
        return rows

    def add(self, rows: Iterable[Mapping[str, Any]], force: bool = False) -> None:
        """Queue `rows`; write everything queued if `force`, on a local folder, or when the
        last write is `flush_s` old."""
        self._pending.extend(rows)
        if force or self._clock() - self._last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write the queued rows now (nothing if none wait)."""
        if not self._pending:
            return
        rows = self._pending
        if self.lease.local:
            self.lease.append_metrics(rows)
        else:
            if self._content is None:
                self._content = self.lease.cut_back_metrics(None)  # read once (a cut-off line is dropped)
            data = self._content + encode_rows(rows, METRICS_FILE)
            self.lease.replace_metrics(data)  # if this raises, the rows stay queued
            self._content = data
        self._pending = []
        self.writes += 1
        self._last = self._clock()

    @property
    def pending(self) -> int:
        """Rows queued and not written yet."""
        return len(self._pending)
