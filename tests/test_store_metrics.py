"""run_store.metrics: appends, cut-off lines, corrupt lines, truncation on resume."""

from __future__ import annotations

from pathlib import Path

import pytest

import run_store as rs
from run_store import RunStore, StoreError
from store_helpers import make_id


def test_metrics_tolerate_cut_last_line_and_reject_corrupt_middle(tmp_path):
    store = RunStore(tmp_path)
    run_id = make_id()
    assert store.read_metrics(run_id) == []
    store.append_metrics(run_id, [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)])
    path = Path(store.run_dir(run_id)) / "metrics.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"step": 4, "lo')  # a writer killed mid-line
    assert [r["step"] for r in store.read_metrics(run_id)] == [1, 2, 3]
    # The next append first drops the partial line, so it never becomes a middle line.
    store.append_metrics(run_id, [{"step": 4, "loss": 0.25}])
    assert [r["step"] for r in store.read_metrics(run_id)] == [1, 2, 3, 4]
    lines = path.read_bytes().split(b"\n")
    lines[1] = b'{"step": 2, "loss": 0.5'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreError, match=r"metrics\.jsonl: corrupt metrics line 2 of 4") as err:
        rs.read_metrics(store.run_dir(run_id))
    assert str(path) in str(err.value)
    with pytest.raises(ValueError, match="integer 'step'"):
        store.append_metrics(run_id, [{"loss": 1.0}])


def test_truncate_metrics(tmp_path):
    store = RunStore(tmp_path)
    run_id = make_id()
    store.append_metrics(run_id, [{"step": s, "loss": float(s)} for s in range(1, 11)])
    with open(Path(store.run_dir(run_id)) / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 11')
    assert rs.truncate_metrics(store.run_dir(run_id), 6) == 6
    assert [r["step"] for r in store.read_metrics(run_id)] == [1, 2, 3, 4, 5, 6]
    assert (Path(store.run_dir(run_id)) / "metrics.jsonl").read_bytes().endswith(b"\n")
    assert store.truncate_metrics(run_id, 100) == 6
