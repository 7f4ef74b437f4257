"""A split of token files as one stream, read on demand: only the rows asked for are read.

The shards of a split are concatenated in manifest order; row r is the window
[r*T, r*T + T + 1) of the concatenation (as in packing.py), and may cross from one shard into
the next. A document starts at every shard start and after every separator token
(`eot_token`); without a separator a shard is one document. Positions in documents are found
per row: the window itself, plus a look back from its first token to the previous separator
(a few hundred tokens for typical documents; the shard start bounds it). Nothing scans a
whole split, so each process of a multi-host run reads its own rows and nothing else.

Reads use `os.pread` on file descriptors kept open: no page cache mapping of terabyte files,
no shared file offset between threads, and the bytes read are what the OS counts. Shards in an
object store (URLs) are read as byte ranges of their objects (remote.py), one request each.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from griffin_core.data import remote
from griffin_core.data.errors import DataError

_LOOK_BACK = 1 << 9  # tokens read by the first step of the backward search for a document start (doubling)
_SCAN = 1 << 20  # tokens per chunk when documents are enumerated


class ShardedStream:
    """Tokens of a split's shards [N] (N = the sum of their lengths), read with pread."""

    def __init__(self, paths: Sequence[Path | str], lengths: Sequence[int], dtype: str, eot_token: int | None):
        self.paths = [p if isinstance(p, str) and remote.is_remote(p) else Path(p) for p in paths]
        self.dtype = np.dtype(dtype)
        self.eot_token = eot_token
        self.offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, np.int64))]).astype(np.int64)
        """Start of each shard in the stream [S + 1]; the last is N."""
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __del__(self):
        for fd in getattr(self, "_fds", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    def num_rows(self, seq_len: int) -> int:
        """Rows of T inputs + 1 target that fit: (N - 1) // T."""
        return max(0, (len(self) - 1) // seq_len)

    def _fd(self, shard: int) -> int:
        if shard not in self._fds:
            self._fds[shard] = os.open(self.paths[shard], os.O_RDONLY)
        return self._fds[shard]

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Tokens [hi - lo] of the stream, across shard boundaries."""
        if not 0 <= lo <= hi <= len(self):
            raise DataError(f"token range [{lo}, {hi}) outside the stream [0, {len(self)})")
        out = np.empty(hi - lo, dtype=self.dtype)
        view = memoryview(out).cast("B")
        item = self.dtype.itemsize
        shard = int(np.searchsorted(self.offsets, lo, side="right")) - 1
        pos = lo
        while pos < hi:
            end = min(hi, int(self.offsets[shard + 1]))
            want, at, done = (end - pos) * item, (pos - int(self.offsets[shard])) * item, (pos - lo) * item
            if isinstance(self.paths[shard], str):
                data = remote.read(self.paths[shard], at, at + want)
                if len(data) != want:
                    raise DataError(f"token file {self.paths[shard]}: short read at byte {at} (truncated?)")
                view[done:done + want] = data
                want = 0
            while want:  # pread may return less than asked (signals, huge reads)
                got = os.preadv(self._fd(shard), [view[done:done + want]], at)
                if got <= 0:
                    raise DataError(f"token file {self.paths[shard]}: short read at byte {at} (truncated?)")
                want, at, done = want - got, at + got, done + got
            pos, shard = end, shard + 1
        return out

    def _shard_of(self, index: int) -> int:
        return int(np.searchsorted(self.offsets, index, side="right")) - 1

    def doc_start(self, index: int) -> int:
        """The start of the document that holds stream position `index`."""
        base = int(self.offsets[self._shard_of(index)])
        if self.eot_token is None:
            return base
        hi, chunk = index, _LOOK_BACK
        while hi > base:
            lo = max(base, hi - chunk)
            found = np.flatnonzero(self.read(lo, hi) == self.eot_token)
            if found.size:
                return lo + int(found[-1]) + 1
            hi, chunk = lo, min(chunk * 2, _SCAN)
        return base

    def rows(self, row_ids: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """Rows `row_ids` [B] -> batch dict of [B, T] arrays (packing.BATCH_KEYS)."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        n = self.num_rows(seq_len)
        if row_ids.size and (row_ids.min() < 0 or row_ids.max() >= n):
            raise DataError(f"row ids must be in [0, {n}) for seq_len {seq_len}")
        b, width = len(row_ids), seq_len + 1
        window = np.empty((b, width), np.int32)
        pos = np.empty((b, width), np.int64)
        seg = np.empty((b, width), np.int64)
        offsets = np.arange(width)
        for i, r in enumerate(row_ids):
            g0 = int(r) * seq_len
            window[i] = self.read(g0, g0 + width)
            # Where a document starts inside the window: after a separator, or at a shard start.
            starts = np.zeros(width, bool)
            if self.eot_token is not None:
                starts[1:] = window[i, :-1] == self.eot_token
            inner = self.offsets[(self.offsets > g0) & (self.offsets < g0 + width)] - g0
            starts[inner] = True
            first = self.doc_start(g0)
            starts[0] = first == g0
            last = np.maximum.accumulate(np.where(starts, offsets, -1))  # latest start at or before j
            pos[i] = np.where(last >= 0, offsets - last, offsets + g0 - first)
            seg[i] = np.cumsum(np.concatenate([[0], starts[1:]]))
        return {
            "tokens": window[:, :-1],
            "targets": window[:, 1:],
            "segment_pos": pos[:, :-1].astype(np.int32),
            # A target at position 0 starts another document: unpredictable from this one.
            "loss_mask": (pos[:, 1:] != 0).astype(np.float32),
            "segment_ids": seg[:, :-1].astype(np.int32),
        }

    def documents(self) -> Iterator[np.ndarray]:
        """Every document in order, as read-only memmap slices [len] (enumerating them reads
        the split: for statistics and evaluation sets, stopped early by the caller)."""
        for shard, (path, lo, hi) in enumerate(zip(self.paths, self.offsets[:-1], self.offsets[1:])):
            arr = (self.read(int(lo), int(hi)) if isinstance(path, str)
                   else np.memmap(path, dtype=self.dtype, mode="r", shape=(int(hi - lo),)))
            if self.eot_token is None:
                yield arr
                continue
            start = 0
            for c in range(0, len(arr), _SCAN):
                for end in np.flatnonzero(np.asarray(arr[c:c + _SCAN]) == self.eot_token) + c + 1:
                    yield arr[start:end]
                    start = int(end)
            if start < len(arr):
                yield arr[start:]
