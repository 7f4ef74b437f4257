"""The run store: one folder per run, addressed by content, and sweep manifests.

Layout (the contract between `experiments/`, `launch/` and `analysis/`)::

    <root>/runs/<family>-<size>-<budget>-<hash>/
        config.yaml      resolved config, written once
        status.json      PENDING | RUNNING | SUCCESS | FAILED | DIVERGED (run_store.status)
        lease.json       who runs it now: owner, token, heartbeat (run_store.lease)
        metrics.jsonl    one JSON object per line, each with an int "step" (run_store.metrics)
        result.json      final figures, typed and versioned (run_store.results)
        ckpt/            Orbax checkpoints (written by the trainer, not by this package)
    <root>/sweeps/<name>.json   a sweep: its config, its grid and its run ids (run_store.sweeps)

The root is a local folder or an fsspec URL (run_store.backends); a bucket is asked once, when
the store is made, whether it answers (run_store.probe). Every write is atomic;
nothing is loaded with pickle; this package imports neither JAX nor Ray, so the sweep driver
and analysis use it in light processes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Mapping

import yaml

from run_store import acquire as acquire_lease
from run_store import metrics as metrics_file
from run_store import sweeps
from run_store.backends import resolve
from run_store.errors import StoreError
from run_store.ids import LABEL_RE, check_run_id
from run_store.jsonfiles import dumps, plain, read_json_at, read_mapping_at
from run_store.lease import Lease, read_lease
from run_store.locations import (CKPT_DIR, CONFIG_FILE, LEASE_FILE, MEASUREMENTS_DIR, METRICS_FILE, RESULT_FILE,
                                 RUNS_DIR, STATUS_FILE, SWEEPS_DIR, join, store_root)
from run_store.probe import check_reachable
from run_store.results import RunResult, parse_result
from run_store.status import DEFAULT_HEARTBEAT_INTERVAL_S, DEFAULT_LEASE_TIMEOUT_S, Status, status_from_dict


class RunStore:
    """A run store rooted at a local folder or an fsspec URL (see the module doc)."""

    def __init__(self, root: str | os.PathLike, *,
                 heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
                 lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S):
        self.root = store_root(root)  # checked, and file:// made a local path
        self.heartbeat_interval_s = float(heartbeat_interval_s)
        self.lease_timeout_s = float(lease_timeout_s)
        self._backend, self._root_path = resolve(self.root)
        if self._backend.local and os.path.exists(self._root_path) and not os.path.isdir(self._root_path):
            raise StoreError(f"{self.root}: the run store root is a file, not a folder")
        check_reachable(self._backend, self._root_path, self.root)

    def __repr__(self) -> str:
        return f"RunStore({self.root!r})"

    # -- paths
    def _path(self, *parts: str) -> str:
        return self._backend.join(self._root_path, *parts)

    def _run_path(self, run_id: str, *parts: str) -> str:
        return self._path(RUNS_DIR, check_run_id(run_id), *parts)

    def run_dir(self, run_id: str) -> str:
        """The run's folder as a path or URL of the same kind as the root."""
        return join(self.root, RUNS_DIR, check_run_id(run_id))

    def run_file(self, run_id: str, name: str) -> str:
        """A file of the run's folder (path or URL), e.g. run_file(id, STATUS_FILE)."""
        return join(self.run_dir(run_id), name)

    def ckpt_dir(self, run_id: str) -> str:
        """Where the trainer keeps Orbax checkpoints for this run."""
        return self.run_file(run_id, CKPT_DIR)

    def sweep_path(self, name: str) -> str:
        return join(self.root, SWEEPS_DIR, sweeps.manifest_name(name))

    # -- runs
    def list_runs(self) -> list[str]:
        """Ids of every run folder, sorted."""
        return [name for name in self._backend.listdir(self._path(RUNS_DIR)) if LABEL_RE.match(name)]

    def exists(self, run_id: str) -> bool:
        return self._backend.exists(self._run_path(run_id))

    def run_listing(self, run_id: str, *parts: str) -> list[str]:
        """Names in a folder of the run (e.g. run_listing(id, "eval")), sorted; [] if absent."""
        return self._backend.listdir(self._run_path(run_id, *parts))

    def is_store(self) -> bool:
        """True if the root holds runs or measurements (a folder a command may read as a store)."""
        return any(self._backend.isdir(self._path(d)) for d in (RUNS_DIR, MEASUREMENTS_DIR))

    def has_checkpoints(self, run_id: str) -> bool:
        """True if the run's ckpt/ folder exists and holds anything (read-only check)."""
        path = self._run_path(run_id, CKPT_DIR)
        return self._backend.isdir(path) and bool(self._backend.listdir(path))

    def write_config(self, run_id: str, config: Mapping[str, Any]) -> bool:
        """Write config.yaml once. Returns False (and leaves the file) if it already exists:
        the id fixes the semantic config, and the first writer's full config is kept."""
        data = yaml.safe_dump(plain(config), sort_keys=False, default_flow_style=False,
                              allow_unicode=True).encode("utf-8")
        return self._backend.create_exclusive(self._run_path(run_id, CONFIG_FILE), data)

    def read_config(self, run_id: str) -> dict | None:
        return read_mapping_at(self._backend, self._run_path(run_id, CONFIG_FILE), "config file",
                               yaml.safe_load, (yaml.YAMLError,))

    def init_run(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Register a run: its folder, config.yaml and a PENDING status, where absent."""
        self._backend.makedirs(self._run_path(run_id))
        self.write_config(run_id, config)
        self._backend.create_exclusive(self._run_path(run_id, STATUS_FILE), dumps(
            {"state": "PENDING", "run_id": run_id, "updated": time.time()}))

    def status(self, run_id: str) -> Status:
        """The run's Status; PENDING if it has no status.json. For RUNNING, the heartbeat is
        the lease's when the lease belongs to the status's writer."""
        path = self._run_path(run_id, STATUS_FILE)
        data = read_json_at(self._backend, path, "status file")
        if data is None:
            return Status(state="PENDING", run_id=run_id)
        status = status_from_dict(run_id, data, path)
        if status.state == "RUNNING":
            lease = self.lease_info(run_id)
            if lease and lease.get("token") == status.token:
                beat = max(lease["heartbeat"], status.heartbeat or 0.0)
                status = dataclasses.replace(status, heartbeat=beat)
        return status

    def lease_info(self, run_id: str) -> dict | None:
        """The current lease file's content ({owner, token, heartbeat, ...}) or None."""
        return read_lease(self._backend, self._run_path(run_id, LEASE_FILE))

    def acquire(self, run_id: str, owner: str | None = None, timeout_s: float | None = None) -> Lease | None:
        """Claim the run's lease (run_store.acquire); None if a live owner holds it. A lease
        whose heartbeat is older than `timeout_s` (default: the store's lease_timeout_s) is
        taken over."""
        timeout = self.lease_timeout_s if timeout_s is None else float(timeout_s)
        return acquire_lease.acquire(self._backend, self._run_path(run_id), run_id, owner, timeout,
                                     self.heartbeat_interval_s)

    # -- metrics and results
    def append_metrics(self, run_id: str, rows, fsync: bool = False) -> int:
        """Append rows (each with an int 'step') to metrics.jsonl. Unguarded: the trainer
        uses `Lease.append_metrics`. Returns the number of rows written."""
        return metrics_file.append_at(self._backend, self._run_path(run_id, METRICS_FILE), rows, fsync)

    def read_metrics(self, run_id: str) -> list[dict]:
        return metrics_file.read_metrics(self.run_dir(run_id))

    def truncate_metrics(self, run_id: str, step: int) -> int:
        return metrics_file.truncate_metrics(self.run_dir(run_id), step)

    def read_result(self, run_id: str) -> RunResult | None:
        """The run's typed result, None if it has none. A schema-1 result takes its data
        source from the run's config.yaml."""
        path = self._run_path(run_id, RESULT_FILE)
        data = read_json_at(self._backend, path, "result file")
        if data is None:
            return None
        config = None
        if data.get("schema_version") == 1 and "data_source" not in data:
            try:
                config = self.read_config(run_id)
            except StoreError:
                config = None
        return parse_result(data, path, config)

    # -- sweeps
    def write_sweep(self, name: str, manifest: Mapping[str, Any]) -> str:
        """Write `<root>/sweeps/<name>.json` (see run_store.sweeps); returns its path."""
        sweeps.write_manifest(self._backend, self._path(SWEEPS_DIR), name, manifest)
        return self.sweep_path(name)

    def read_sweep(self, name: str) -> dict | None:
        return sweeps.read_manifest(self._backend, self._path(SWEEPS_DIR), name)

    def list_sweeps(self) -> list[str]:
        return sweeps.list_manifests(self._backend, self._path(SWEEPS_DIR))
