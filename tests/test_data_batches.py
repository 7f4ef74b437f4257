"""Training/eval batches: pure functions of (seed, step), epochs, sharding, long documents."""

import numpy as np
import pytest

from griffin_core.data.batches import HeldoutBatches, TrainBatches, count_long_documents, long_documents
from griffin_core.data.errors import DataError
from griffin_core.data.sources import TokenSource

T, B = 8, 4


class ListSource(TokenSource):
    """Documents given in memory; fingerprint from content."""

    tokenizer_name = "bytes"
    vocab_size = 256

    def __init__(self, train, heldout):
        self.docs = {"train": train, "heldout": heldout}

    def documents(self, split):
        return self.docs[split]

    def fingerprint(self):
        return str(hash(tuple(tuple(d.tolist()) for s in ("train", "heldout") for d in self.docs[s])))


def _source(n_train=30, n_held=12, seed=0):
    rng = np.random.default_rng(seed)
    doc = lambda: rng.integers(0, 256, size=int(rng.integers(2, 30))).astype(np.uint16)
    return ListSource([doc() for _ in range(n_train)], [doc() for _ in range(n_held)])


def _equal(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_batch_is_a_pure_function_of_seed_and_step():
    src = _source()
    first = TrainBatches(src, T, B, seed=7)
    steps = [0, 1, 5, 40, 3]
    ref = {s: first.batch(s) for s in steps}
    again = TrainBatches(src, T, B, seed=7)
    for s in reversed(steps):  # another instance, another order
        assert _equal(again.batch(s), ref[s])
        assert _equal(again.batch(s), ref[s])  # and twice
    other = TrainBatches(src, T, B, seed=8)
    assert not _equal(other.batch(0), ref[0])
    assert not _equal(first.batch(0), first.batch(1))


def test_each_epoch_visits_every_row_once_and_epochs_are_counted():
    src = _source()
    tb = TrainBatches(src, T, B, seed=1)
    n = tb.num_rows
    steps = 3 * n // B + 1  # crosses into a fourth epoch; B need not divide n
    ids = np.concatenate([tb.row_ids(s) for s in range(steps)])
    for e in range(3):
        assert sorted(ids[e * n:(e + 1) * n]) == list(range(n))
    assert not np.array_equal(ids[:n], ids[n:2 * n])  # epochs use different orders
    total = sum(len(d) for d in src.documents("train"))
    assert tb.epochs(steps) == pytest.approx(steps * B * T / total)
    assert tb.epochs(0) == 0


@pytest.mark.parametrize("procs", [2, 4])
def test_process_shards_cover_the_global_batch_exactly(procs):
    src = _source()
    whole = TrainBatches(src, T, B, seed=3)
    for step in (0, 9):
        parts = [TrainBatches(src, T, B, seed=3, process_index=p, process_count=procs).batch(step)
                 for p in range(procs)]
        for k, v in whole.batch(step).items():
            assert np.array_equal(np.concatenate([p[k] for p in parts]), v)
    with pytest.raises(DataError, match="divisible"):
        TrainBatches(src, T, 6, process_count=4)
    with pytest.raises(DataError, match="process_index"):
        TrainBatches(src, T, B, process_index=2, process_count=2)


def test_heldout_batches_are_fixed_and_padded():
    src = _source()
    a = HeldoutBatches(src, T, 3, max_rows=7)
    b = HeldoutBatches(src, T, 3, max_rows=7)
    assert len(a) == 3
    for x, y in zip(a, b):
        assert _equal(x, y)
    last = a.batch(2)
    assert last["loss_mask"][1:].sum() == 0 and last["loss_mask"][0].sum() > 0
    # Held-out rows do not depend on the training seed.
    assert _equal(HeldoutBatches(src, T, 3).batch(0), a.batch(0))


def test_long_documents_start_at_position_zero():
    src = _source()
    L = 12
    docs = long_documents(src, L)
    long_ones = [d for d in src.documents("heldout") if len(d) >= L + 1]
    assert docs["tokens"].shape == (len(long_ones), L) == (count_long_documents(src, L), L)
    for row, d in zip(range(len(long_ones)), long_ones):
        assert docs["tokens"][row].tolist() == d[:L].tolist()
        assert docs["targets"][row].tolist() == d[1:L + 1].tolist()
    assert (docs["segment_pos"] == np.arange(L)).all() and docs["loss_mask"].all()
    assert long_documents(src, L, max_docs=1)["tokens"].shape == (1, L)
    with pytest.raises(DataError, match="no heldout document"):
        long_documents(src, 10_000)


def test_too_small_split_fails_clearly():
    src = ListSource([np.arange(5, dtype=np.uint16)], [np.arange(5, dtype=np.uint16)])
    with pytest.raises(DataError, match="not one row"):
        TrainBatches(src, 16, 2)
    with pytest.raises(DataError, match="non-negative"):
        TrainBatches(_source(), T, B).batch(-1)


def test_embedded_corpus_batches():
    from griffin_core.data.sources import CorpusSource

    tb = TrainBatches(CorpusSource(), 64, 4, seed=0)
    b = tb.batch(123)
    assert {k: (v.shape, v.dtype.name) for k, v in b.items()} == {
        "tokens": ((4, 64), "int32"), "targets": ((4, 64), "int32"),
        "segment_pos": ((4, 64), "int32"), "loss_mask": ((4, 64), "float32"),
        "segment_ids": ((4, 64), "int32")}
    assert b["tokens"].max() < 256 and (b["tokens"][:, 1:] == b["targets"][:, :-1]).all()
    assert tb.epochs(tb.num_rows // 4) == pytest.approx(1.0, rel=1e-3)
