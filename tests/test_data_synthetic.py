"""Synthetic tasks: formats, determinism and the accuracy helper."""

import numpy as np
import pytest

from griffin_core.data.errors import DataError
from griffin_core.data.synthetic import InductionHeads, SelectiveCopying, accuracy, make_task


def test_selective_copying_answer_is_the_data_in_order():
    task = SelectiveCopying(seq_len=64, batch_size=8, seed=1, num_data_tokens=16)
    b = task.batch(3)
    t, k = 64, 16
    assert b["tokens"].shape == (8, t)
    for row in range(8):
        z = np.append(b["tokens"][row], b["targets"][row][-1])  # the full sequence z[0..T]
        prompt = z[:t - k]
        data = prompt[prompt >= SelectiveCopying.FIRST_DATA]
        assert len(data) == k and set(prompt[prompt < 2]) <= {SelectiveCopying.BLANK}
        assert z[t - k] == SelectiveCopying.SEP
        assert z[t - k + 1:].tolist() == data.tolist()
        assert b["targets"][row][b["loss_mask"][row] > 0].tolist() == data.tolist()
    assert task.scored_positions().sum() == k and b["loss_mask"].sum() == 8 * k
    assert b["tokens"].max() < 16


def test_induction_target_is_the_token_after_the_first_trigger():
    task = InductionHeads(seq_len=32, batch_size=16, seed=2)
    b = task.batch(0)
    trig = InductionHeads.TRIGGER
    for row in range(16):
        x, y = b["tokens"][row], b["targets"][row]
        where = np.flatnonzero(x == trig)
        assert len(where) == 2 and where[1] == 31
        assert y[-1] == x[where[0] + 1] == y[where[0]]
    assert np.flatnonzero(task.scored_positions()).tolist() == [31]
    assert b["loss_mask"][:, :-1].sum() == 0 and b["loss_mask"][:, -1].all()
    longer = task.batch(0, seq_len=128)  # extrapolation length
    assert longer["tokens"].shape == (16, 128) and longer["loss_mask"][:, -1].all()


@pytest.mark.parametrize("cls", [SelectiveCopying, InductionHeads])
def test_synthetic_batches_are_deterministic_per_seed_and_step(cls):
    a, b = cls(seq_len=40, batch_size=4, seed=0), cls(seq_len=40, batch_size=4, seed=0)
    assert all(np.array_equal(a.batch(5)[k], b.batch(5)[k]) for k in a.batch(5))
    assert not np.array_equal(a.batch(5)["tokens"], a.batch(6)["tokens"])
    assert not np.array_equal(a.batch(5)["tokens"], cls(seq_len=40, batch_size=4, seed=1).batch(5)["tokens"])
    assert not np.array_equal(a.batch(5)["tokens"], a.batch(5, split="eval")["tokens"])
    assert a.fingerprint() == b.fingerprint() != cls(seq_len=41, batch_size=4).fingerprint()


def test_accuracy_scores_only_masked_positions():
    task = SelectiveCopying(seq_len=40, batch_size=4, num_data_tokens=4)
    b = task.batch(0)
    pred = b["targets"].copy()
    pred[:, :36] = 0  # unscored positions wrong: no effect
    assert accuracy(pred, b) == {"token_accuracy": 1.0, "sequence_accuracy": 1.0}
    pred[0, 39] = (pred[0, 39] + 1) % 16  # one answer token wrong
    acc = accuracy(pred, b)
    assert acc["token_accuracy"] == pytest.approx(15 / 16) and acc["sequence_accuracy"] == 0.75


def test_bad_settings_fail():
    with pytest.raises(DataError, match="seq_len=20 must be >= 2 \\* num_data_tokens=32"):
        SelectiveCopying(seq_len=20)
    with pytest.raises(DataError, match="unknown synthetic task"):
        make_task("copy")
    assert isinstance(make_task("induction_heads", seq_len=8), InductionHeads)
