"""Execute one run: resolve its id, take its lease in the run store, train (resuming if it was
interrupted), and record metrics, result and status in the store and W&B.

Used by `griffin-train` and by the sweep's Ray workers alike.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import socket
import subprocess
import time
from typing import Any, Callable, Mapping

import numpy as np

from experiments import run_data
from experiments.mfu import NONE as NO_MFU
from experiments.mfu import Utilisation, devices, nominal_chip, utilisation
from experiments.spec import RunSpec, validate
from griffin_core.config import ConfigError
from griffin_core.data.errors import DataError
from run_store import RunResult, RunStore, StoreError, compute_run_id, is_url, make_result, one_line
from run_store.checkpoints import CheckpointFolder, orbax_writes
from run_store.errors import CorruptStoreFile
from run_store.locations import join
from run_store.metrics_writer import MetricsWriter


@dataclasses.dataclass(frozen=True)
class RunRef:
    """A validated run and where it lives."""

    spec: RunSpec
    run_id: str
    fingerprint: str
    data_error: str | None = None
    """Planning without the data (a paper-scale dry run on a laptop): why it is missing."""


@dataclasses.dataclass
class RunReport:
    run_id: str
    status: str  # SUCCESS | DIVERGED | FAILED | SKIPPED (already done) | BUSY (another owner)
    reason: str | None = None
    result: RunResult | None = None


def resolve(cfg: Mapping[str, Any], require_data: bool = True) -> RunRef:
    """Validate the config and compute the run id (no JAX; reads the data's fingerprint).
    With require_data=False a missing data file is recorded instead of raised (dry runs)."""
    spec = validate(cfg)
    flush_s = cfg["store"]["metrics_flush_s"]
    if isinstance(flush_s, bool) or not isinstance(flush_s, (int, float)) or not flush_s >= 0:
        raise ConfigError(f"store.metrics_flush_s={flush_s!r} must be a non-negative number of seconds")
    try:
        fingerprint, error = run_data.fingerprint(spec.data, spec.schedule.batch_size, spec.seed), None
    except DataError as err:
        if require_data:
            raise
        fingerprint, error = "no-data", one_line(err)
    run_id = compute_run_id(spec.family, spec.size, spec.budget_label, spec.semantic(), fingerprint)
    return RunRef(spec, run_id, fingerprint, error)


def store_for(cfg: Mapping[str, Any]) -> RunStore:
    """The run store with the launcher's lease settings (heartbeat, take-over timeout)."""
    launcher = cfg["launcher"]
    return RunStore(cfg["store"]["root"], heartbeat_interval_s=launcher["heartbeat_s"],
                    lease_timeout_s=launcher["lease_timeout_s"])


def look(ref: RunRef, store: RunStore) -> RunReport | None:
    """Reading only: a report if this process should not train `ref` (it succeeded, or a live
    owner holds it), else None. Every file a resume reads is parsed first: a corrupt one is
    the user's to look at (StoreError naming it), and the store stays as it was."""
    run_id = ref.run_id
    if store.status(run_id).state == "SUCCESS":
        return RunReport(run_id, "SKIPPED", result=store.read_result(run_id))
    store.read_config(run_id)
    store.read_metrics(run_id)
    lease = store.lease_info(run_id)
    if lease and time.time() - lease["heartbeat"] <= store.lease_timeout_s and not owner_is_dead(lease):
        return RunReport(run_id, "BUSY", reason=f"run {run_id} is held by {lease}")
    return None


def claim(ref: RunRef, store: RunStore):
    """(lease, None) if this process should train `ref`, else (None, report of why not)."""
    run_id = ref.run_id
    report = look(ref, store)
    if report is not None:
        return None, report
    store.init_run(run_id, ref.spec.config)
    lease = store.acquire(run_id)
    if lease is None and owner_is_dead(store.lease_info(run_id)):
        lease = store.acquire(run_id, timeout_s=0.0)  # killed on this host: no need to wait out the lease
    if lease is None:
        return None, RunReport(run_id, "BUSY", reason=f"run {run_id} is held by {store.lease_info(run_id)}")
    if store.status(run_id).state == "SUCCESS":  # finished (and released) since the first look
        lease.release()
        return None, RunReport(run_id, "SKIPPED", result=store.read_result(run_id))
    return lease, None


def execute(ref: RunRef, store: RunStore, *, progress: bool = True, sweep: str | None = None) -> RunReport:
    """Train `ref` unless it already succeeded or someone else holds it.

    In a multi-process (jax.distributed) run every process calls this; process 0 alone takes
    the lease and writes the store and W&B, the others train their share of each batch."""
    import jax

    from experiments.programs import mesh_layout
    from experiments.train import train  # JAX is imported only by processes that train
    from experiments.wandb_logger import WandbLogger

    os.environ.setdefault("WANDB_SILENT", "true")  # our progress bar and summary line say enough
    spec, run_id = ref.spec, ref.run_id
    mesh_layout(spec, jax.device_count())  # a mesh these devices cannot hold: ConfigError before the store
    if jax.process_count() > 1 and not orbax_writes(store.ckpt_dir(run_id)):
        raise StoreError(f"{store.root}: checkpoints on this bucket are staged on one host's disk "
                         "(run_store.checkpoints); a multi-host run needs store.root on gs:// or a shared folder")
    main = jax.process_index() == 0
    report = look(ref, store) if main else None
    if not _agree(report is None):
        return report or RunReport(run_id, "SKIPPED", reason="process 0 did not claim the run")
    # The data, programs and latest checkpoint are made ready before the run is claimed: a bad
    # data file or an unreadable checkpoint leaves the store as it was (one line, exit 2).
    folder = CheckpointFolder(store.ckpt_dir(run_id)) if main else None
    try:
        if folder is not None:
            folder.pull()
        ready = prepare_run(spec, folder.path if folder else store.ckpt_dir(run_id), store.ckpt_dir(run_id))
        lease, report = claim(ref, store) if main else (None, None)
    except BaseException:
        if folder is not None:
            folder.close()
        raise
    if not _agree(report is None):
        if folder is not None:
            folder.close()
        return report or RunReport(run_id, "SKIPPED", reason="process 0 did not claim the run")
    if main:
        print(f"run {run_id}: claimed by {lease.owner}", flush=True)
    else:
        train(spec, store.ckpt_dir(run_id), lambda rows: None, progress=False,
              process_index=jax.process_index(), process_count=jax.process_count(), prepared=ready)
        return RunReport(run_id, "SUCCESS", reason="worker process")

    wb = spec.config["logger"]["wandb"]
    logger = None
    writer = MetricsWriter(lease, spec.config["store"]["metrics_flush_s"])
    due = flush_due(spec)
    try:
        lease.start_heartbeat()
        lease.write_status("RUNNING")
        logger = WandbLogger(
            run_id, project=wb["project"], entity=wb["entity"], group=sweep or spec.config["experiment"]["name"],
            tags=[spec.family, spec.size, spec.budget_label, f"seed={spec.seed}"], config=spec.config,
            mode=wb["mode"], dir=wb["dir"] or (None if is_url(store.root) else store.run_dir(run_id)))

        def write_rows(rows):
            writer.add(rows, force=any(due(row) for row in rows))
            logger.log_rows(rows)
            folder.push()  # a staged checkpoint finished since the last row goes up now

        def start_rows(step: int) -> float:
            rows = writer.cut_back(step)
            return float(rows[-1].get("elapsed_s", 0.0)) if rows else 0.0

        outcome = train(spec, folder.path, write_rows, start_rows=start_rows, progress=progress,
                        process_index=jax.process_index(), process_count=jax.process_count(), prepared=ready)
        writer.flush()
        folder.push()
        result = assemble_result(ref, outcome.status, outcome.figures, store)
        lease.write_result(result)
        if outcome.status == "DIVERGED":
            lease.write_status("DIVERGED", step=outcome.step, reason=outcome.reason)
        else:
            lease.write_status("SUCCESS")
        logger.finish(result.to_json())
        return RunReport(run_id, outcome.status, outcome.reason, result)
    except BaseException as err:
        reason = one_line(err, with_type=True, limit=500)
        # An interruption is not a failure: Ctrl-C, or the process told to exit (Ray ends a
        # task's worker with SystemExit when its driver dies). The run stays RUNNING with its
        # lease released, and the next driver or griffin-train resumes it from its checkpoint.
        interrupted = isinstance(err, (KeyboardInterrupt, SystemExit))
        if not lease.lost:
            save_progress(writer, folder)
            if not interrupted:
                lease.write_status("FAILED", reason=reason)
        if logger is not None:
            logger.finish(None, exit_code=1)
        raise
    finally:
        folder.close()
        lease.release()


def _agree(go: bool) -> bool:
    """Process 0's `go`, on every process of a multi-process run (`go` itself in one process)."""
    import jax

    if jax.process_count() == 1:
        return go
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(go)))


