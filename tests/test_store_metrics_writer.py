"""run_store.metrics_writer: every row at once on a local folder; batches on a bucket (here an
fsspec `memory://` root), at most every flush_s and whenever forced, one write and no read each."""

from __future__ import annotations

import uuid

import pytest

import run_store as rs
from run_store import RunStore
from run_store.metrics_writer import MetricsWriter
from store_helpers import make_id


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def memory_store():
    import fsspec

    root = f"memory://writer-{uuid.uuid4().hex[:8]}"
    yield RunStore(root)
    fsspec.filesystem("memory").rm(root, recursive=True)


def rows(*steps):
    return [{"step": s, "loss": 1.0 / s} for s in steps]


def test_a_local_folder_gets_every_row_at_once(tmp_path):
    store = RunStore(tmp_path)
    run_id = make_id()
    with store.acquire(run_id) as lease:
        writer = MetricsWriter(lease, flush_s=60)
        writer.add(rows(1))
        assert [r["step"] for r in store.read_metrics(run_id)] == [1]
        writer.add(rows(2, 3))
        assert writer.writes == 2 and writer.pending == 0
        assert [r["step"] for r in store.read_metrics(run_id)] == [1, 2, 3]


def test_a_bucket_gets_batches_every_flush_s_and_when_forced(memory_store, monkeypatch):
    store, run_id, clock = memory_store, make_id(), Clock()
    lease = store.acquire(run_id)
    writer = MetricsWriter(lease, flush_s=5, clock=clock)
    assert writer.cut_back(0) == []
    reads = []
    monkeypatch.setattr(lease._backend, "read", lambda path, real=lease._backend.read: reads.append(path) or real(path))
    for step in range(1, 5):
        clock.now += 1
        writer.add(rows(step))
    assert writer.writes == 0 and store.read_metrics(run_id) == []  # 4 s: nothing written yet
    clock.now += 1
    writer.add(rows(5))  # 5 s since the last write
    assert writer.writes == 1 and [r["step"] for r in store.read_metrics(run_id)] == [1, 2, 3, 4, 5]
    writer.add(rows(6))
    writer.add(rows(7), force=True)  # an evaluation or a checkpoint
    writer.add(rows(8))
    writer.flush()  # the exit
    writer.flush()  # nothing waits: no write
    assert writer.writes == 3 and [r["step"] for r in store.read_metrics(run_id)] == list(range(1, 9))
    assert not [p for p in reads if p.endswith(rs.METRICS_FILE)]  # batches never read the object back
    lease.release()


def test_a_resume_cuts_back_and_drops_rows_after_the_checkpoint(memory_store):
    store, run_id = memory_store, make_id()
    lease = store.acquire(run_id)
    writer = MetricsWriter(lease, flush_s=0)
    writer.add(rows(1, 2, 3, 4))
    lease.release()
    lease = store.acquire(run_id)
    writer = MetricsWriter(lease, flush_s=1000)
    assert [r["step"] for r in writer.cut_back(2)] == [1, 2]
    writer.add(rows(3))
    writer.flush()
    assert [r["step"] for r in store.read_metrics(run_id)] == [1, 2, 3]
    lease.release()


def test_a_failed_write_keeps_the_rows_queued(memory_store, monkeypatch):
    store, run_id = memory_store, make_id()
    lease = store.acquire(run_id)
    writer = MetricsWriter(lease, flush_s=1000)
    writer.add(rows(1, 2))

    def unreachable(*args, **kwargs):
        raise ConnectionError("the bucket is away")

    monkeypatch.setattr(lease, "replace_metrics", unreachable)
    with pytest.raises(ConnectionError):
        writer.flush()
    assert writer.pending == 2
    monkeypatch.undo()
    writer.flush()
    assert [r["step"] for r in store.read_metrics(run_id)] == [1, 2]
    lease.release()


def test_a_lost_lease_refuses_the_batch(memory_store):
    store, run_id = memory_store, make_id()
    lease = store.acquire(run_id)
    writer = MetricsWriter(lease, flush_s=1000)
    writer.add(rows(1))
    lease.release()
    with pytest.raises(rs.LeaseLostError):
        writer.flush()


def test_negative_interval_is_refused(tmp_path):
    with RunStore(tmp_path).acquire(make_id()) as lease, pytest.raises(ValueError, match="metrics_flush_s"):
        MetricsWriter(lease, flush_s=-1)
