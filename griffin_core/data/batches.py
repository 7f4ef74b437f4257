"""Batches for training and evaluation, as pure functions of (seed, step).

Training: the train stream is cut into N rows (packing.py). Epoch e visits the rows in the
order of a permutation seeded by (seed, e); the epochs' orders are concatenated and step s
takes entries [s*B, (s+1)*B). So `batch(step)` needs no iterator state: a resumed run, or a
run that skips around, sees exactly the batches it would have seen. The permutation is
NumPy's `permutation(N)` for in-memory sources and an index shuffle (shuffle.py, nothing
materialised) for token files, whose splits may have ~1e8 rows (`source.row_order`).

Multi-host data parallel: with P processes each takes its contiguous B/P slice of the global
batch; the union over processes is exactly the global batch.
"""

from __future__ import annotations

import hashlib

import numpy as np

from griffin_core.data import shuffle
from griffin_core.data.errors import DataError
from griffin_core.data.packing import packed_stream


def _check_shape(seq_len: int, batch_size: int, process_index: int, process_count: int) -> None:
    if seq_len < 1 or batch_size < 1:
        raise DataError(f"seq_len={seq_len} and batch_size={batch_size} must be >= 1")
    if process_count < 1 or not 0 <= process_index < process_count:
        raise DataError(f"process_index={process_index} must be in [0, process_count={process_count})")
    if batch_size % process_count:
        raise DataError(f"batch_size={batch_size} is not divisible by process_count={process_count}")


class TrainBatches:
    """Training batches of the train split: `batch(step)` -> dict of [B_local, T] arrays."""

    def __init__(self, source, seq_len: int, batch_size: int, seed: int = 0,
                 process_index: int = 0, process_count: int = 1):
        _check_shape(seq_len, batch_size, process_index, process_count)
        self.source = source
        self.seq_len = seq_len
        self.batch_size = batch_size  # global B: rows per step over all processes
        self.seed = int(seed)
        self.process_index = process_index
        self.process_count = process_count
        self.stream = packed_stream(source, "train", self.seed)
        self.num_rows = self.stream.num_rows(seq_len)
        if self.num_rows < 1:
            raise DataError(f"train split has {len(self.stream)} tokens: not one row of "
                            f"seq_len {seq_len} + 1")
        self._perms: dict[int, np.ndarray] = {}
        self.index_shuffle = getattr(source, "row_order", "permutation") == "index"

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    @property
    def tokens_per_step(self) -> int:
        """Input tokens per global step, B * T."""
        return self.batch_size * self.seq_len

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) >= 3:  # a batch spans at most two epochs; keep a spare
                self._perms.pop(min(self._perms))
            rng = np.random.default_rng([self.seed, int(epoch), 0xE0C])
            self._perms[epoch] = rng.permutation(self.num_rows)
        return self._perms[epoch]

    def row_ids(self, step: int) -> np.ndarray:
        """Global row ids [B] of step `step` (all processes)."""
        if int(step) != step or step < 0:
            raise DataError(f"step must be a non-negative integer, got {step!r}")
        flat = int(step) * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
        epochs, within = np.divmod(flat, self.num_rows)
        out = np.empty(self.batch_size, dtype=np.int64)
        for e in np.unique(epochs):  # a batch may straddle the end of an epoch
            sel = epochs == e
            if self.index_shuffle:
                out[sel] = shuffle.permute(within[sel], self.num_rows, self.seed, int(e))
            else:
                out[sel] = self._epoch_order(int(e))[within[sel]]
        return out

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's slice of step `step`: dict of [B / P, T] arrays (packing.BATCH_KEYS)."""
        ids = self.row_ids(step)
        b = self.local_batch_size
        return self.stream.rows(ids[self.process_index * b:(self.process_index + 1) * b], self.seq_len)

    def epochs(self, steps: int) -> float:
        """Epochs of the train split consumed after `steps` steps: tokens seen / tokens in split."""
        return steps * self.tokens_per_step / len(self.stream)

    def fingerprint(self) -> str:
        """Identifies the batch sequence: source, shape and seed (not the process layout)."""
        desc = f"train\n{self.source.fingerprint()}\n{self.seq_len}\n{self.batch_size}\n{self.seed}"
        return hashlib.sha256(desc.encode()).hexdigest()


class HeldoutBatches:
    """A fixed set of packed held-out rows: the first `max_rows` of the held-out stream.

    The held-out stream's order does not depend on the run's seed, so every run is scored on
    the same tokens. The last batch is padded with rows of loss_mask 0 (fixed shapes).
    """

    def __init__(self, source, seq_len: int, batch_size: int, max_rows: int | None = None,
                 process_index: int = 0, process_count: int = 1):
        _check_shape(seq_len, batch_size, process_index, process_count)
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.process_index = process_index
        self.process_count = process_count
        self.stream = packed_stream(source, "heldout")
        available = self.stream.num_rows(seq_len)
        if available < 1:
            raise DataError(f"held-out split has {len(self.stream)} tokens: not one row of "
                            f"seq_len {seq_len} + 1")
        self.num_rows = available if max_rows is None else min(int(max_rows), available)

    def __len__(self) -> int:
        return -(-self.num_rows // self.batch_size)

    def batch(self, i: int) -> dict[str, np.ndarray]:
        """Batch i in [0, len(self)): this process's [B / P, T] slice; padding rows have mask 0."""
        if not 0 <= i < len(self):
            raise DataError(f"held-out batch {i} out of range [0, {len(self)})")
        b = self.batch_size // self.process_count
        ids = i * self.batch_size + self.process_index * b + np.arange(b)  # only this process's rows are read
        real = ids < self.num_rows
        out = self.stream.rows(np.where(real, ids, 0), self.seq_len)
        out["loss_mask"] *= real[:, None].astype(np.float32)
        return out

    def __iter__(self):
        return (self.batch(i) for i in range(len(self)))


def long_documents(source, length: int, max_docs: int | None = None,
                   split: str = "heldout") -> dict[str, np.ndarray]:
    """Unpacked documents for loss by position: [n, L] arrays, one document per row.

    Takes the documents of `split` (in the source's fixed order) with at least L + 1 tokens
    (L inputs and the target of the last), crops each to its first L + 1 tokens, so column t is
    position t of the document. n = min(available, max_docs); DataError if none qualifies.
    Sources that enumerate documents lazily (`iter_documents`: token files) are read only
    until max_docs are found.
    """
    if length < 1:
        raise DataError(f"length={length} must be >= 1")
    lazy = getattr(source, "iter_documents", None)
    docs = []
    for d in (lazy(split) if lazy else source.documents(split)):
        if len(d) >= length + 1:
            docs.append(d)
            if max_docs is not None and len(docs) >= max_docs:
                break
    if not docs:
        longest = max((len(d) for d in source.documents(split)), default=0)
        raise DataError(f"no {split} document has {length + 1} tokens for loss by position at "
                        f"length {length} (longest has {longest})")
    window = np.stack([np.asarray(d[:length + 1]) for d in docs]).astype(np.int32)
    n = len(docs)
    return {
        "tokens": window[:, :-1],
        "targets": window[:, 1:],
        "segment_pos": np.broadcast_to(np.arange(length, dtype=np.int32), (n, length)).copy(),
        "loss_mask": np.ones((n, length), np.float32),
        "segment_ids": np.zeros((n, length), np.int32),
    }


def count_long_documents(source, length: int, split: str = "heldout") -> int:
    """How many `split` documents are long enough for `long_documents(source, length)`."""
    return sum(1 for d in source.documents(split) if len(d) >= length + 1)
