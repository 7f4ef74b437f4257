"""The run store: the contract between `experiments/` (which writes runs), `launch/` (which
schedules them) and `analysis/` (which reads them). Plain Python: the standard library, PyYAML,
pydantic and (for buckets) fsspec; never JAX or Ray.

One module per job:
    locations  local path or URL (the one place that tells them apart), and the file names of a run folder
    endpoints  which server a bucket URL talks to, from the libraries' own environment variables
    backends   local folders and fsspec filesystems: atomic writes, exclusive creates
    probe      one request with a deadline before a command uses a bucket (one-line errors)
    ids        canonical JSON, content hashes and run ids (NUMERICS_VERSION)
    jsonfiles  small JSON files: plain values, atomic writes, one-line errors
    status     status.json as a typed record
    metrics    metrics.jsonl: append, read tolerant of a cut-off line, cut back on resume
    metrics_writer  rows at once on a local folder, in batches on a bucket
    checkpoints     where Orbax writes a run's checkpoints: the store itself, or a local folder staged to it
    results    result.json as a typed, versioned record (pydantic)
    lease      a held lease: heartbeats, release, the writes only its holder may make
    acquire    claiming a lease, taking over a stale one
    sweeps     sweep manifests
    store      RunStore: the folder layout tying these together
    errors     StoreError, LeaseLostError and `one_line`
"""

from run_store.errors import LeaseLostError, StoreError, one_line
from run_store.ids import HASH_LENGTH, NUMERICS_VERSION, canonical_json, compute_run_id, config_hash
from run_store.jsonfiles import read_json, write_json
from run_store.lease import Lease, default_owner
from run_store.locations import (CKPT_DIR, CONFIG_FILE, LEASE_FILE, METRICS_FILE, RESULT_FILE, STATUS_FILE,
                                 is_url, join)
from run_store.metrics import read_metrics, truncate_metrics
from run_store.results import FIELDS as RESULT_FIELDS
from run_store.results import RESULT_SCHEMA_VERSION, RunResult, make_result, parse_result, read_result
from run_store.status import FINAL_STATES, STATES, Status
from run_store.store import RunStore

__all__ = [
    "CKPT_DIR", "CONFIG_FILE", "FINAL_STATES", "HASH_LENGTH", "LEASE_FILE", "METRICS_FILE", "NUMERICS_VERSION",
    "RESULT_FIELDS", "RESULT_FILE", "RESULT_SCHEMA_VERSION", "STATES", "STATUS_FILE", "Lease", "LeaseLostError",
    "RunResult", "RunStore", "Status", "StoreError", "canonical_json", "compute_run_id", "config_hash",
    "default_owner", "is_url", "join", "make_result", "one_line", "parse_result", "read_json", "read_metrics",
    "read_result", "truncate_metrics", "write_json",
]
