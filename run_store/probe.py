"""Before a command uses a bucket: one request, with a deadline, so that missing credentials,
an endpoint nobody answers at or a bucket that does not exist are one line naming the root
(`store.root`) within seconds, instead of a traceback after the client's retries (s3fs and
gcsfs retry a refused connection for 10-30 s) or a run failing at its first write."""

from __future__ import annotations

import threading
from typing import Any

from run_store.endpoints import endpoint
from run_store.errors import StoreError, one_line
from run_store.locations import protocol

PROBE_TIMEOUT_S = 5.0
"""How long the first request to a bucket may take before the store root is refused."""
FAIL_FAST = {"s3": {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 3}}}
"""Options for the probe's own client, by protocol, so that a refused connection is reported
at once with botocore's reason (gcsfs's retries cannot be set per instance: the deadline
stops those)."""


def _fail_fast(fs: Any) -> Any:
    """A client like `fs` that does not retry, where the library allows it; else `fs`."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    extra = next((FAIL_FAST[p] for p in protocols if p in FAIL_FAST), None)
    if extra is None:
        return fs
    options = dict(fs.storage_options)
    config = {**options.get("config_kwargs", {}), **extra["config_kwargs"]}
    return type(fs)(**{**options, "config_kwargs": config, "skip_instance_cache": True})


def _ask(fs: Any, path: str) -> str | None:
    """None if the bucket holding `path` answers and exists, else why not."""
    split = getattr(fs, "split_path", None)  # object stores (s3fs, gcsfs) name a bucket first
    bucket = split(path)[0] if split is not None else None
    if not bucket:
        fs.exists(path)
        return None
    try:
        fs.info(bucket)  # unlike exists(), lets a refused connection or missing credentials through
    except FileNotFoundError:
        return f"no bucket {bucket!r} there"
    return None


def check_reachable(backend: Any, path: str, location: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise StoreError (one line naming `location` and store.root) unless the bucket of the
    fsspec root `location` (backend-native `path`) answers within `timeout_s`. Local roots
    are not checked. The request runs in a daemon thread: a client still retrying after the
    deadline is left behind, not waited for."""
    if backend.local:
        return
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["problem"] = _ask(_fail_fast(backend.fs), path)
        except BaseException as err:  # noqa: BLE001 - any failure is the answer
            outcome["problem"] = one_line(err, with_type=True, limit=300)

    thread = threading.Thread(target=ask, name="store-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    where = endpoint(protocol(location))
    if "problem" not in outcome:
        raise StoreError(f"{location}: cannot use the run store (store.root): {where} did not answer "
                         f"within {timeout_s:g} s")
    if outcome["problem"] is not None:
        raise StoreError(f"{location}: cannot use the run store (store.root) at {where}: {outcome['problem']}")
