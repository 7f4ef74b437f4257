"""Corpus statistics: tokens per split and n-gram entropies of the training split.

The unigram entropy H(X) and the bigram conditional entropy H(X_t | X_{t-1}), both estimated
from counts on the training split, are the losses of the best context-free and best
previous-token-only predictors of that split. Plotted as horizontal lines on loss-vs-FLOPs
figures they show how far a model is beyond trivial statistics. Pairs are counted only inside
documents (a document's first token has no predecessor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from griffin_core.data.errors import DataError

_LN2 = math.log(2.0)
_CHUNK = 1 << 22  # tokens per counting pass: bounded temporary memory
_DENSE_LIMIT = 1 << 26  # V*V bins counted densely up to this (vocab ~8K); beyond, np.unique


def entropy_bits(counts: np.ndarray) -> float:
    """Entropy in bits of the empirical distribution given by `counts` [K]."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    n = c.sum()
    if n == 0:
        raise DataError("entropy of zero counts is undefined")
    return float(math.log2(n) - (c * np.log2(c)).sum() / n)


def _chunks(docs: Sequence[np.ndarray]) -> Iterable[list[np.ndarray]]:
    group, size = [], 0
    for d in docs:
        group.append(d)
        size += len(d)
        if size >= _CHUNK:
            yield group
            group, size = [], 0
    if group:
        yield group


def unigram_counts(docs: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """Token counts [V] over all documents."""
    counts = np.zeros(vocab_size, np.int64)
    for group in _chunks(docs):
        counts += np.bincount(np.concatenate(group).astype(np.int64), minlength=vocab_size)
    return counts


def bigram_counts(docs: Sequence[np.ndarray], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of within-document pairs: (pair codes [K] int64 = prev * V + next, counts [K])."""
    v = int(vocab_size)
    dense = np.zeros(v * v, np.int64) if v * v <= _DENSE_LIMIT else None
    sparse: list[np.ndarray] = []
    for group in _chunks(docs):
        codes = np.concatenate([d[:-1].astype(np.int64) * v + d[1:] for d in group if len(d) > 1]
                               or [np.zeros(0, np.int64)])
        if dense is not None:
            dense += np.bincount(codes, minlength=v * v)
        else:
            sparse.append(codes)
    if dense is not None:
        keys = np.flatnonzero(dense)
        return keys, dense[keys]
    return np.unique(np.concatenate(sparse), return_counts=True)


def unigram_entropy(docs: Sequence[np.ndarray], vocab_size: int) -> float:
    """H(X) in bits per token."""
    return entropy_bits(unigram_counts(docs, vocab_size))


def bigram_entropy(docs: Sequence[np.ndarray], vocab_size: int) -> float:
    """H(X_t | X_{t-1}) = H(X_{t-1}, X_t) - H(X_{t-1}) in bits per token, within documents."""
    keys, counts = bigram_counts(docs, vocab_size)
    if counts.sum() == 0:
        raise DataError("bigram entropy needs a document of at least 2 tokens")
    prev_counts = np.bincount(keys // vocab_size, weights=counts, minlength=0)
    return entropy_bits(counts) - entropy_bits(prev_counts)


def split_summary(source) -> dict[str, int | None]:
    """Documents, tokens and (if known) bytes of each split."""
    out: dict[str, int | None] = {}
    for split in ("train", "heldout"):
        out[f"{split}_documents"] = source.num_documents(split)
        out[f"{split}_tokens"] = source.num_tokens(split)
        out[f"{split}_bytes"] = source.num_bytes(split)
    return out


_REFERENCE: dict[str, dict[str, float]] = {}


def entropy_reference(source) -> dict[str, float]:
    """Unigram and bigram entropies of the train split, bits and nats per token (cached)."""
    key = source.fingerprint()
    if key not in _REFERENCE:
        docs = source.documents("train")
        h1 = unigram_entropy(docs, source.vocab_size)
        h2 = bigram_entropy(docs, source.vocab_size)
        _REFERENCE[key] = {"unigram_bits": h1, "unigram_nats": h1 * _LN2,
                           "bigram_bits": h2, "bigram_nats": h2 * _LN2}
    return dict(_REFERENCE[key])


def corpus_report(source) -> dict:
    """Everything a run records about its data: fingerprint, split sizes and entropies."""
    return {"fingerprint": source.fingerprint(), "tokenizer": source.tokenizer_name,
            "vocab_size": source.vocab_size, **split_summary(source), **entropy_reference(source)}


def main() -> int:
    """`python -m griffin_core.data.stats`: the embedded corpus's fingerprint, split sizes and
    entropies (docs/data.md quotes them)."""
    from griffin_core.data.sources import CorpusSource

    for key, value in corpus_report(CorpusSource()).items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