def prepare_run(spec: RunSpec, path: str, location: str):
    """experiments.train.prepare of the run's checkpoints at `path`, with an unreadable
    checkpoint as a StoreError naming its step's folder at `location` (the store's ckpt/, which
    `path` may stage) and what to do about it."""
    import jax

    from experiments.train import prepare
    from griffin_core.checkpoint import UnreadableCheckpoint

    try:
        return prepare(spec, path, jax.process_index(), jax.process_count())
    except UnreadableCheckpoint as err:
        step = join(location, str(err.step))
        hint = (f"remove {step} to resume from the checkpoint before it (step {err.older[-1]})" if err.older
                else f"remove {step} to train the run from its start")
        raise CorruptStoreFile(f"{step}: corrupt checkpoint ({err.reason}); {hint}") from None


def flush_due(spec: RunSpec) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a metrics row must reach the store at once: a checkpoint's step, an evaluation,
    the last step (between them a bucket receives rows every store.metrics_flush_s)."""
    every, last = spec.trainer["checkpoint_every"], spec.schedule.steps

    def due(row: Mapping[str, Any]) -> bool:
        step = row["step"]
        return step == last or "heldout_loss" in row or bool(every and step % every == 0)
    return due


def save_progress(writer: MetricsWriter, folder: CheckpointFolder) -> None:
    """A failing run's queued metrics and finished checkpoints, kept for its resume when the
    store still answers (a failure of the store itself is already being reported)."""
    try:
        writer.flush()
        folder.push()
    except Exception as err:  # noqa: BLE001 - the run's own error is the one to report
        print(f"could not save the failed run's progress: {one_line(err, with_type=True)}", flush=True)


def execute_distributed(cfg: Mapping[str, Any], coordinator_address: str, num_processes: int, process_id: int,
                        *, bind_address: str | None = None, init_timeout_s: int = 300,
                        heartbeat_timeout_s: int = 100, progress: bool = False, sweep: str | None = None) -> RunReport:
    """One process of a multi-host run: join `jax.distributed` (gloo collectives on CPU), then
    `execute`. Every host of a TPU slice calls this with its own process_id."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               coordinator_bind_address=bind_address, initialization_timeout=init_timeout_s,
                               heartbeat_timeout_seconds=heartbeat_timeout_s,
                               # A host whose run raised must not wait minutes at the shutdown barrier
                               # while its peers sit in a collective: the slice is retried as a whole.
                               shutdown_timeout_seconds=heartbeat_timeout_s)
    try:
        return execute(resolve(cfg), store_for(cfg), progress=progress and process_id == 0, sweep=sweep)
    finally:
        jax.distributed.shutdown()


