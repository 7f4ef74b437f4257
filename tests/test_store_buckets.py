"""The run store on buckets, against real server software on 127.0.0.1: moto's S3 API and
gcp-storage-emulator's GCS API (tests/bucket_servers.py), one of each for the module, and a
Ray cluster on loopback whose workers inherit the servers' environment.

Against both: two drivers on one sweep (each point once; on S3 checkpoints staged through
local disk, on GCS Orbax writing gs:// itself), a killed driver whose run resumes from its
checkpoint on the bucket, griffin-figures and griffin-eval on the bucket, corrupt objects named
and skipped, metrics writes counted at the server, and the write-once creates the leases rely
on, refused by the server."""

from __future__ import annotations

import json
import os
import pathlib
import signal

import faults
import pytest

from bucket_servers import GcsServer, S3Server, apply_env, no_cloud_env
from run_store import RunStore, read_metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
from sweep_helpers import TINY, driver, ray_cluster, wait_for


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Both servers, and this process's environment pointing at them (so the Ray cluster and
    every driver started after this inherit it)."""
    tmp = tmp_path_factory.mktemp("buckets")
    s3, gcs = S3Server(), GcsServer()
    try:
        with pytest.MonkeyPatch.context() as mp:
            tests = str(REPO / "tests")
            apply_env(mp, {**no_cloud_env(tmp), **s3.env(), **gcs.env(),
                           "PYTHONPATH": os.pathsep.join([tests, str(REPO), os.environ.get("PYTHONPATH", "")])})
            yield s3, gcs
    finally:
        s3.stop()
        gcs.stop()


@pytest.fixture(scope="module")
def cluster(servers):
    yield from ray_cluster(2, str(REPO / ".cache" / "jax-tests"))  # the suite's warm compilation cache


def claims(log: pathlib.Path) -> dict[int, list[int]]:
    """Seed -> the steps its run started from, once per claim (faults' claims_log)."""
    out: dict[int, list[int]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        entry = json.loads(line)
        out.setdefault(entry["seed"], []).append(entry["start"])
    return out


def two_drivers_each_point_once(cluster, root: str, claims_log: pathlib.Path, seeds: int) -> RunStore:
    """Two drivers on one sweep of `seeds` seeds: both succeed, every run once, the manifest
    lists them all."""
    faults.write(root, claims_log=str(claims_log))
    drivers = [driver(cluster, root, "trainer.seed=" + ",".join(map(str, range(seeds)))) for _ in range(2)]
    for d in drivers:
        out, _ = d.communicate(timeout=300)
        assert d.returncode == 0, out
    store = RunStore(root)
    assert_done(store, seeds)
    assert claims(claims_log) == {seed: [0] for seed in range(seeds)}  # each point once
    assert sorted(store.read_sweep("default")["runs"]) == store.list_runs()
    return store


def assert_done(store: RunStore, runs: int, steps: int = 6) -> None:
    assert len(store.list_runs()) == runs
    for run_id in store.list_runs():
        assert store.status(run_id).state == "SUCCESS"
        assert store.read_result(run_id).steps == steps
        assert [r["step"] for r in read_metrics(store.run_dir(run_id))] == list(range(1, steps + 1))


def figures_skip_corrupt_objects(store: RunStore, root: str, tmp_path: pathlib.Path, capsys) -> None:
    """griffin-eval on the bucket's first run; then a corrupt result.json and a metrics.jsonl
    with a torn line written into the other two: griffin-figures names both files, skips what
    it cannot read, and draws the rest."""
    from analysis.cli import _default_out, figures_main
    from experiments.evaluate import main as eval_main

    first, broken, no_curve = store.list_runs()
    assert eval_main([store.run_dir(first), "--length", "32", "--docs", "2"]) == 0
    assert store.run_listing(first, "eval") == ["loss_by_position_32.json"]
    backend = store._backend
    backend.write_atomic(store._path("runs", broken, "result.json"), b"{not json")
    backend.write_atomic(store._path("runs", no_curve, "metrics.jsonl"),
                         b'{"step": 1, "loss": 5.0}\n{"step": 2, "lo\n{"step": 3, "loss": 4.0}\n')
    capsys.readouterr()
    code = figures_main([root, "--only", "training_curves", "--formats", "png", "--bootstrap", "0",
                         "--out", str(tmp_path / "figures")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert f"excluding run {broken}: CORRUPT" in err and "result.json: corrupt result file" in err
    assert f"no curve for run {no_curve}" in err and "metrics.jsonl: corrupt metrics line 2 of 3" in err
    assert "loaded 2 runs" in out and (tmp_path / "figures" / "training_curves.png").exists()
    assert _default_out(root, "default") == os.path.join("figures", "default")  # local files, not the bucket


def test_s3_two_drivers_figures_eval_and_a_corrupt_object(cluster, servers, tmp_path, capsys):
    root = "s3://bucket/two-drivers"
    store = two_drivers_each_point_once(cluster, root, tmp_path / "claims.jsonl", seeds=3)
    for run_id in store.list_runs():  # staged checkpoints: the two Orbax keeps, each marked complete
        assert store.run_listing(run_id, "ckpt") == ["4", "6"]
        assert ".complete" in store.run_listing(run_id, "ckpt", "6")
    figures_skip_corrupt_objects(store, root, tmp_path, capsys)


def test_gcs_two_drivers_figures_eval_and_a_corrupt_object(cluster, servers, tmp_path, capsys):
    root = "gs://bucket/sweep"
    store = two_drivers_each_point_once(cluster, root, tmp_path / "claims.jsonl", seeds=3)
    for run_id in store.list_runs():  # Orbax's own layout on GCS: no staging mark, its commit files
        assert store.run_listing(run_id, "ckpt") == ["4", "6"]
        assert "commit_success.txt" in store.run_listing(run_id, "ckpt", "6")
    figures_skip_corrupt_objects(store, root, tmp_path, capsys)


COMPLETE_MARK = {"s3": ".complete", "gs": "commit_success.txt"}
"""What marks a finished checkpoint: the store's staging mark on S3, Orbax's commit file on GCS."""


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_killed_driver_resumes_from_its_checkpoint_on_the_bucket(cluster, servers, tmp_path, scheme):
    root = f"{scheme}://bucket/killed"
    log = tmp_path / "claims.jsonl"
    faults.write(root, stall_after_step=3, claims_log=str(log))  # the run hangs after step 3 ...
    first = driver(cluster, root, "trainer.seed=0")
    store = RunStore(root)
    wait_for(lambda: store.list_runs() and "2" in store.run_listing(store.list_runs()[0], "ckpt")
             and COMPLETE_MARK[scheme] in store.run_listing(store.list_runs()[0], "ckpt", "2"))
    os.killpg(first.pid, signal.SIGKILL)  # ... so the driver dies with it half done
    first.wait()
    (run_id,) = store.list_runs()
    assert store.status(run_id).state == "RUNNING"
    faults.write(root, claims_log=str(log))
    second = driver(cluster, root, "trainer.seed=0")
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    assert_done(store, 1)
    assert claims(log) == {0: [0, 2]}  # resumed once, from its step-2 checkpoint on the bucket


def metrics_requests(servers, scheme: str, prefix: str) -> list[str]:
    """Methods of the requests for metrics.jsonl objects under `prefix`, in order, as the
    server saw them (uploads "PUT", reads "GET"; S3's HEADs and listings aside)."""
    s3, gcs = servers
    if scheme == "s3":
        return [r.method for r in s3.recorder.log if r.path.startswith(f"/bucket/{prefix}/")
                and r.path.endswith("/metrics.jsonl") and r.method in ("PUT", "GET")]
    return [m for m, name in gcs.requests() if name.startswith(f"bucket/{prefix}/") and name.endswith("/metrics.jsonl")]


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_metrics_reach_the_bucket_in_batches(servers, scheme):
    """griffin-train with checkpoints at steps 20 and 40 and a flush interval longer than the
    run: metrics.jsonl is written twice, at the two checkpoints, and no batch reads it back."""
    from experiments.cli import train_main

    root = f"{scheme}://bucket/batched"
    overrides = [o for o in TINY[:12] if not o.startswith(("trainer.budget.value=", "trainer.checkpoint_every="))]
    assert train_main([*overrides, "trainer.budget.value=40", "trainer.checkpoint_every=20",
                       "store.metrics_flush_s=1000", f"store.root={root}", "--quiet"]) == 0
    seen = metrics_requests(servers, scheme, "batched")
    assert seen.count("PUT") == 2, seen
    assert set(seen[seen.index("PUT"):]) == {"PUT"}, seen  # no batch reads the object back
    store = RunStore(root)
    (run_id,) = store.list_runs()
    assert [r["step"] for r in store.read_metrics(run_id)] == list(range(1, 41))


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_write_once_creates_are_refused_by_the_server(servers, scheme):
    s3, gcs = servers
    store = RunStore(f"{scheme}://bucket/creates")
    backend, path = store._backend, store._path("runs", "x", "lease.json")
    refused_before = gcs.refused() if scheme == "gs" else len(s3.recorder.requests("lease.json", "PUT"))
    assert backend.create_exclusive(path, b"first") is True
    assert backend.create_exclusive(path, b"second") is False
    assert backend.read(path) == b"first"
    if scheme == "gs":
        assert gcs.refused() == refused_before + 1  # the emulator's 412: gcsfs sent ifGenerationMatch=0
    else:
        statuses = [r.status for r in s3.recorder.requests("lease.json", "PUT")[refused_before:]]
        assert statuses == [200, 412]  # moto honours If-None-Match: *
    lease = store.acquire("hawk-cpu-30k-6st-000000000000")
    assert lease is not None and store.acquire("hawk-cpu-30k-6st-000000000000") is None
    lease.release()
