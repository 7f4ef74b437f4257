"""run_store.status: the rules of status writes and corrupt status files."""

from __future__ import annotations

from pathlib import Path

import pytest

import run_store as rs
from run_store import RunStore, StoreError
from store_helpers import make_id


def test_status_rules(tmp_path):
    store = RunStore(tmp_path)
    run_id = make_id()
    lease = store.acquire(run_id)
    with pytest.raises(ValueError, match="reason"):
        lease.write_status("FAILED")
    with pytest.raises(ValueError, match="step"):
        lease.write_status("DIVERGED", reason="loss is NaN")
    with pytest.raises(ValueError, match="not one of"):
        lease.write_status("DONE")
    status = lease.write_status("DIVERGED", step=120, reason="loss is NaN")
    assert (status.state, status.step, status.reason) == ("DIVERGED", 120, "loss is NaN")
    assert store.status(run_id) == status


def test_corrupt_status_and_result_raise_store_error_naming_the_file(tmp_path):
    store = RunStore(tmp_path)
    run_id = make_id()
    run_dir = Path(store.run_dir(run_id))
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text('{"state": "RUNN')
    with pytest.raises(StoreError, match="status.json") as err:
        store.status(run_id)
    assert "\n" not in str(err.value) and str(run_dir) in str(err.value)
    (run_dir / "status.json").write_text('{"state": "WEIRD"}')
    with pytest.raises(StoreError, match="status.json"):
        store.status(run_id)
    (run_dir / "result.json").write_text("[1, 2")
    with pytest.raises(StoreError, match="result.json") as err:
        rs.read_result(run_dir)
    assert "\n" not in str(err.value)


def test_known_fields_of_the_wrong_type_are_corrupt(tmp_path):
    store = RunStore(tmp_path)
    run_id = make_id()
    run_dir = Path(store.run_dir(run_id))
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text('{"state": "RUNNING", "heartbeat": "soon"}')
    with pytest.raises(StoreError, match=r"status.json: corrupt status file \(heartbeat='soon' is not int or float\)"):
        store.status(run_id)
    (run_dir / "status.json").write_text('{"state": "DIVERGED", "step": 1.5, "reason": "x"}')
    with pytest.raises(StoreError, match="step=1.5 is not int"):
        store.status(run_id)
    (run_dir / "status.json").write_text('[]')
    with pytest.raises(StoreError, match="a mapping was expected, got list"):
        store.status(run_id)
