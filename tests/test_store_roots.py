"""Which roots a run store takes (run_store.locations.store_root, the one place that tells a
local path from a URL): local folders, file:// as a local folder, s3:// and gs:// with a
bucket, memory:// for tests; everything else is one StoreError naming the root and store.root,
at once, before any client is made or any request sent."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from run_store import RunStore, StoreError
from run_store.backends import LOCAL, resolve
from run_store.checkpoints import CheckpointFolder
from run_store.locations import store_root


@pytest.mark.parametrize("given, root", [
    ("results", "results"), ("/abs/results", "/abs/results"), ("./s3:/b/x", "./s3:/b/x"), ("runs:v2", "runs:v2"),
    (Path("s3:/x"), "s3:/x"), ("file:///tmp/a%20b/store", "/tmp/a b/store"), ("s3://bucket/x", "s3://bucket/x"),
    ("s3a://bucket", "s3a://bucket"), ("gs://bucket/x", "gs://bucket/x"), ("memory://x", "memory://x")])
def test_supported_roots(given, root):
    assert store_root(given) == root


@pytest.mark.parametrize("given, message", [
    ("", r"store\.root is empty: give a local folder"),
    ("  ", r"store\.root is empty"),
    ("foo://x/y", r"foo://x/y: the run store does not support foo:// URLs \(store\.root\); give a local folder"),
    ("http://127.0.0.1:1/x", r"does not support http:// URLs \(store\.root\)"),
    ("S3://bucket/x", r"does not support S3:// URLs"),
    ("s3://", r"s3://: no bucket in the URL \(store\.root\): write s3://BUCKET/path"),
    ("gs:///x", r"gs:///x: no bucket in the URL"),
    ("s3:/bucket/x", r"s3:/bucket/x: a URL with a slash missing \(store\.root\): write s3://bucket/x"),
    ("gs:bucket", r"write gs://bucket"),
    ("s3:", r"write s3://BUCKET/path"),
    ("foo:/x", r"a URL with a slash missing"),
    ("file://relative/x", r"a file:// URL must name an absolute folder \(store\.root\)"),
    ("file:///", r"must name an absolute folder"),
    ("simplecache::s3://b/x", r"a chained URL is not a run store root \(store\.root\)")])
def test_refused_roots_are_one_line_naming_store_root(given, message):
    with pytest.raises(StoreError, match=message) as err:
        RunStore(given)
    assert "\n" not in str(err.value)


def test_the_backend_refuses_other_schemes_with_a_store_error():
    """Not fsspec's "Protocol not known" (a ValueError with a traceback) or aiohttp's errors."""
    with pytest.raises(StoreError, match=r"foo:// URLs"):
        resolve("foo://x/status.json")
    with pytest.raises(StoreError, match=r"http:// URLs"):
        resolve("http://127.0.0.1:1/x/status.json")


def test_a_file_url_is_a_local_store(tmp_path):
    """file:///abs is the folder /abs: Orbax writes its checkpoints there itself (it was taken for
    a URL, staged, and failed: 'LocalBackend' object has no attribute 'fs')."""
    store = RunStore(f"file://{tmp_path}/store")
    assert store.root == f"{tmp_path}/store"
    run_id = "hawk-cpu-30k-4st-000000000000"
    store.init_run(run_id, {"family": {"name": "hawk"}})
    assert (tmp_path / "store" / "runs" / run_id / "status.json").is_file()
    with CheckpointFolder(store.ckpt_dir(run_id)) as ckpt:
        assert not ckpt.staged and ckpt.path == str(tmp_path / "store" / "runs" / run_id / "ckpt")
        assert ckpt.pull() is None and ckpt.push() == []
    backend, path = resolve(f"file://{tmp_path}/store/x.json")
    assert backend is LOCAL and path == f"{tmp_path}/store/x.json"


def test_a_bucket_url_without_a_bucket_is_refused_before_any_request(monkeypatch):
    """s3:// skipped the reachability probe (it asks the bucket) and then retried for 11 s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    for root in ("s3://", "s3:///results", "gs://"):
        with pytest.raises(StoreError, match="no bucket"):
            RunStore(root)
    assert time.monotonic() - start < 1.0
