"""Tests of experiments.wandb_logger: mode choice without network, offline runs that sync
every step exactly once across a resume, and wandb failures that never fail the run."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections import Counter
from pathlib import Path

import pytest

from experiments import wandb_logger as wl
from run_store import wandb_mode
from experiments.wandb_logger import WandbLogger

RUN_ID = "griffin-cpu-s-20tpp-0123456789ab"
CONFIG = {"model": {"width": 64, "depth": 2}, "optim": {"lr": 0.001}, "seed": 0}
TAGS = ["griffin", "cpu-s", "20tpp", "seed=0"]
ROWS = [{"step": s, "loss": 4.0 / s, "tokens": 512 * s} for s in range(1, 11)]


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """No credentials, no netrc, every wandb file under tmp_path, offline forced."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC", "WANDB_BASE_URL",
                "WANDB_DISABLED", "WANDB_RUN_ID", "WANDB_RESUME"):
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
    return tmp_path


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
    monkeypatch.setattr(wandb_mode, "host_reachable", lambda *a, **k: False)
    assert wandb_mode.resolve_mode("auto") == "offline"
    monkeypatch.setattr(wandb_mode, "host_reachable", lambda *a, **k: True)
    assert wandb_mode.resolve_mode("auto") == "online"


def test_host_probe_returns_within_its_timeout(monkeypatch):
    def hang(*args, **kwargs):
        time.sleep(5)  # a resolver stuck longer than the timeout, then failing as a real one would
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    assert wandb_mode.host_reachable("https://example.invalid", timeout_s=0.1) is False
    assert time.monotonic() - start < 4


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


# ---------------------------------------------------------------------------------- failures


def test_wandb_failures_never_fail_the_run(wandb_env, monkeypatch):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(wandb, "init", broken_init)
    with pytest.warns(RuntimeWarning, match="backend exploded"):
        logger = WandbLogger(RUN_ID, "proj", config=CONFIG, mode="offline", dir=wandb_env / "run")
    assert not logger.enabled and "wandb.init" in logger.error
    assert logger.log_rows(ROWS) == 0
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
