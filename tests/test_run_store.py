"""Tests of griffin_core.run_store: ids, atomic files, metrics, results, leases, fsspec roots."""

from __future__ import annotations

import decimal
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from griffin_core import run_store as rs
from griffin_core.run_store import LeaseLostError, RunStore, StoreError

REPO = Path(__file__).resolve().parents[1]

SEMANTIC = {
    "model": {"width": 64, "depth": 2, "block_pattern": ("recurrent", "recurrent", "local_attention")},
    "optim": {"lr": 1e-3, "warmup": 100, "betas": (0.9, 0.95)},
    "data": {"seq_len": 128, "batch": 8},
    "budget": {"tokens": 1_000_000},
    "seed": 0,
}


def make_id(semantic=SEMANTIC, **kw):
    args = dict(family="griffin", size="cpu-s", budget="20tpp", semantic=semantic,
                corpus_fingerprint="abc123")
    args.update(kw)
    return rs.compute_run_id(**args)


def valid_result(run_id: str, **over) -> dict:
    result = {
        "family": "griffin", "size": "cpu-s", "seed": 0, "params_total": 1000,
        "params_non_embedding": 800, "tokens": 20000, "epochs": 0.5,
        "flops": {"6ND": 1.2e8, "exact": 1.4e8}, "final_train_loss": 3.2,
        "heldout_loss_nats": 3.3, "heldout_bits_per_byte": 1.2,
        "heldout_loss_by_position": [4.0, 3.5, 3.1], "wall_time_s": 12.5, "tokens_per_s": 1600.0,
        "mfu": 0.21, "versions": {"jax": "0.10"}, "git_sha": None, "corpus_fingerprint": "abc123",
        "run_id": run_id, "status": "SUCCESS",
    }
    result.update(over)
    return result


# ---------------------------------------------------------------------------------- ids


def test_run_id_is_stable_and_content_addressed():
    run_id = make_id()
    assert run_id.startswith("griffin-cpu-s-20tpp-")
    assert len(run_id.rsplit("-", 1)[1]) == rs.HASH_LENGTH
    # Same content, other spellings: key order, tuples vs lists, 1e-3 vs 0.001, 1 vs 1.0.
    respelled = {
        "seed": 0.0,
        "budget": {"tokens": 1e6},
        "data": {"batch": 8, "seq_len": 128},
        "optim": {"betas": [0.9, 0.95], "warmup": 100.0, "lr": decimal.Decimal("0.001")},
        "model": {"block_pattern": ["recurrent", "recurrent", "local_attention"], "depth": 2, "width": 64},
    }
    assert make_id(respelled) == run_id
    assert make_id(dict(SEMANTIC)) == run_id


def test_paths_and_logging_do_not_change_the_id():
    # The caller hashes only the semantic part of its full config.
    def full(**non_semantic):
        return {**SEMANTIC, "paths": {"root": "/somewhere"}, "logger": {"wandb": "online"}, **non_semantic}

    def semantic_part(cfg):
        return {k: cfg[k] for k in ("model", "optim", "data", "budget", "seed")}

    a = full()
    b = full(paths={"root": "/elsewhere", "ckpt": "gs://bucket"}, logger={"wandb": "offline"},
             launcher={"num_cpus": 4})
    assert make_id(semantic_part(a)) == make_id(semantic_part(b))


@pytest.mark.parametrize("change", [
    lambda s: s["model"].update(width=128),
    lambda s: s["optim"].update(lr=2e-3),
    lambda s: s.update(seed=1),
    lambda s: s["data"].update(seq_len=256),
    lambda s: s["budget"].update(tokens=2_000_000),
    lambda s: s["model"].update(extra=None),
])
def test_any_semantic_change_changes_the_id(change):
    changed = json.loads(json.dumps(SEMANTIC))
    change(changed)
    assert make_id(changed) != make_id()


def test_labels_corpus_and_numerics_version_enter_the_id():
    base = make_id()
    assert make_id(corpus_fingerprint="other") != base
    assert make_id(numerics_version="999") != base
    assert make_id(budget="1e15F") != base
    assert make_id(family="hawk").split("-", 1)[1] != base.split("-", 1)[1]
    with pytest.raises(ValueError, match="size label"):
        make_id(size="a/b")


