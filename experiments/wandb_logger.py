"""W&B logging for one run, fed from the run store.

The run store's metrics.jsonl is the source of truth; W&B is a view of it. `WandbLogger`
streams rows from it to a W&B run whose id is the store's run id (resume="allow"), so a
rerun or a resumed run continues the same W&B run. Each step reaches W&B once: the logger
skips every row whose step is <= the last step W&B already has, known from

* the sidecar `wandb_state.json` (in the run folder: pass `dir` or `state_path`), written
  at most once a second after a successful batch and at the end, which also covers offline
  runs: an offline resume writes a new offline-run-* folder, and without this every earlier
  step would be logged again in it (if a process dies between two sidecar writes, an offline
  resume may repeat up to a second of steps);
* the resumed run's `starting_step` (online: the server's last step + 1).

In a multi-host run only one process logs: give the others mode='disabled'.

Logging must never hang or fail a run. Mode 'auto' is resolved by `run_store.wandb_mode`:
online only with a key and a host that answers an HTTP request within the probe's 2 s
deadline, else offline. If an online `wandb.init` still fails or times out (`init_timeout_s`),
the logger says so in one warning and logs offline into the same folder instead, so the
history is kept for `wandb sync`. Every other call into wandb is wrapped: the first exception
(or a failed offline init) is reported once as a warning and logging is off for the rest of
the run. wandb's finish wait is bounded by `finish_timeout_s`. We never write the API key
anywhere.

Code saving, job creation and console capture are always off (the store has the config
and the logs); offline runs also turn off what could reach the network or slow the run
(system stats, machine and git metadata).

A caveat that W&B imposes: history cannot be rewritten. If a resumed run cuts
metrics.jsonl back to its checkpoint, W&B keeps the original values of the steps it already
had; the store holds the recomputed ones.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from typing import Any, Iterable, Mapping, Sequence

from run_store import StoreError, one_line, read_json, write_json
from run_store.wandb_mode import resolve_mode

log = logging.getLogger(__name__)

STATE_FILE = "wandb_state.json"
STATE_EVERY_S = 1.0
"""The sidecar is rewritten at most this often (and at the end): a write per step cost more
than the W&B call itself. A process killed in between may log up to this much again to an
offline resume's folder."""
_MAX_TAG_LEN = 64  # W&B refuses longer tags
# The bound on wandb.init (wandb's default is 90 s; ours was 60 s). 'auto' goes online only
# after the host answered an HTTP request within 2 s, so init then waits only on W&B's own API
# calls (login, resume lookup, run upsert): a few seconds on a healthy server. 30 s leaves ~10x
# that for a slow but working one, and bounds what a degraded one costs the run before the
# logger falls back to offline (history kept for `wandb sync`). wandb itself may add up to
# 10 s of grace if its service does not honour the timeout.
INIT_TIMEOUT_S = 30.0
# After a failed online init, wandb's service still holds the run id; shutting it down usually
# takes ~2 s. Past this bound the logger goes on without waiting (the thread is a daemon).
_TEARDOWN_TIMEOUT_S = 15.0


