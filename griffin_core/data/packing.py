"""Packing: documents -> one flat token stream -> fixed-length rows with document boundaries.

A stream is the documents of a split concatenated (in a seeded shuffled order) with the start
index of every document. Row r is the window stream[r*T : r*T + T + 1]: T inputs and, shifted by
one, their T next-token targets; consecutive rows share one token, so every token but the first
of the stream is a target exactly once per epoch. Rows cross document boundaries; the model is
told where documents start through `segment_pos`, and targets that belong to another document
than their input get loss weight 0.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import numpy as np

from griffin_core.data.errors import DataError
from griffin_core.data.splits import check_split
from griffin_core.data.tokenizer import token_dtype

# Held-out documents are shuffled with this fixed seed, whatever the run's seed, so every run
# of a study is evaluated on exactly the same held-out rows.
HELDOUT_SHUFFLE_SEED = 0


@dataclasses.dataclass(frozen=True)
class PackedStream:
    """A split as one stream: tokens [N] (uint16/int32, may be a memmap), doc_starts [D] int64."""

    tokens: np.ndarray
    doc_starts: np.ndarray
    """Sorted start index of every document; doc_starts[0] == 0."""

    def __len__(self) -> int:
        return len(self.tokens)

    def num_rows(self, seq_len: int) -> int:
        """Rows of T inputs + 1 target that fit: (N - 1) // T."""
        return max(0, (len(self.tokens) - 1) // seq_len)

    def rows(self, row_ids: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
        """Rows `row_ids` [B] -> batch dict of [B, T] arrays (see `BATCH_KEYS`)."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        if row_ids.size and (row_ids.min() < 0 or row_ids.max() >= self.num_rows(seq_len)):
            raise DataError(f"row ids must be in [0, {self.num_rows(seq_len)}) for seq_len {seq_len}")
        idx = row_ids[:, None] * seq_len + np.arange(seq_len + 1)        # [B, T+1]
        window = np.asarray(self.tokens[idx.ravel()]).reshape(idx.shape).astype(np.int32)
        doc = np.searchsorted(self.doc_starts, idx, side="right") - 1    # document of each index
        pos = idx - self.doc_starts[doc]                                 # position in that document
        return {
            "tokens": window[:, :-1],
            "targets": window[:, 1:],
            "segment_pos": pos[:, :-1].astype(np.int32),
            # A target at position 0 starts another document: unpredictable from this one.
            "loss_mask": (pos[:, 1:] != 0).astype(np.float32),
            "segment_ids": (doc[:, :-1] - doc[:, :1]).astype(np.int32),
        }


BATCH_KEYS = ("tokens", "targets", "segment_pos", "loss_mask", "segment_ids")
"""Every batch dict has these [B, T] arrays: tokens, targets, segment_pos (int32; position in the
document, 0 at its first token), loss_mask (float32, 0 where the target is not to be scored),
segment_ids (int32, document index within the row, counted from 0 at the row's first token)."""


def pack_documents(docs: Sequence[np.ndarray], order: np.ndarray | None = None,
                   vocab_size: int = 1 << 16) -> PackedStream:
    """Concatenate `docs` (in `order`, default as given) into one stream."""
    order = np.arange(len(docs)) if order is None else np.asarray(order)
    if len(order) == 0:
        raise DataError("cannot pack zero documents")
    lengths = np.fromiter((len(docs[i]) for i in order), dtype=np.int64, count=len(order))
    if (lengths == 0).any():
        raise DataError("cannot pack an empty document")
    tokens = np.empty(int(lengths.sum()), dtype=token_dtype(vocab_size))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    for i, a, n in zip(order, starts, lengths):
        tokens[a:a + n] = docs[i]
    return PackedStream(tokens=tokens, doc_starts=starts)


def document_order(num_docs: int, seed: int) -> np.ndarray:
    """The seeded shuffle of documents of a stream [num_docs]."""
    return np.random.default_rng([int(seed), 0x5EED]).permutation(num_docs)


_STREAMS: collections.OrderedDict = collections.OrderedDict()
_MAX_STREAMS = 4  # a few splits/seeds in memory at once; the corpus's train stream is ~75 MB


def packed_stream(source, split: str, seed: int = 0):
    """The split of `source` as a stream (`num_rows`, `rows`, `len`), built once per process
    and cached.

    Train documents are shuffled by `seed`; held-out ones by `HELDOUT_SHUFFLE_SEED` (same rows
    for every run). Token files (sources with `row_stream`) are used in file order as they
    are: a token_stream.ShardedStream that reads rows on demand.
    """
    check_split(split)
    if split == "heldout":
        seed = HELDOUT_SHUFFLE_SEED
    on_demand = getattr(source, "row_stream", None)
    key = (source.fingerprint(), split, None if on_demand else int(seed))
    if key in _STREAMS:
        _STREAMS.move_to_end(key)
        return _STREAMS[key]
    if on_demand is not None:
        stream = on_demand(split)
    else:
        docs = source.documents(split)
        stream = pack_documents(docs, document_order(len(docs), seed), source.vocab_size)
    _STREAMS[key] = stream
    while len(_STREAMS) > _MAX_STREAMS:
        _STREAMS.popitem(last=False)
    return stream
