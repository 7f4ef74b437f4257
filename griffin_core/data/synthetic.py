"""The paper's synthetic tasks (Griffin, Fig. 6) as batch sources, deterministic per (seed, step).

Both tasks use a 16-token vocabulary by default, one sequence per row, and the same batch dict
as packed text (packing.BATCH_KEYS), with `loss_mask` = 1 exactly on the scored positions.
Exact formats (also in docs/data.md), for a row of T inputs built from a sequence z[0..T]:
inputs = z[:T], targets = z[1:].

Selective copying (K = num_data_tokens data tokens):
    ids: 0 = blank (noise), 1 = separator, 2..V-1 = data symbols.
    z[0 : T-K]      blanks, with K data tokens at sorted, distinct, uniformly random positions
    z[T-K]          separator
    z[T-K+1 : T+1]  the K data tokens again, in their order of appearance
    scored: inputs T-K .. T-1, whose targets are the K data tokens (teacher forcing: the input
    at an answer position is the previous answer token).

Induction heads:
    ids: 0 = trigger, 1..V-1 = ordinary tokens.
    z is uniform random ordinary tokens, except z[p] = trigger and z[p+1] = a (the answer), for
    p uniform in [0, T-3], and z[T-1] = trigger, z[T] = a. The trigger occurs exactly twice.
    scored: input T-1 only (the second trigger), target a.
"""

from __future__ import annotations

import hashlib

import numpy as np

from griffin_core.data.errors import DataError

SPLIT_SALT = {"train": 0, "eval": 1}  # eval batches come from a separate random stream


def _rng(task_id: int, seed: int, step: int, split: str) -> np.random.Generator:
    if split not in SPLIT_SALT:
        raise DataError(f"synthetic split must be one of {tuple(SPLIT_SALT)}, got {split!r}")
    if int(step) != step or step < 0:
        raise DataError(f"step must be a non-negative integer, got {step!r}")
    return np.random.default_rng([task_id, int(seed), SPLIT_SALT[split], int(step)])


def _finish(z: np.ndarray, scored: np.ndarray) -> dict[str, np.ndarray]:
    """z [B, T+1], scored [T] bool -> batch dict of [B, T] arrays."""
    b, t = z.shape[0], z.shape[1] - 1
    return {
        "tokens": z[:, :-1].astype(np.int32),
        "targets": z[:, 1:].astype(np.int32),
        "segment_pos": np.broadcast_to(np.arange(t, dtype=np.int32), (b, t)).copy(),
        "loss_mask": np.broadcast_to(scored.astype(np.float32), (b, t)).copy(),
        "segment_ids": np.zeros((b, t), np.int32),
    }


class _SyntheticTask:
    task_id = -1
    name = ""

    def __init__(self, seq_len: int, batch_size: int, seed: int = 0, vocab_size: int = 16):
        if batch_size < 1:
            raise DataError(f"batch_size={batch_size} must be >= 1")
        self.seq_len, self.batch_size, self.seed, self.vocab_size = seq_len, batch_size, int(seed), vocab_size

    def scored_positions(self, seq_len: int | None = None) -> np.ndarray:
        """Bool [T]: the input positions whose targets are scored (loss and accuracy)."""
        raise NotImplementedError

    def _make(self, rng: np.random.Generator, seq_len: int) -> np.ndarray:
        raise NotImplementedError

    def batch(self, step: int, split: str = "train", seq_len: int | None = None) -> dict[str, np.ndarray]:
        """Batch of `step`: dict of [B, T] arrays. `seq_len` overrides T (length extrapolation)."""
        t = self.seq_len if seq_len is None else seq_len
        z = self._make(_rng(self.task_id, self.seed, step, split), t)
        return _finish(z, self.scored_positions(t))

    def fingerprint(self) -> str:
        desc = f"{self.name}\n{sorted(vars(self).items())}"
        return hashlib.sha256(desc.encode()).hexdigest()


