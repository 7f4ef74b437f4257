"""run_store.endpoints (a bucket's server from the libraries' own variables) and run_store.probe
(one request with a deadline before a command uses a bucket). Nothing here leaves 127.0.0.1:
the endpoints are closed local ports and the credentials fake or absent."""

from __future__ import annotations

import time

import pytest

from bucket_servers import free_port, no_cloud_env
from run_store import RunStore, StoreError
from run_store.endpoints import endpoint, storage_options
from run_store.probe import check_reachable


@pytest.mark.parametrize("protocol, env, options", [
    ("s3", {}, {}),
    ("s3", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, {"endpoint_url": "http://127.0.0.1:9"}),
    ("s3", {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://b:2"}, {"endpoint_url": "http://b:2"}),
    ("s3", {"AWS_ENDPOINT_URL": "http://a:1", "FSSPEC_S3_ENDPOINT_URL": "http://c:3"}, {"endpoint_url": "http://c:3"}),
    ("gs", {"STORAGE_EMULATOR_HOST": "127.0.0.1:9"}, {"endpoint_url": "http://127.0.0.1:9", "token": "anon"}),
    ("gs", {"STORAGE_EMULATOR_HOST": "http://h:9", "FSSPEC_GCS_TOKEN": "t.json"}, {"endpoint_url": "http://h:9"}),
    ("gs", {"STORAGE_EMULATOR_HOST": "default"}, {}),
    ("memory", {"AWS_ENDPOINT_URL": "http://a:1"}, {}),
    (None, {"STORAGE_EMULATOR_HOST": "h:1"}, {}),
])
def test_endpoints_come_from_the_documented_variables(protocol, env, options):
    assert storage_options(protocol, env) == options


def test_messages_name_the_server():
    assert endpoint("s3", {}) == "AWS S3" and endpoint("gs", {}) == "Google Cloud Storage"
    assert endpoint("s3", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}) == "http://127.0.0.1:9"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No credentials anywhere, no metadata servers; endpoints on a closed local port."""
    for key, value in no_cloud_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", closed)
    return closed


def test_no_credentials_is_one_line_at_once(offline, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    start = time.monotonic()
    with pytest.raises(StoreError, match=r"s3://bucket/r: cannot use the run store \(store\.root\).*credentials"):
        RunStore("s3://bucket/r")
    assert time.monotonic() - start < 3


def test_a_closed_endpoint_is_one_line_at_once(offline):
    start = time.monotonic()
    with pytest.raises(StoreError, match=r"\(store\.root\) at http://127\.0\.0\.1:\d+: EndpointConnectionError"):
        RunStore("s3://bucket/r")
    assert time.monotonic() - start < 4


def test_a_server_that_never_answers_meets_the_deadline():
    class Hanging:
        protocol = "slow"

        def info(self, path):
            time.sleep(30)

        def split_path(self, path):
            return path.split("/")[0], "", None

    class Backend:
        local = False
        fs = Hanging()

    start = time.monotonic()
    with pytest.raises(StoreError, match=r"slow://b/r: cannot use the run store \(store\.root\).*within 0\.3 s"):
        check_reachable(Backend(), "b/r", "slow://b/r", timeout_s=0.3)
    assert time.monotonic() - start < 2


def test_local_and_memory_roots_need_no_request(tmp_path):
    RunStore(tmp_path / "store")
    RunStore("memory://probe-test")
