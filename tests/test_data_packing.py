"""Packing: rows, segment positions and the cross-document loss mask, against a plain loop."""

import numpy as np
import pytest

from griffin_core.data.errors import DataError
from griffin_core.data.packing import BATCH_KEYS, document_order, pack_documents


def _docs(seed=0, n=9):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=int(rng.integers(1, 40))).astype(np.uint16) for _ in range(n)]


def _expected_row(docs, order, r, t):
    """Row r by brute force: walk the concatenated documents token by token."""
    stream, doc_of, pos_of = [], [], []
    for j, i in enumerate(order):
        for p, tok in enumerate(docs[i]):
            stream.append(int(tok)); doc_of.append(j); pos_of.append(p)
    lo = r * t
    tokens = stream[lo:lo + t]
    targets = stream[lo + 1:lo + t + 1]
    seg_pos = pos_of[lo:lo + t]
    # Loss only where input and target lie in the same document.
    mask = [1.0 if doc_of[lo + k] == doc_of[lo + k + 1] else 0.0 for k in range(t)]
    seg_ids = [doc_of[lo + k] - doc_of[lo] for k in range(t)]
    return tokens, targets, seg_pos, mask, seg_ids


@pytest.mark.parametrize("t", [1, 5, 16])
def test_rows_match_a_straightforward_loop(t):
    docs = _docs()
    order = document_order(len(docs), seed=3)
    stream = pack_documents(docs, order, vocab_size=256)
    n = stream.num_rows(t)
    assert n == (sum(map(len, docs)) - 1) // t
    batch = stream.rows(np.arange(n), t)
    assert set(batch) == set(BATCH_KEYS)
    for r in range(n):
        tokens, targets, seg_pos, mask, seg_ids = _expected_row(docs, order, r, t)
        assert batch["tokens"][r].tolist() == tokens
        assert batch["targets"][r].tolist() == targets
        assert batch["segment_pos"][r].tolist() == seg_pos
        assert batch["loss_mask"][r].tolist() == mask
        assert batch["segment_ids"][r].tolist() == seg_ids
    assert batch["tokens"].dtype == np.int32 and batch["loss_mask"].dtype == np.float32


def test_segment_pos_resets_exactly_at_document_starts():
    docs = [np.full(n, i, np.uint16) for i, n in enumerate([3, 1, 4, 2])]  # token = doc index
    stream = pack_documents(docs, vocab_size=256)
    b = stream.rows(np.arange(stream.num_rows(9)), 9)
    assert b["segment_pos"][0].tolist() == [0, 1, 2, 0, 0, 1, 2, 3, 0]
    assert b["loss_mask"][0].tolist() == [1, 1, 0, 0, 1, 1, 1, 0, 1]
    # Every scored target comes from the same document as its input.
    scored = b["loss_mask"] > 0
    assert (b["tokens"][scored] == b["targets"][scored]).all()


def test_document_order_is_a_seeded_permutation():
    assert sorted(document_order(50, 1)) == list(range(50))
    assert (document_order(50, 1) == document_order(50, 1)).all()
    assert (document_order(50, 1) != document_order(50, 2)).any()


def test_bad_rows_and_documents_fail():
    stream = pack_documents(_docs(), vocab_size=256)
    with pytest.raises(DataError):
        stream.rows(np.array([stream.num_rows(4)]), 4)
    with pytest.raises(DataError):
        pack_documents([np.zeros(0, np.uint16)])