class SelectiveCopying(_SyntheticTask):
    """Reproduce, after a separator, the K data tokens scattered among blanks (see module doc)."""

    task_id = 1
    name = "selective_copying"
    BLANK, SEP, FIRST_DATA = 0, 1, 2

    def __init__(self, seq_len: int = 1024, batch_size: int = 32, seed: int = 0,
                 vocab_size: int = 16, num_data_tokens: int = 16):
        super().__init__(seq_len, batch_size, seed, vocab_size)
        self.num_data_tokens = num_data_tokens
        if vocab_size <= self.FIRST_DATA:
            raise DataError(f"selective copying: vocab_size={vocab_size} leaves no data symbols")
        self._check_len(seq_len)

    def _check_len(self, t: int) -> None:
        k = self.num_data_tokens
        if k < 1 or t < 2 * k:
            raise DataError(f"selective copying: seq_len={t} must be >= 2 * num_data_tokens={2 * k}")

    def scored_positions(self, seq_len: int | None = None) -> np.ndarray:
        t = self.seq_len if seq_len is None else seq_len
        self._check_len(t)
        return np.arange(t) >= t - self.num_data_tokens

    def _make(self, rng: np.random.Generator, t: int) -> np.ndarray:
        self._check_len(t)
        b, k = self.batch_size, self.num_data_tokens
        data = rng.integers(self.FIRST_DATA, self.vocab_size, size=(b, k))
        # K distinct positions in the noise region per row: first K of a random ordering, sorted.
        where = np.sort(np.argsort(rng.random((b, t - k)), axis=1)[:, :k], axis=1)
        z = np.full((b, t + 1), self.BLANK, dtype=np.int32)
        np.put_along_axis(z, where, data, axis=1)
        z[:, t - k] = self.SEP
        z[:, t - k + 1:] = data
        return z


class InductionHeads(_SyntheticTask):
    """Recall the token that followed the trigger's first occurrence (see module doc)."""

    task_id = 2
    name = "induction_heads"
    TRIGGER = 0

    def __init__(self, seq_len: int = 256, batch_size: int = 32, seed: int = 0, vocab_size: int = 16):
        super().__init__(seq_len, batch_size, seed, vocab_size)
        if vocab_size < 2:
            raise DataError(f"induction heads: vocab_size={vocab_size} must be >= 2")
        self._check_len(seq_len)

    @staticmethod
    def _check_len(t: int) -> None:
        if t < 3:
            raise DataError(f"induction heads: seq_len={t} must be >= 3")

    def scored_positions(self, seq_len: int | None = None) -> np.ndarray:
        t = self.seq_len if seq_len is None else seq_len
        self._check_len(t)
        return np.arange(t) == t - 1

    def _make(self, rng: np.random.Generator, t: int) -> np.ndarray:
        self._check_len(t)
        b = self.batch_size
        z = rng.integers(1, self.vocab_size, size=(b, t + 1)).astype(np.int32)
        p = rng.integers(0, t - 2, size=b)  # first trigger in [0, T-3]: its answer precedes T-1
        rows = np.arange(b)
        answer = z[rows, p + 1]
        z[rows, p] = self.TRIGGER
        z[:, t - 1] = self.TRIGGER
        z[:, t] = answer
        return z


def accuracy(predictions: np.ndarray, batch: dict[str, np.ndarray]) -> dict[str, float]:
    """Accuracy on the scored positions (loss_mask > 0).

    predictions: [B, T] predicted token ids (e.g. argmax of the logits).
    Returns token_accuracy (fraction of scored targets right) and sequence_accuracy (fraction
    of rows with every scored target right; for induction heads the two are equal).
    """
    pred = np.asarray(predictions)
    mask = batch["loss_mask"] > 0
    if pred.shape != mask.shape:
        raise DataError(f"predictions shape {pred.shape} != batch shape {mask.shape}")
    if not mask.any():
        raise DataError("no scored positions in this batch")
    right = (pred == batch["targets"]) & mask
    rows = mask.any(axis=1)
    return {
        "token_accuracy": float(right.sum() / mask.sum()),
        "sequence_accuracy": float((right.sum(1) == mask.sum(1))[rows].mean()),
    }


TASKS = {"selective_copying": SelectiveCopying, "induction_heads": InductionHeads}


def make_task(name: str, **kwargs) -> _SyntheticTask:
    if name not in TASKS:
        raise DataError(f"unknown synthetic task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name](**kwargs)
