"""Where things live: a store location is a local path or an fsspec URL, and the names of
the files inside a run folder. This is the one place that tells the two kinds apart."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
LEASE_FILE = "lease.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CKPT_DIR = "ckpt"
RUNS_DIR = "runs"
SWEEPS_DIR = "sweeps"
MEASUREMENTS_DIR = "measurements"
"""griffin-measure's results: `<root>/measurements/<kind>.json` (speed, not runs)."""


def is_url(location: str | os.PathLike) -> bool:
    """True for an fsspec URL (`gs://b/x`, `memory://x`, chained `simplecache::s3://...`),
    False for a local path (a PathLike is always local)."""
    if isinstance(location, os.PathLike):
        return False
    text = str(location)
    return "://" in text or "::" in text


def protocol(location: str | os.PathLike) -> str | None:
    """The scheme of a plain URL (`gs`, `s3`, `memory`); None for a local path and for a chained
    URL (`simplecache::s3://...`, whose options belong to each link)."""
    if not is_url(location) or "::" in str(location):
        return None
    return str(location).split("://", 1)[0]


def join(base: str | os.PathLike, *parts: str) -> str:
    """`base` / parts, with '/' for URLs and the OS separator for local paths."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return os.path.join(os.fspath(base), *parts)


def parent(location: str | os.PathLike) -> str:
    """The folder holding `location` (a URL keeps its scheme)."""
    if is_url(location):
        text = str(location).rstrip("/")
        head, _, _ = text.rpartition("/")
        return head
    return os.path.dirname(os.fspath(location).rstrip(os.sep)) or "."


def name(location: str | os.PathLike) -> str:
    """The last component of `location`."""
    if is_url(location):
        return str(location).rstrip("/").rpartition("/")[2]
    return os.path.basename(os.fspath(location).rstrip(os.sep))


def measurement_path(root: str | os.PathLike, kind: str) -> str:
    """Where the measurement `kind` (train_speed, inference) of the store at `root` lives."""
    return join(root, MEASUREMENTS_DIR, f"{kind}.json")


CACHE_ENV = "GRIFFIN_CACHE_DIR"
"""Moves this machine's cache folder (default: the platform's user cache, via platformdirs)."""


def machine_cache_dir() -> Path:
    """Where facts about this machine are kept between runs (the measured matmul peak, the
    compilation cache of the benchmarks): $GRIFFIN_CACHE_DIR, else the user cache folder."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("griffin-scaling", appauthor=False))


def limits_path() -> Path:
    """The cache of machine limits (`griffin-bench limits`), read by the sweep planner too."""
    return machine_cache_dir() / "limits.json"
