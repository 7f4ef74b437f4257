"""Tests of experiments.wandb_logger: mode choice (without network, and against real local
servers that answer, stay silent or refuse), offline runs that sync every step exactly once
across a resume, the offline fallback of a failed online init, and wandb failures that never
fail the run."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from experiments import wandb_logger as wl
from run_store import wandb_mode
from experiments.wandb_logger import WandbLogger

RUN_ID = "griffin-cpu-s-20tpp-0123456789ab"
FAKE_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 characters, like a W&B API key
CONFIG = {"model": {"width": 64, "depth": 2}, "optim": {"lr": 0.001}, "seed": 0}
TAGS = ["griffin", "cpu-s", "20tpp", "seed=0"]
ROWS = [{"step": s, "loss": 4.0 / s, "tokens": 512 * s} for s in range(1, 11)]


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """No credentials, no netrc, no proxies, every wandb file under tmp_path, offline forced,
    and a fresh wandb service per test."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC", "WANDB_BASE_URL",
                "WANDB_DISABLED", "WANDB_RUN_ID", "WANDB_RESUME", "HTTP_PROXY", "HTTPS_PROXY",
                "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(home / ".cache" / "wandb"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(home / ".local" / "wandb"))
    import wandb

    wandb.teardown()  # wandb's process-wide setup keeps the environment it first saw (base URL)
    yield tmp_path
    wandb.teardown()


def online_env(monkeypatch, port: int) -> None:
    """A (fake) API key and a W&B host on 127.0.0.1:port, WANDB_MODE unset: 'auto' probes."""
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")


# -- real servers on 127.0.0.1 (a free port each), started and stopped by the test


@contextlib.contextmanager
def silent_server():
    """Accepts TCP connections and never answers. Yields (port, accepted sockets)."""
    srv, stop, accepted = socket.create_server(("127.0.0.1", 0), backlog=64), threading.Event(), []
    srv.settimeout(0.05)

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(srv.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        for conn in [*accepted, srv]:
            conn.close()


@contextlib.contextmanager
def http_server(status: int = 404, post_hangs: bool = False):
    """Answers every request (but a POST if post_hangs) with `status` and no body: talks HTTP,
    but not as W&B. Yields (port, 'METHOD path' of each request)."""
    stop, requests = threading.Event(), []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            requests.append(f"{self.command} {self.path}")
            if self.command == "POST" and post_hangs:
                return stop.wait(60)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_HEAD

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], requests
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


# -- a reader for .wandb transaction logs: a 7-byte header (":W&B", magic, version), then
# -- LevelDB-style log records in 32 KiB blocks, each payload a serialized wandb Record.

