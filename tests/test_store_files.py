"""run_store.store, backends, jsonfiles and sweeps: a run's life on local and fsspec roots."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import run_store as rs
from run_store import RunStore, StoreError, locations
from store_helpers import make_id, valid_result


def test_full_lifecycle_leaves_no_temp_files(tmp_path):
    store = RunStore(tmp_path)
    run_id = make_id()
    store.init_run(run_id, {"model": {"width": 64}, "paths": {"out": "x"}})
    assert store.status(run_id).state == "PENDING"
    assert store.write_config(run_id, {"other": 1}) is False  # written once
    assert store.read_config(run_id) == {"model": {"width": 64}, "paths": {"out": "x"}}
    with store.acquire(run_id) as lease:
        running = lease.write_status("RUNNING")
        assert running.owner == rs.default_owner() and running.token == lease.token
        lease.heartbeat()
        lease.append_metrics([{"step": 1, "loss": 4.0}, {"step": 2, "loss": 3.5}])
        lease.write_result(valid_result(run_id))
        lease.write_status("SUCCESS")
    assert store.lease_info(run_id) is None  # released
    assert store.status(run_id).state == "SUCCESS"
    assert store.read_result(run_id).schema_version == rs.RESULT_SCHEMA_VERSION
    store.write_sweep("cpu_ladder", {"config": {"experiment": "x"}, "grid": {"seed": [0]}, "runs": [run_id]})
    assert store.read_sweep("cpu_ladder")["runs"] == [run_id]
    assert store.list_runs() == [run_id] and store.list_sweeps() == ["cpu_ladder"]
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]
    assert leftovers == []


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run_id = make_id()
    lease = store.acquire(run_id)
    lease.write_status("RUNNING")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(rs.backends.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        lease.write_status("FAILED", reason="x")
    monkeypatch.undo()
    assert store.status(run_id).state == "RUNNING"
    assert [p.name for p in Path(store.run_dir(run_id)).iterdir() if p.name.startswith(".")] == []


def test_json_sidecar_helpers(tmp_path):
    path = tmp_path / "sub" / "state.json"
    assert rs.read_json(path) is None
    rs.write_json(path, {"last_step": 3})
    assert rs.read_json(path) == {"last_step": 3}
    path.write_text("{")
    with pytest.raises(StoreError, match="state.json"):
        rs.read_json(path)


def test_memory_filesystem_round_trip():
    fsspec = pytest.importorskip("fsspec")
    root = f"memory://store-{uuid.uuid4().hex[:8]}"
    try:
        store = RunStore(root, lease_timeout_s=60)
        run_id = make_id()
        assert store.run_dir(run_id) == f"{root}/runs/{run_id}"
        store.init_run(run_id, {"model": {"width": 64}})
        assert store.read_config(run_id) == {"model": {"width": 64}}
        assert store.status(run_id).state == "PENDING"
        lease = store.acquire(run_id)
        assert lease is not None and store.acquire(run_id) is None
        lease.write_status("RUNNING")
        lease.append_metrics([{"step": 1, "loss": 2.0}])
        lease.append_metrics([{"step": 2, "loss": 1.5}, {"step": 3, "loss": 1.2}])
        assert [r["step"] for r in rs.read_metrics(store.run_dir(run_id))] == [1, 2, 3]
        assert store.truncate_metrics(run_id, 2) == 2
        lease.write_result(valid_result(run_id))
        lease.write_status("SUCCESS")
        lease.release()
        assert store.lease_info(run_id) is None
        assert store.status(run_id).state == "SUCCESS"
        assert rs.read_result(store.run_dir(run_id)).run_id == run_id
        store.write_sweep("s1", {"config": {}, "grid": {}, "runs": [run_id]})
        assert store.read_sweep("s1")["runs"] == [run_id]
        assert store.list_runs() == [run_id] and store.list_sweeps() == ["s1"]
        fs = fsspec.filesystem("memory")
        fs.pipe_file(f"{root}/runs/{run_id}/status.json", b"{oops")
        with pytest.raises(StoreError, match="status.json"):
            store.status(run_id)
    finally:
        fsspec.filesystem("memory").rm(root, recursive=True)


@pytest.mark.parametrize("location, url", [
    ("results", False), ("/abs/results", False), (Path("x"), False), ("gs://b/results", True),
    ("s3://b/r", True), ("memory://r", True), ("simplecache::s3://b/r", True)])
def test_locations_tell_paths_from_urls(location, url):
    assert locations.is_url(location) is url
    joined = locations.join(location, "runs", "a")
    assert joined.endswith("runs/a" if url else str(Path("runs") / "a"))
    assert locations.parent(joined).endswith("runs") and locations.name(joined) == "a"


def test_run_listing_and_checkpoints_are_read_only(tmp_path):
    store = RunStore(tmp_path)
    run_id = make_id()
    assert not store.is_store() and store.run_listing(run_id, "eval") == []
    assert not store.has_checkpoints(run_id)
    assert not (tmp_path / "runs").exists()  # asking created nothing
    store.init_run(run_id, {})
    (tmp_path / "runs" / run_id / "ckpt" / "7").mkdir(parents=True)
    assert store.is_store() and store.has_checkpoints(run_id)