def owner_is_dead(lease: Mapping[str, Any] | None) -> bool:
    """True if the lease's owner ('host:pid') is a process of this host that no longer exists."""
    import psutil

    owner = str((lease or {}).get("owner", ""))
    host, _, pid = owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))


def assemble_result(ref: RunRef, status: str, figures: Mapping[str, Any], store: RunStore) -> RunResult:
    spec = ref.spec
    params = spec.params()
    final = dict(figures)
    if final.get("final_train_loss") is None and status == "SUCCESS":
        rows = store.read_metrics(ref.run_id)
        final["final_train_loss"] = rows[-1]["loss"] if rows else None
    tokens_per_s = final.get("tokens_per_s")
    utilisation = mfu(spec, tokens_per_s)
    return make_result(
        run_id=ref.run_id, status=status, family=spec.family, size=spec.size, seed=spec.seed,
        budget=spec.budget_label, budget_rule=spec.budget.rule, budget_value=spec.budget.value,
        params_total=params.total, params_non_embedding=params.non_embedding,
        tokens=spec.schedule.tokens, steps=spec.schedule.steps, batch_size=spec.schedule.batch_size,
        seq_len=spec.schedule.seq_len, lr=spec.schedule.lr, flops=spec.flops(), flop_convention_default="exact",
        epochs=final.get("epochs", 0.0), final_train_loss=final.get("final_train_loss"),
        heldout_loss_nats=final.get("heldout_loss_nats"), heldout_loss_se=final.get("heldout_loss_se"),
        heldout_bits_per_byte=final.get("heldout_bits_per_byte"),
        heldout_loss_by_position=final.get("heldout_loss_by_position", []),
        heldout_accuracy=final.get("heldout_accuracy"), accuracy_by_length=final.get("accuracy_by_length"),
        wall_time_s=final.get("wall_time_s") or 0.0, tokens_per_s=tokens_per_s, mfu=utilisation.mfu,
        mfu_kind=utilisation.kind, mfu_chip=utilisation.chip, mfu_chips=utilisation.chips,
        versions=versions(), git_sha=git_sha(),
        corpus_fingerprint=ref.fingerprint, data_source=spec.data["source"])


def mfu(spec: RunSpec, tokens_per_s: float | None) -> Utilisation:
    """Model FLOPs utilisation of the run's exact training FLOP/s on the devices it used: against
    the chip's nominal bf16 peak x its chips, else (CPU) the fraction of the cached matmul
    peak (experiments/mfu.py). The peak is measured only when it is needed and not cached."""
    if not tokens_per_s:
        return NO_MFU
    from griffin_core import counting

    platform, kind, count, processes = devices()
    measured = None
    if nominal_chip(platform, kind) is None:
        from experiments.benchmarks.limits import matmul_peak

        measured = matmul_peak()["flops_per_s"]
    flops_per_s = tokens_per_s * counting.training_flops_per_token(spec.model, spec.schedule.seq_len, "exact")
    return utilisation(flops_per_s, platform, kind, count, measured, processes)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("griffin-scaling", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def git_sha() -> str | None:
    """The source checkout's commit, if the code runs from one (an installed package has none)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
