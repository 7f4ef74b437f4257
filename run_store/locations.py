"""Where things live: a store location is a local path or an fsspec URL, and the names of
the files inside a run folder. This is the one place that tells the two kinds apart, and that
decides which URLs a store may live at (`store_root`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from run_store.errors import StoreError

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


STORE_SCHEMES = ("s3", "s3a", "gs", "gcs", "memory")
"""URL schemes a run store may live at (file:// is a local path): S3 and its API (s3fs), Google
Cloud Storage (gcsfs), and fsspec's in-process `memory://` (tests)."""
BUCKET_SCHEMES = ("s3", "s3a", "gs", "gcs")
"""Schemes whose URL names a bucket first: s3://BUCKET/path."""
URL_SCHEMES = (*STORE_SCHEMES, "file", "http", "https", "ftp", "sftp", "ssh", "hdfs", "webhdfs", "az", "abfs",
               "abfss", "adl", "oss", "hf")
"""Schemes that make `s3:/bucket/x` or `gs:bucket` a URL with a slash missing, not a folder name."""
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):(.*)", re.S)
_FORMS = "a local folder (e.g. results), file:///absolute/path, s3://BUCKET/path or gs://BUCKET/path"


def store_root(location: str | os.PathLike, key: str | None = "store.root") -> str:
    """`location` as a run store takes it: a local path as given, `file:///abs` as the local path
    `/abs`, an s3://, gs:// (or memory://) URL as given. StoreError in one line naming `key`
    (the setting it came from) for anything else: an empty value, an unsupported scheme
    (http://, foo://), a bucket URL without its bucket (s3://), a chained URL, or a URL with a
    slash missing (`s3:/bucket/x` would otherwise be a local folder named `s3:`)."""
    if isinstance(location, os.PathLike):
        return os.fspath(location)
    text = str(location)
    named = f" ({key})" if key else ""
    if not text.strip():
        raise StoreError(f"{key or 'the run store root'} is empty: give {_FORMS}")
    if "::" in text:
        raise StoreError(f"{text}: a chained URL is not a run store root{named}; give {_FORMS}")
    if "://" not in text:
        match = _SCHEME_RE.fullmatch(text)
        if match and (match.group(1) in URL_SCHEMES or match.group(2).startswith("/")):
            scheme, rest = match.group(1), match.group(2).lstrip("/")
            fix = f"{scheme}://{rest}" if rest else f"{scheme}://BUCKET/path"
            raise StoreError(f"{text}: a URL with a slash missing{named}: write {fix} (or ./{text} for a local "
                             f"folder of that name)")
        return text
    scheme, rest = text.split("://", 1)
    if scheme == "file":
        if not rest.startswith("/") or not rest.strip("/"):
            raise StoreError(f"{text}: a file:// URL must name an absolute folder{named}: file:///absolute/path")
        return unquote(rest)
    if scheme not in STORE_SCHEMES:
        raise StoreError(f"{text}: the run store does not support {scheme}:// URLs{named}; give {_FORMS}")
    if scheme in BUCKET_SCHEMES and not rest.split("/", 1)[0]:
        raise StoreError(f"{text}: no bucket in the URL{named}: write {scheme}://BUCKET/path")
    return text


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