class WandbLogger:
    """One run's W&B logging: `log_rows` streams metrics rows, `finish` writes the summary.

    Args:
        run_id: the store's run id; also the W&B run id and name (resume="allow").
        project: W&B project.
        group: the sweep's name.
        tags: e.g. family, size, budget, 'seed=0'.
        config: the resolved config as a plain dict.
        mode: 'auto' | 'online' | 'offline' | 'disabled'.
        dir: local folder for wandb's files (`<dir>/wandb/...`); default WANDB_DIR or cwd.
        state_path: the sidecar recording the last step W&B has (local path or fsspec
            URL); default `<dir>/wandb_state.json` when `dir` is given, else none.
        entity, job_type: passed to wandb.init.
        probe_timeout_s: how long 'auto' waits for the W&B host to answer an HTTP request.
        init_timeout_s: bound on each wandb.init (online, then the offline fallback).
        finish_timeout_s: bound on wandb's finish wait.
    """

    def __init__(self, run_id: str, project: str, group: str | None = None,
                 tags: Sequence[str] = (), config: Mapping[str, Any] | None = None,
                 mode: str = "auto", dir: str | os.PathLike | None = None,
                 state_path: str | os.PathLike | None = None, entity: str | None = None,
                 job_type: str = "train", probe_timeout_s: float = 2.0,
                 init_timeout_s: float = INIT_TIMEOUT_S, finish_timeout_s: float = 120.0):
        self.run_id = run_id
        self.project = project
        self.group = group
        self.tags = [str(t)[:_MAX_TAG_LEN] for t in tags]
        self.config = dict(config or {})
        self.dir = os.fspath(dir) if dir is not None else None
        if state_path is None and self.dir is not None:
            state_path = os.path.join(self.dir, STATE_FILE)
        self.state_path = os.fspath(state_path) if state_path is not None else None
        self.mode = resolve_mode(mode, probe_timeout_s)
        self.run: Any = None
        self.last_step: int | None = None
        self.error: str | None = None
        self._finished = False
        self._state_written = 0.0  # when the sidecar was last written (time.monotonic)
        if self.mode == "disabled":
            return
        self.last_step = self._read_state()
        self._init(entity, job_type, init_timeout_s, finish_timeout_s)

    @property
    def enabled(self) -> bool:
        """True while a W&B run is live and no wandb call has failed."""
        return self.run is not None and self.error is None and not self._finished

    # -- error handling
    @staticmethod
    def _warn(msg: str) -> None:
        log.warning(msg)
        try:
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        except Warning:  # warnings configured as errors must not fail the run either
            pass

    def _disable(self, what: str, err: BaseException | str) -> None:
        self.error = f"{what}: {one_line(err, with_type=True)}"
        self._warn(f"W&B logging of run {self.run_id} is off for the rest of the run ({self.error}); "
                   "the run store still has every metric")

    def _read_state(self) -> int | None:
        if self.state_path is None:
            return None
        try:
            state = read_json(self.state_path, "W&B state file")
        except (StoreError, OSError) as e:
            log.warning("ignoring %s (%s)", self.state_path, e)
            return None
        if not state or state.get("run_id") != self.run_id or state.get("project") != self.project:
            return None
        step = state.get("last_step")
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    def _write_state(self) -> None:
        self._state_written = time.monotonic()
        if self.state_path is None or self.last_step is None:
            return
        try:
            # Rewritten every step: atomic, not fsynced (an fsync per step cost more than the
            # W&B call itself; after a power cut an offline resume may log a step again).
            write_json(self.state_path, {"run_id": self.run_id, "project": self.project,
                                         "last_step": self.last_step, "mode": self.mode,
                                         "updated": time.time()}, durable=False)
        except OSError as e:  # the sidecar is an optimisation; never fail the run for it
            log.warning("could not write %s: %s", self.state_path, e)

    # -- wandb calls
    def _init(self, entity: str | None, job_type: str, init_timeout_s: float,
              finish_timeout_s: float) -> None:
        args = (entity, job_type, init_timeout_s, finish_timeout_s)
        try:
            import wandb

            if self.dir is not None:
                os.makedirs(self.dir, exist_ok=True)
            if self.mode != "online":
                self._start(wandb, *args)
                return
        except Exception as e:
            self.run = None
            self._disable("wandb.init", e)
            return
        try:
            self._start(wandb, *args)
            return
        except Exception as e:
            online_error = one_line(e, with_type=True)
        # wandb's own online init failed or timed out (the host may answer HTTP but not as W&B,
        # refuse the key, or be too slow): keep the history in an offline run of the same
        # folder, for `wandb sync`, rather than losing it.
        self.run = None
        self.mode = "offline"
        _teardown_service(wandb)
        try:
            self._start(wandb, *args)
        except Exception as e:
            self.run = None
            self._disable("wandb.init", f"online: {online_error}; offline: {one_line(e, with_type=True)}")
            return
        folder = os.path.dirname(getattr(self.run, "dir", "") or "") or self.dir or "the wandb folder"
        self._warn(f"W&B online init of run {self.run_id} failed ({online_error}); logging offline "
                   f"instead: upload it later with `wandb sync {folder}`")

    def _start(self, wandb: Any, entity: str | None, job_type: str, init_timeout_s: float,
               finish_timeout_s: float) -> None:
        """One wandb.init in `self.mode`; sets self.run or raises."""
        offline = self.mode == "offline"
        settings = wandb.Settings(
            mode=self.mode,
            console="off",
            save_code=False,
            disable_job_creation=True,
            disable_git=offline,
            x_disable_stats=offline,
            x_disable_meta=offline,
            x_disable_machine_info=offline,
            init_timeout=init_timeout_s,
            finish_timeout=finish_timeout_s,
        )
        self.run = wandb.init(
            id=self.run_id, name=self.run_id, resume="allow", project=self.project,
            entity=entity, group=self.group, job_type=job_type, tags=self.tags,
            config=self.config, allow_val_change=True, dir=self.dir, settings=settings,
        )
        if self.run is None:
            raise RuntimeError("wandb.init returned no run")
        starting = int(getattr(self.run, "starting_step", 0) or 0)
        if starting > 0:  # resumed online: the server has steps up to starting - 1
            self.last_step = max(self.last_step if self.last_step is not None else -1, starting - 1)
        if offline:
            log.info("W&B run %s is offline; upload it later with `wandb sync %s`",
                     self.run_id, getattr(self.run, "dir", self.dir))

    def log_rows(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Log metrics rows (each with an int 'step', as in metrics.jsonl) at step=row['step'],
        skipping steps W&B already has. Returns the number of rows logged."""
        if not self.enabled:
            return 0
        logged = 0
        try:
            for row in rows:
                step = row.get("step")
                if isinstance(step, bool) or not isinstance(step, int):
                    continue  # not a metrics row of the store
                if self.last_step is not None and step <= self.last_step:
                    continue
                self.run.log({k: v for k, v in row.items() if k != "step"}, step=step)
                self.last_step = step
                logged += 1
        except Exception as e:
            self._disable("wandb.log", e)
        if logged and time.monotonic() - self._state_written >= STATE_EVERY_S:
            self._write_state()
        return logged

    def finish(self, summary: Mapping[str, Any] | None = None, exit_code: int | None = None) -> None:
        """Put `summary` (result.json) in the run's summary and finish the run. The exit code
        defaults to 0 unless summary['status'] says otherwise."""
        if not self.enabled:
            return
        if exit_code is None:
            exit_code = 0 if (summary or {}).get("status", "SUCCESS") == "SUCCESS" else 1
        self._write_state()
        try:
            if summary:
                self.run.summary.update(dict(summary))
            self.run.finish(exit_code=exit_code)
        except Exception as e:
            self._disable("wandb.finish", e)
        self._finished = True

    def __enter__(self) -> "WandbLogger":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if not self._finished:
            self.finish(exit_code=0 if exc_type is None else 1)


def _teardown_service(wandb: Any) -> None:
    """Shut down wandb's service after a failed online init: it still holds the run id, and an
    offline init of the same id would fail ("run ID ... is in use"). Bounded, in a daemon
    thread; left alone if another run of this process is live."""
    if getattr(wandb, "run", None) is not None:
        return

    def teardown() -> None:
        try:
            wandb.teardown()
        except BaseException:  # noqa: BLE001 - incl. the SystemExit of a service that exited non-zero
            pass

    thread = threading.Thread(target=teardown, name="wandb-teardown", daemon=True)
    thread.start()
    thread.join(_TEARDOWN_TIMEOUT_S)


__all__ = ["INIT_TIMEOUT_S", "STATE_FILE", "WandbLogger"]
