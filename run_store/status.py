"""status.json: PENDING | RUNNING | SUCCESS | FAILED | DIVERGED, as a typed record."""

from __future__ import annotations

import dataclasses
import time

from run_store.errors import StoreError

STATES = ("PENDING", "RUNNING", "SUCCESS", "FAILED", "DIVERGED")
FINAL_STATES = ("SUCCESS", "FAILED", "DIVERGED")

DEFAULT_HEARTBEAT_INTERVAL_S = 30.0
DEFAULT_LEASE_TIMEOUT_S = 90.0


@dataclasses.dataclass(frozen=True)
class Status:
    """A run's state as read from status.json (and its lease, for the heartbeat)."""

    state: str
    """One of STATES. A run with no status.json is PENDING."""
    run_id: str
    """The run this describes."""
    updated: float | None = None
    """Wall-clock time (s since the epoch) of the last status write."""
    owner: str | None = None
    """`host:pid` of the process that wrote the status (RUNNING and after)."""
    token: str | None = None
    """The writer's lease token."""
    heartbeat: float | None = None
    """Latest heartbeat known: the lease's if it is the writer's, else the status's."""
    reason: str | None = None
    """Why a run FAILED or DIVERGED."""
    step: int | None = None
    """The step at which a run DIVERGED (or any step the writer chose to record)."""
    extra: dict = dataclasses.field(default_factory=dict)
    """Any other fields the writer added."""

    def is_stale(self, timeout_s: float = DEFAULT_LEASE_TIMEOUT_S, now: float | None = None) -> bool:
        """True for a RUNNING run whose owner has not heartbeaten within `timeout_s`."""
        if self.state != "RUNNING":
            return False
        now = time.time() if now is None else now
        last = self.heartbeat if self.heartbeat is not None else self.updated
        return last is None or now - last > timeout_s


_STATUS_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "updated": (int, float), "owner": (str,), "token": (str,),
    "heartbeat": (int, float), "reason": (str,), "step": (int,)}
"""Types of status.json's known fields besides `state` (each may also be null)."""


def status_from_dict(run_id: str, data: dict, path: str) -> Status:
    """The Status in a status file's object; StoreError naming `path` for an unknown state
    or a known field of the wrong type."""
    state = data.get("state")
    if state not in STATES:
        raise StoreError(f"{path}: corrupt status file (state {state!r} is not one of {list(STATES)})")
    for key, types in _STATUS_TYPES.items():
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise StoreError(f"{path}: corrupt status file ({key}={value!r} is not "
                             f"{' or '.join(t.__name__ for t in types)})")
    fields = {k: data.get(k) for k in _STATUS_TYPES if k != "run_id"}
    extra = {k: v for k, v in data.items() if k not in _STATUS_TYPES and k != "state"}
    return Status(state=state, run_id=data.get("run_id") or run_id, extra=extra, **fields)


def check_status_fields(state: str, fields: dict) -> None:
    """The rules of a status write: a known state; FAILED needs a reason; DIVERGED a reason and
    the integer step at which it diverged."""
    if state not in STATES:
        raise ValueError(f"state {state!r} is not one of {list(STATES)}")
    if state in ("FAILED", "DIVERGED") and not fields.get("reason"):
        raise ValueError(f"a {state} status needs a reason")
    step = fields.get("step")
    if state == "DIVERGED" and (isinstance(step, bool) or not isinstance(step, int)):
        raise ValueError("a DIVERGED status needs the integer step at which it diverged")
