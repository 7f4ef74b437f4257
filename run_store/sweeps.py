"""Sweep manifests: `<root>/sweeps/<name>.json`, a sweep's config, its grid and its run ids.

A sweep is a list of runs, not a place: runs live once in `<root>/runs/`, so a grid point
shared by two sweeps is trained once and both manifests name it.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from run_store.errors import StoreError
from run_store.ids import check_run_id, check_sweep_name
from run_store.jsonfiles import dumps, plain, read_json_at
from run_store.locations import SWEEPS_DIR


def manifest_name(name: str) -> str:
    """The manifest's file name for a sweep name (checked)."""
    return f"{check_sweep_name(name)}.json"


def write_manifest(backend: Any, folder: str, name: str, manifest: Mapping[str, Any]) -> None:
    """Write the manifest atomically (replacing an older plan). It holds at least `runs` (run
    ids); by convention also `config` and `grid`."""
    runs = manifest.get("runs")
    if not isinstance(runs, (list, tuple)) or not all(isinstance(r, str) for r in runs):
        raise ValueError(f"sweep {name!r}: manifest['runs'] must be a list of run ids")
    for run_id in runs:
        check_run_id(run_id)
    data = {"name": name, "written": time.time(), **plain(dict(manifest), "sweep")}
    backend.write_atomic(backend.join(folder, manifest_name(name)), dumps(data))


def read_manifest(backend: Any, folder: str, name: str) -> dict | None:
    """The manifest, None if there is none; StoreError naming the file if it is corrupt."""
    path = backend.join(folder, manifest_name(name))
    data = read_json_at(backend, path, "sweep manifest")
    if data is None:
        return None
    runs = data.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        raise StoreError(f"{path}: corrupt sweep manifest (no 'runs' list of run ids)")
    return data


def list_manifests(backend: Any, folder: str) -> list[str]:
    """Names of the sweeps with a manifest in `folder`, sorted."""
    return [n[:-5] for n in backend.listdir(folder) if n.endswith(".json")]


__all__ = ["SWEEPS_DIR", "list_manifests", "manifest_name", "read_manifest", "write_manifest"]