def test_canonical_json():
    assert rs.canonical_json({"b": 1e-3, "a": (1, 2.0)}) == '{"a":[1,2],"b":0.001}'
    special = {"x": -0.0, "y": float("nan"), "z": float("inf")}
    assert rs.canonical_json(special) == '{"x":0,"y":"NaN","z":"Infinity"}'
    assert rs.canonical_json(0.1 + 0.2) == "0.30000000000000004"  # floats are never rounded
    with pytest.raises(TypeError, match="config.a"):
        rs.canonical_json({"a": {1: 2}})
    with pytest.raises(TypeError, match="cannot canonicalise"):
        rs.canonical_json({"a": object()})


# ---------------------------------------------------------------------------------- files


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
    assert store.read_result(run_id)["schema_version"] == rs.RESULT_SCHEMA_VERSION
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

    monkeypatch.setattr(rs.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        lease.write_status("FAILED", reason="x")
    monkeypatch.undo()
    assert store.status(run_id).state == "RUNNING"
    assert [p.name for p in Path(store.run_dir(run_id)).iterdir() if p.name.startswith(".")] == []


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


def test_result_validator(tmp_path):
    run_id = make_id()
    ok = {"schema_version": rs.RESULT_SCHEMA_VERSION, **valid_result(run_id)}
    assert rs.validate_result(ok) == ok
    missing = dict(ok)
    del missing["heldout_bits_per_byte"], missing["mfu"]
    with pytest.raises(StoreError, match=r"missing fields \['heldout_bits_per_byte', 'mfu'\]"):
        rs.validate_result(missing)
    with pytest.raises(StoreError, match="newer"):
        rs.validate_result({**ok, "schema_version": rs.RESULT_SCHEMA_VERSION + 1})
    with pytest.raises(StoreError, match="params_total"):
        rs.validate_result({**ok, "params_total": "1000"})
    with pytest.raises(StoreError, match="flops values"):
        rs.validate_result({**ok, "flops": {"6ND": "big"}})
    # A newer file on disk is refused by the reader, naming the file.
    run_dir = tmp_path / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps({**ok, "schema_version": 99}))
    with pytest.raises(StoreError, match=r"result\.json.*newer"):
        rs.read_result(run_dir)
    # write_result validates before writing.
    lease = RunStore(tmp_path).acquire(run_id)
    with pytest.raises(StoreError, match="missing"):
        lease.write_result({"family": "griffin"})


# ---------------------------------------------------------------------------------- metrics


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


# ---------------------------------------------------------------------------------- leases

def age_lease(lease_file: Path, seconds: float) -> None:
    """Make a lease look `seconds` old: its recorded heartbeat and its mtime (local roots
    heartbeat by touching the file)."""
    then = time.time() - seconds
    lease_file.write_text(json.dumps({**json.loads(lease_file.read_text()), "heartbeat": then}))
    os.utime(lease_file, (then, then))


_RACER = textwrap.dedent("""
    import json, os, sys, time
    from griffin_core.run_store import RunStore
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


def test_json_sidecar_helpers(tmp_path):
    path = tmp_path / "sub" / "state.json"
    assert rs.read_json(path) is None
    rs.write_json(path, {"last_step": 3})
    assert rs.read_json(path) == {"last_step": 3}
    path.write_text("{")
    with pytest.raises(StoreError, match="state.json"):
        rs.read_json(path)


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


# ---------------------------------------------------------------------------------- fsspec


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
        assert rs.read_result(store.run_dir(run_id))["run_id"] == run_id
        store.write_sweep("s1", {"config": {}, "grid": {}, "runs": [run_id]})
        assert store.read_sweep("s1")["runs"] == [run_id]
        assert store.list_runs() == [run_id] and store.list_sweeps() == ["s1"]
        fs = fsspec.filesystem("memory")
        fs.pipe_file(f"{root}/runs/{run_id}/status.json", b"{oops")
        with pytest.raises(StoreError, match="status.json"):
            store.status(run_id)
    finally:
        fsspec.filesystem("memory").rm(root, recursive=True)