_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            break
        if kind in (_FULL, _FIRST):
            pending = payload
        else:
            pending += payload
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def complete_records(path: Path, timeout_s: float = 10.0) -> list:
    """The file's records once its exit record is there: wandb-core may still be writing
    for a few milliseconds after run.finish() returns."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(wandb_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.02)


def history_and_config(wandb_dir: Path, run_id: str):
    """(Counter of history steps, last config seen) over every offline folder of `run_id`."""
    steps: Counter = Counter()
    config: dict = {}
    files = sorted(wandb_dir.glob(f"wandb/offline-run-*/run-{run_id}.wandb"))
    for path in files:
        for record in complete_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                steps[record.history.step.num] += 1
            elif kind == "run":
                config.update({item.key: json.loads(item.value_json)
                               for item in record.run.config.update if item.key != "_wandb"})
    return files, steps, config


# ---------------------------------------------------------------------------------- modes


def test_auto_mode_without_credentials_is_offline_and_never_connects(wandb_env, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")

    def no_network(*args, **kwargs):
        raise AssertionError(f"tried to connect to {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    assert not wandb_mode.has_api_key()
    assert wandb_mode.resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode.resolve_mode("auto") == "disabled"
    assert wandb_mode.resolve_mode("offline") == "offline"
    with pytest.raises(ValueError, match="not one of"):
        wandb_mode.resolve_mode("cloud")


def test_auto_mode_with_a_netrc_key_goes_online_only_if_the_host_answers(wandb_env, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    netrc_file = Path.home() / ".netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password not-a-real-key\n")
    netrc_file.chmod(0o600)
    assert wandb_mode.has_api_key()
    monkeypatch.setattr(wandb_mode, "host_answers", lambda *a, **k: False)
    assert wandb_mode.resolve_mode("auto") == "offline"
    monkeypatch.setattr(wandb_mode, "host_answers", lambda *a, **k: True)
    assert wandb_mode.resolve_mode("auto") == "online"


def test_host_probe_returns_within_its_timeout(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(5)  # a resolver stuck longer than the timeout, then failing as a real one would
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    assert wandb_mode.host_answers("https://example.invalid", timeout_s=0.1) is False
    assert time.monotonic() - start < 4


def test_a_host_that_accepts_but_never_answers_is_offline_within_the_deadline(wandb_env, monkeypatch):
    with silent_server() as (port, accepted):
        online_env(monkeypatch, port)
        start = time.monotonic()
        assert wandb_mode.resolve_mode("auto") == "offline"
        elapsed = time.monotonic() - start
        assert accepted, "the probe never connected"
        assert 1.5 < elapsed < 2.5, elapsed  # waited for an answer, not a moment longer
        start = time.monotonic()
        assert wandb_mode.host_answers(f"http://127.0.0.1:{port}", timeout_s=0.3) is False
        assert time.monotonic() - start < 0.8


@pytest.mark.parametrize("status", [200, 401, 404])
def test_a_host_that_answers_http_with_any_status_answers(wandb_env, monkeypatch, status):
    with http_server(status) as (port, requests):
        start = time.monotonic()
        assert wandb_mode.host_answers(f"http://127.0.0.1:{port}/wandb") is True
        assert time.monotonic() - start < 1.5
        assert requests == ["HEAD /wandb"]
        online_env(monkeypatch, port)
        assert wandb_mode.resolve_mode("auto") == "online"


def test_a_closed_port_is_offline_at_once(wandb_env, monkeypatch):
    online_env(monkeypatch, closed_port())
    start = time.monotonic()
    assert wandb_mode.resolve_mode("auto") == "offline"
    assert time.monotonic() - start < 1.0
    assert wandb_mode.host_answers("ftp://127.0.0.1/") is False  # not HTTP: never probed


def test_disabled_mode_writes_nothing(wandb_env):
    run_dir = wandb_env / "run"
    logger = WandbLogger(RUN_ID, "proj", config=CONFIG, mode="disabled", dir=run_dir)
    assert not logger.enabled and logger.log_rows(ROWS) == 0
    logger.finish({"status": "SUCCESS"})
    assert not run_dir.exists() and not (wandb_env / "wandb_dir").exists()


# ---------------------------------------------------------------------------------- offline


def test_offline_run_logs_every_step_once_across_a_resume(wandb_env, monkeypatch):
    run_dir = wandb_env / "run"
    start = time.monotonic()
    first = WandbLogger(RUN_ID, "proj", group="sweep", tags=TAGS, config=CONFIG, mode="auto", dir=run_dir)
    assert time.monotonic() - start < 60  # returned; the bound only guards against a hang
    assert first.mode == "offline" and first.enabled, first.error
    assert first.log_rows(ROWS[:5]) == 5
    assert first.log_rows(ROWS[:5]) == 0  # already there
    first.finish({"final_train_loss": 0.8, "status": "SUCCESS"})
    state = json.loads((run_dir / wl.STATE_FILE).read_text())
    assert state["run_id"] == RUN_ID and state["last_step"] == 5 and "key" not in json.dumps(state).lower()

    # A rerun of the same run id (e.g. after preemption): the store replays all rows. This
    # time a key is set (WANDB_MODE=offline still rules): it must not land in any file.
    sentinel = "sentinelkey" + "7" * 29
    monkeypatch.setenv("WANDB_API_KEY", sentinel)
    second = WandbLogger(RUN_ID, "proj", group="sweep", tags=TAGS, config=CONFIG, mode="auto", dir=run_dir)
    assert second.enabled and second.last_step == 5
    assert second.log_rows(ROWS) == 5
    second.finish({"final_train_loss": 0.4, "status": "SUCCESS"})
    assert second.error is None

    files, steps, config = history_and_config(run_dir, RUN_ID)
    assert len(files) == 2  # one offline folder per process run; `wandb sync` takes both
    assert steps == Counter({s: 1 for s in range(1, 11)})
    assert config == CONFIG
    leaked = [p for p in wandb_env.rglob("*") if p.is_file() and sentinel.encode() in p.read_bytes()]
    assert leaked == []


def test_logger_facing_a_silent_host_runs_offline_and_keeps_its_folder(wandb_env, monkeypatch):
    run_dir = wandb_env / "run"
    with silent_server() as (port, accepted):
        online_env(monkeypatch, port)
        start = time.monotonic()
        logger = WandbLogger(RUN_ID, "proj", group="sweep", tags=TAGS, config=CONFIG, mode="auto", dir=run_dir)
        assert logger.mode == "offline" and logger.enabled, logger.error
        assert logger.log_rows(ROWS) == 10
        logger.finish({"status": "SUCCESS"})
        elapsed = time.monotonic() - start
    assert accepted and logger.error is None
    assert elapsed < 20, elapsed  # was ~60 s in wandb.init, then no folder at all
    files, steps, _ = history_and_config(run_dir, RUN_ID)
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1 and len(files) == 1
    assert steps == Counter({s: 1 for s in range(1, 11)})


@pytest.mark.parametrize("post_hangs", [False, True], ids=["init-fails", "init-times-out"])
def test_a_failed_online_init_falls_back_to_offline_in_the_same_folder(wandb_env, monkeypatch, post_hangs):
    """The host answers the probe (HTTP 404) but is no W&B server: wandb.init's API calls get
    404s, or no answer at all, until init_timeout_s."""
    run_dir = wandb_env / "run"
    with http_server(404, post_hangs=post_hangs) as (port, requests):
        online_env(monkeypatch, port)
        start = time.monotonic()
        with pytest.warns(RuntimeWarning, match="online init .* failed .* logging offline") as caught:
            logger = WandbLogger(RUN_ID, "proj", config=CONFIG, mode="auto", dir=run_dir, init_timeout_s=3)
        elapsed = time.monotonic() - start
        assert any(r.startswith("POST") for r in requests)  # wandb did try online
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert logger.mode == "offline" and logger.enabled, logger.error
    assert elapsed < 25, elapsed
    assert logger.log_rows(ROWS) == 10
    logger.finish({"status": "SUCCESS"})
    assert logger.error is None
    assert json.loads((run_dir / wl.STATE_FILE).read_text())["mode"] == "offline"
    files, steps, config = history_and_config(run_dir, RUN_ID)
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1 and len(files) == 1
    assert steps == Counter({s: 1 for s in range(1, 11)}) and config == CONFIG


# ---------------------------------------------------------------------------------- failures


def test_wandb_failures_never_fail_the_run(wandb_env, monkeypatch):
    import wandb

    def broken_init(*args, settings, **kwargs):
        raise RuntimeError(f"backend exploded ({settings.mode})")

    monkeypatch.setattr(wandb, "init", broken_init)
    with pytest.warns(RuntimeWarning, match="backend exploded"):
        logger = WandbLogger(RUN_ID, "proj", config=CONFIG, mode="offline", dir=wandb_env / "run")
    assert not logger.enabled and "wandb.init" in logger.error
    assert logger.log_rows(ROWS) == 0
    logger.finish({"status": "SUCCESS"})
    # Online: the offline fallback fails too. One warning with both errors, logging off.
    with pytest.warns(RuntimeWarning, match=r"online: .*\(online\); offline: .*\(offline\)") as caught:
        logger = WandbLogger(RUN_ID, "proj", config=CONFIG, mode="online", dir=wandb_env / "run1")
    assert len(caught) == 1 and not logger.enabled and logger.log_rows(ROWS) == 0
    logger.finish({"status": "SUCCESS"})

    class FlakyRun:
        starting_step = 0
        summary: dict = {}

        def __init__(self):
            self.calls = 0

        def log(self, data, step=None):
            self.calls += 1
            if step == 3:
                raise ConnectionError("lost the service")

        def finish(self, exit_code=0):
            raise AssertionError("finish must not be called after a failure")

    run = FlakyRun()
    monkeypatch.setattr(wandb, "init", lambda *a, **k: run)
    with pytest.warns(RuntimeWarning, match="lost the service") as caught:
        logger = WandbLogger(RUN_ID, "proj", config=CONFIG, mode="offline", dir=wandb_env / "run2")
        assert logger.log_rows(ROWS) == 2
        assert logger.log_rows(ROWS) == 0
        logger.finish({"status": "SUCCESS"})
    assert len(caught) == 1 and run.calls == 3 and not logger.enabled
    assert json.loads((wandb_env / "run2" / wl.STATE_FILE).read_text())["last_step"] == 2
