"""The index shuffle (griffin_core/data/shuffle.py): a permutation of [0, n) for every n,
a pure function of (seed, epoch, index), and cheap for the paper preset's ~146M rows."""

import time

import numpy as np
import pytest

from griffin_core.data.errors import DataError
from griffin_core.data.shuffle import permute


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 65, 1000, 4096, 4097, 99_991])
def test_is_a_permutation_of_every_range(n):
    for seed, epoch in ((0, 0), (7, 3)):
        out = permute(np.arange(n), n, seed, epoch)
        assert out.dtype == np.int64 and out.shape == (n,)
        assert np.array_equal(np.sort(out), np.arange(n))


def test_is_a_pure_function_of_seed_epoch_and_index():
    n = 10_007
    idx = np.array([5, 0, 10_006, 5, 777])
    whole = permute(np.arange(n), n, seed=3, epoch=1)
    assert np.array_equal(permute(idx, n, 3, 1), whole[idx])  # one index at a time = the whole order
    assert np.array_equal(permute(idx, n, 3, 1), permute(idx, n, 3, 1))
    assert not np.array_equal(whole, permute(np.arange(n), n, 3, 2))  # another epoch, another order
    assert not np.array_equal(whole, permute(np.arange(n), n, 4, 1))  # another seed
    assert not np.array_equal(whole, np.arange(n))


def test_looks_shuffled():
    n = 100_000
    out = permute(np.arange(n), n, 0, 0)
    # Neighbours land far apart and positions are uncorrelated with indices.
    assert np.median(np.abs(np.diff(out))) > n / 10
    assert abs(np.corrcoef(np.arange(n), out)[0, 1]) < 0.02
    # Each tenth of the range is spread over the whole range.
    assert all(np.histogram(out[i * n // 10:(i + 1) * n // 10], bins=10, range=(0, n))[0].min() > 800
               for i in range(10))


def test_paper_scale_rows_need_no_permutation_in_memory():
    n = 146_000_000  # the paper preset's train rows
    idx = np.arange(1_000_000, 1_000_512)  # one step of 512 rows
    started = time.perf_counter()
    out = permute(idx, n, seed=0, epoch=2)
    assert time.perf_counter() - started < 0.5
    assert len(set(out.tolist())) == 512 and out.min() >= 0 and out.max() < n


def test_bad_ranges_fail():
    with pytest.raises(DataError, match="empty range"):
        permute([0], 0, 0)
    with pytest.raises(DataError, match=r"in \[0, 5\)"):
        permute([5], 5, 0)
