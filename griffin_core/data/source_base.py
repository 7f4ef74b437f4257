"""The interface every source of documents implements (sources.py, token_files.py)."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np


class TokenSource(abc.ABC):
    """Documents for a split, a fingerprint and token counts."""

    tokenizer_name: str
    vocab_size: int
    row_order: str = "permutation"
    """How TrainBatches orders the rows of an epoch: 'permutation' (a seeded permutation of all
    rows, for splits that fit in memory) or 'index' (shuffle.py, evaluated per index)."""

    @abc.abstractmethod
    def documents(self, split: str) -> Sequence[np.ndarray]:
        """Documents of `split` in a fixed order: a sequence of token arrays [N_doc]."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Hex sha256 of the content, the split rule and the tokenizer: equal iff same data."""

    def num_tokens(self, split: str) -> int:
        """Total tokens in `split`."""
        return int(sum(len(d) for d in self.documents(split)))

    def num_documents(self, split: str) -> int:
        return len(self.documents(split))

    def num_bytes(self, split: str) -> int | None:
        """UTF-8 bytes of text behind `split` (for bits per byte); None if unknown."""
        return None
