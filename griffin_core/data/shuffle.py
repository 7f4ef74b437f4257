"""An index shuffle: a pseudo-random permutation of [0, N) evaluated one index at a time.

`permute(indices, n, seed, epoch)` maps each index in [0, n) to its place in the epoch's order,
without materialising the permutation: the paper preset's train split has ~146M rows, and a
`rng.permutation(N)` per epoch on every host would be 1.2 GB of int64 and seconds of work for
a batch of a few hundred rows.

Construction: a balanced Feistel network on 2h-bit integers (2^(2h) >= n, h half the bits)
is a bijection of [0, 2^(2h)) whatever its round function; cycle-walking (apply it again
while the value is >= n) restricts it to a bijection of [0, n). Since 2^(2h) < 4n, fewer than
four applications are needed on average. The round function mixes (key, half) with the
splitmix64 finaliser; the round keys come from sha512 of (seed, epoch), so the order is a pure
function of (seed, epoch, index), the same on every host and Python build.
"""

from __future__ import annotations

import hashlib

import numpy as np

from griffin_core.data.errors import DataError

ROUNDS = 6
"""Feistel rounds: 4 already give a pseudo-random permutation (Luby-Rackoff); 2 spare."""
VERSION = "feistel6-splitmix64/1"
"""Names this construction; it enters the fingerprint of the sources that use it."""

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _round_keys(seed: int, epoch: int) -> np.ndarray:
    """ROUNDS keys [ROUNDS] uint64 from sha512 of (seed, epoch)."""
    digest = hashlib.sha512(f"index-shuffle\n{int(seed)}\n{int(epoch)}".encode()).digest()
    return np.frombuffer(digest[:8 * ROUNDS], dtype="<u8").astype(np.uint64)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """splitmix64's finaliser of x ^ key: every output bit depends on every input bit."""
    z = x ^ key
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _feistel(x: np.ndarray, keys: np.ndarray, half: int) -> np.ndarray:
    """One pass of the network over 2*half-bit values x [K] uint64 (a bijection of that range)."""
    mask = np.uint64((1 << half) - 1)
    left, right = x >> np.uint64(half), x & mask
    for key in keys:
        left, right = right, left ^ (_mix(right, key) & mask)
    return (left << np.uint64(half)) | right


def permute(indices, n: int, seed: int, epoch: int = 0) -> np.ndarray:
    """indices [K] in [0, n) -> their images [K] int64 under the (seed, epoch) permutation."""
    idx = np.asarray(indices, dtype=np.int64)
    n = int(n)
    if n < 1:
        raise DataError(f"index shuffle of an empty range (n={n})")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise DataError(f"index shuffle: indices must be in [0, {n})")
    if n == 1:
        return np.zeros_like(idx)
    bits = max(2, (n - 1).bit_length())
    half = (bits + 1) // 2  # balanced halves: the domain 2^(2*half) is below 4n
    keys = _round_keys(seed, epoch)
    out = idx.astype(np.uint64)
    pending = np.arange(idx.size)
    values = out.copy()
    with np.errstate(over="ignore"):  # the mixer multiplies modulo 2^64 on purpose
        while pending.size:
            values = _feistel(values, keys, half)
            inside = values < np.uint64(n)
            out[pending[inside]] = values[inside]
            pending, values = pending[~inside], values[~inside]
    return out.astype(np.int64)
