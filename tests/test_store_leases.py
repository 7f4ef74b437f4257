"""run_store.lease and run_store.acquire: exclusive claims, take-over of stale leases, and
writes refused to an owner that lost its lease."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from run_store import LeaseLostError, RunStore
from store_helpers import age_lease, make_id, valid_result

REPO = Path(__file__).resolve().parents[1]


_RACER = textwrap.dedent("""
    import json, os, sys, time
    from run_store import RunStore
    root, go = sys.argv[1], sys.argv[2]
    store = RunStore(root)
    deadline = time.time() + 60
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.002)
    won = {}
    for run_id in sys.argv[3:]:
        won[run_id] = store.acquire(run_id, timeout_s=30) is not None
    heavy = sorted(m for m in ("jax", "ray", "wandb") if m in sys.modules)
    print(json.dumps({"won": won, "heavy": heavy}))
""")


def test_processes_racing_for_a_lease_exactly_one_wins(tmp_path):
    store = RunStore(tmp_path / "store")
    fresh, stale = make_id(), make_id(budget="1e15F")
    # `stale` already has a lease whose owner stopped heartbeating long ago.
    store.acquire(stale)
    lease_file = Path(store.run_dir(stale)) / "lease.json"
    old = json.loads(lease_file.read_text())
    age_lease(lease_file, 1000)

    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(store.root), str(go), fresh, stale],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(4)]
    time.sleep(0.5)  # let them import and reach the start line
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert sum(o["won"][fresh] for o in outs) == 1
    assert sum(o["won"][stale] for o in outs) == 1
    # The store is for light processes: importing it pulls in no JAX, Ray or wandb.
    assert [o["heavy"] for o in outs] == [[]] * len(outs)
    assert store.lease_info(stale)["token"] != old["token"]


def test_stale_lease_is_taken_over_and_the_old_owner_cannot_write(tmp_path):
    store = RunStore(tmp_path, lease_timeout_s=0.3)
    run_id = make_id()
    first = store.acquire(run_id, owner="hostA:1")
    first.write_status("RUNNING")
    assert store.acquire(run_id, owner="hostB:2") is None  # fresh: not taken
    time.sleep(0.4)
    assert store.status(run_id).is_stale(timeout_s=0.3)
    second = store.acquire(run_id, owner="hostB:2")
    assert second is not None and second.token != first.token
    aside = [p.name for p in Path(store.run_dir(run_id)).iterdir() if p.name.startswith("lease.json.stale-")]
    assert len(aside) == 1  # the stale lease was moved aside, not overwritten
    for write in (lambda: first.write_status("SUCCESS"),
                  lambda: first.write_result(valid_result(run_id)),
                  first.heartbeat):
        with pytest.raises(LeaseLostError, match="hostA:1.*now: hostB:2"):
            write()
    assert first.lost
    with pytest.raises(LeaseLostError):
        first.append_metrics([{"step": 1}])
    first.release()  # not ours any more: must leave hostB's lease alone
    assert store.lease_info(run_id)["token"] == second.token
    second.write_status("RUNNING")
    assert store.status(run_id).owner == "hostB:2"


def test_take_over_needs_the_claim_and_a_dead_claimant_is_skipped(tmp_path):
    store = RunStore(tmp_path, lease_timeout_s=0.2)
    run_id = make_id()
    first = store.acquire(run_id, owner="hostA:1")
    lease_file = Path(store.run_dir(run_id)) / "lease.json"
    age_lease(lease_file, 10)
    claim = lease_file.parent / f"lease.json.takeover-{first.token}.0"
    claim.write_text(json.dumps({"owner": "hostB:2", "time": time.time()}))  # B is taking over
    assert store.acquire(run_id, owner="hostC:3") is None
    claim.write_text(json.dumps({"owner": "hostB:2", "time": time.time() - 10}))  # B died doing it
    third = store.acquire(run_id, owner="hostC:3")
    assert third is not None
    assert sorted(p.name for p in lease_file.parent.glob("lease.json.takeover-*")) == [claim.name]
    with pytest.raises(LeaseLostError):
        first.heartbeat()  # the old owner wakes up: refused, and the new lease is untouched
    assert store.lease_info(run_id)["token"] == third.token


def test_heartbeat_thread_keeps_the_lease(tmp_path):
    store = RunStore(tmp_path, heartbeat_interval_s=0.05, lease_timeout_s=0.3)
    run_id = make_id()
    lease = store.acquire(run_id)
    lease.start_heartbeat()
    lease.write_status("RUNNING")
    time.sleep(0.5)
    assert store.acquire(run_id) is None
    assert not store.status(run_id).is_stale(timeout_s=0.3)
    lease.release()
    assert store.acquire(run_id) is not None  # released: free at once


def test_corrupt_lease_is_judged_by_its_age(tmp_path):
    store = RunStore(tmp_path, lease_timeout_s=0.2)
    run_id = make_id()
    lease_file = Path(store.run_dir(run_id)) / "lease.json"
    lease_file.parent.mkdir(parents=True)
    lease_file.write_text("")  # e.g. an O_EXCL create caught mid-write
    assert store.acquire(run_id) is None
    time.sleep(0.3)
    assert store.acquire(run_id) is not None
