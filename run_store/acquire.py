"""Claiming a run: the lease is created exclusively; a stale one is taken over.

Another process may take a lease over only once its heartbeat is older than the timeout. It
first creates a claim file `lease.json.takeover-<token>.<n>` exclusively, so only one
contender acts on a given stale lease; then it renames the stale lease aside to a unique
name (`lease.json.stale-*`, kept as evidence), checks that what it moved is the lease it
judged, and creates the lease exclusively like any newcomer. So of several contenders exactly
one wins, and a live lease is never moved. A contender that dies holding a claim blocks
take-over for one more timeout (the next takes claim n+1).

On fsspec roots the exclusive create is as good as the backend's `mode="create"`: a real
precondition on S3 (`If-None-Match: *`) and GCS (`ifGenerationMatch=0`) with s3fs and gcsfs,
refused by the server with 412 (tests/test_store_buckets.py checks both against their API
servers); check-then-write elsewhere. The rename aside is a move (GCS `moveTo`; a copy and a
delete on S3), so a take-over there is best effort; the token checks still refuse writes from
an owner that has lost its lease.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any

from run_store.jsonfiles import dumps
from run_store.lease import Lease, default_owner, read_lease, restore
from run_store.locations import LEASE_FILE

log = logging.getLogger(__name__)


def acquire(backend: Any, run_path: str, run_id: str, owner: str | None, timeout_s: float,
            heartbeat_interval_s: float) -> Lease | None:
    """Claim the lease of the run in folder `run_path`; None if a live owner holds it (or
    another process is taking it over right now). A lease whose heartbeat is older than
    `timeout_s` is taken over (see the module doc). Taking the lease does not change
    status.json."""
    timeout = float(timeout_s)
    owner = owner or default_owner()
    backend.makedirs(run_path)
    path = backend.join(run_path, LEASE_FILE)
    token = secrets.token_hex(16)
    took_over: dict | None = None
    claim: str | None = None
    try:
        for _ in range(4):
            now = time.time()
            content = {"run_id": run_id, "owner": owner, "token": token, "acquired": now,
                       "heartbeat": now}
            if backend.create_exclusive(path, dumps(content)):
                current = read_lease(backend, path)
                if current is None or current.get("token") != token:
                    return None  # a best-effort backend let someone else in: theirs
                if took_over is not None:
                    log.warning("%s took over the lease of run %s from %s (heartbeat %.1f s old)",
                                owner, run_id, took_over.get("owner"), now - took_over["heartbeat"])
                return Lease(backend, run_path, run_id, owner, token, path, timeout, heartbeat_interval_s)
            current = read_lease(backend, path)
            if current is None:
                continue  # released meanwhile: try to create it again
            if time.time() - current["heartbeat"] <= timeout or claim is not None:
                return None
            claim = _claim_takeover(backend, path, current["key"], owner, timeout)
            if claim is None:
                return None  # another contender is taking this stale lease over
            # Holding the claim, only we may move a lease with this key. Look again: the
            # lease may have been replaced, or its owner may have come back to life.
            again = read_lease(backend, path)
            if again is None or again["key"] != current["key"]:
                continue
            if time.time() - again["heartbeat"] <= timeout:
                return None
            aside = f"{path}.stale-{int(now)}-{secrets.token_hex(4)}"
            if not backend.move_aside(path, aside):
                continue
            moved = read_lease(backend, aside)
            if moved is None or moved["key"] != current["key"]:
                restore(backend, aside, path)  # cannot happen without a stalled claimant
                return None
            took_over = current
        return None
    finally:
        if claim is not None:
            backend.remove(claim)


def _claim_takeover(backend: Any, path: str, key: str, owner: str, timeout: float) -> str | None:
    """Create the take-over claim for the lease named `key`; its path, or None if a live
    claim by someone else exists."""
    for n in range(64):
        claim = f"{path}.takeover-{key}.{n}"
        if backend.create_exclusive(claim, dumps({"owner": owner, "time": time.time()})):
            return claim
        try:
            other = json.loads(backend.read(claim).decode("utf-8"))
            claimed_at = float(other["time"])
        except FileNotFoundError:
            return None  # its holder just finished: the lease has changed
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            claimed_at = backend.mtime(claim) or 0.0
        if time.time() - claimed_at <= timeout:
            return None
    return None
