"""Train one run: the loop, top to bottom.

Everything around it (config composition, the run store's lease and status, W&B) lives in
`experiments.runner`; this module turns a validated RunSpec into trained parameters, metrics
rows and the result's figures.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections import deque
from typing import Any, Callable

import jax
import numpy as np

from experiments.programs import Programs, mesh_layout, programs, restore_state
from experiments.run_data import RunData, build_run_data
from experiments.spec import RunSpec
from griffin_core import counting
from griffin_core.checkpoint import Checkpointer
from griffin_core.optim_config import OptimSpec
from griffin_core.sharding import global_batch, make_mesh


@dataclasses.dataclass
class Outcome:
    status: str  # SUCCESS | DIVERGED
    step: int
    reason: str | None
    figures: dict[str, Any]


class DivergenceMonitor:
    """Non-finite loss, or a loss above `factor` x the median of the last `window` losses."""

    def __init__(self, factor: float, window: int, warmup: int):
        self.factor, self.warmup = factor, warmup
        self.recent: deque[float] = deque(maxlen=window)

    def check(self, step: int, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"non-finite loss {loss} at step {step}"
        if step > self.warmup and len(self.recent) == self.recent.maxlen:
            median = statistics.median(self.recent)
            if loss > self.factor * median:
                return f"loss spike at step {step}: {loss:.4g} > {self.factor:g} x median {median:.4g}"
        self.recent.append(loss)
        return None


@dataclasses.dataclass
class Prepared:
    """A run made ready to train, without writing anything (see `prepare`)."""

    data: RunData
    mesh: Any
    jitted: Programs
    evaluate: "Evaluator"
    start: int
    """The latest checkpoint's step (0: none)."""
    state: Any
    """The train state restored from it (None without one); handed over once by `train`."""


def prepare(spec: RunSpec, ckpt_dir: str, process_index: int = 0, process_count: int = 1) -> Prepared:
    """The run's data, mesh and programs, and its latest checkpoint restored, reading only: a
    bad data file (DataError) or an unreadable checkpoint (UnreadableCheckpoint) is found
    before the run is claimed, with the store as it was."""
    model, sched, trainer = spec.model, spec.schedule, spec.trainer
    data = build_run_data(spec.data, sched.batch_size, spec.seed, process_index, process_count)
    layout = mesh_layout(spec, jax.device_count())
    mesh = make_mesh(layout)
    jitted = programs(model, OptimSpec(total_steps=sched.steps, **spec.optim), trainer["microbatches"], layout, mesh)
    evaluate = Evaluator(spec, data, mesh, jitted)
    with Checkpointer(ckpt_dir, read_only=True) as checkpoints:
        start = checkpoints.latest_step() or 0
        state = restore_state(checkpoints, start, model, jitted) if start else None
    return Prepared(data, mesh, jitted, evaluate, start, state)


def train(spec: RunSpec, ckpt_dir: str, write_rows: Callable[[list[dict]], None], *,
          start_rows: Callable[[int], float] = lambda step: 0.0, progress: bool = True,
          process_index: int = 0, process_count: int = 1, prepared: Prepared | None = None) -> Outcome:
    """Train `spec` (resuming from `ckpt_dir` if it holds a checkpoint).

    write_rows: receives each step's metrics row (the run store's metrics.jsonl and W&B).
    start_rows: called once with the step training starts from (cut metrics back on resume);
      returns the training time already spent before that step (seconds).
    prepared: `prepare`'s result for this run and folder (made here if not given); a newer
      checkpoint saved since (by an earlier owner) is restored instead.
    """
    run = prepared or prepare(spec, ckpt_dir, process_index, process_count)
    with Checkpointer(ckpt_dir, async_save=jax.default_backend() != "cpu") as checkpoints:
        start = checkpoints.latest_step() or 0
        if start and (start != run.start or run.state is None):
            state = restore_state(checkpoints, start, spec.model, run.jitted)
        else:
            state = run.state if start else run.jitted.init(jax.random.PRNGKey(spec.seed))
        run.state = None  # the loop donates the state: hold no other reference to it
        return _loop(spec, run.data, run.mesh, run.jitted, run.evaluate, checkpoints, state, start, write_rows,
                     start_rows(start), progress)


def _loop(spec: RunSpec, data: RunData, mesh, jitted: Programs, evaluate: "Evaluator", checkpoints: Checkpointer,
          state, start: int, write_rows, elapsed_offset: float, progress: bool) -> Outcome:
    """Steps start+1 .. the last, with evaluations and checkpoints; the final figures."""
    model, sched, trainer = spec.model, spec.schedule, spec.trainer

    flops_per_step = counting.training_flops_per_token(model, sched.seq_len, "exact") * sched.tokens_per_step
    monitor = DivergenceMonitor(trainer["spike_factor"], trainer["spike_window"], trainer["spike_warmup"])
    bar = _Progress(progress, sched.steps, start)
    started = time.perf_counter()
    timer = Throughput(sched.tokens_per_step)
    row: dict[str, Any] = {}

    def record(step: int, metrics: dict, evaluate_now: bool) -> str | None:
        """Write step's metrics row (reading its metrics from the device); why it diverged, or None."""
        nonlocal row
        row = {"step": step, "tokens": step * sched.tokens_per_step, "flops": step * flops_per_step,
               **{k: float(v) for k, v in metrics.items()}, "tokens_per_s": timer.tick(step)}
        reason = monitor.check(step, row["loss"])
        if reason is None and evaluate_now:
            row |= evaluate.heldout(state.params)
            timer.pause()
        row["elapsed_s"] = elapsed_offset + time.perf_counter() - started
        write_rows([row])
        bar.update(step, row)
        return reason

    pending = None  # (step, metrics still on the device) of the last step queued
    for step in range(start + 1, sched.steps + 1):
        batch = global_batch(mesh, data.train_batch(step - 1), sched.batch_size)
        state, metrics = jitted.step(state, batch)
        # The previous step's row is read only now, with this step queued behind it: the host
        # prepares and queues work while the device computes, instead of waiting every step.
        if pending and (reason := record(*pending, evaluate_now=False)):
            bar.close()
            return Outcome("DIVERGED", pending[0], reason, {"final_train_loss": None})
        pending = (step, metrics)
        evaluate_now = step == sched.steps or bool(trainer["eval_every"] and step % trainer["eval_every"] == 0)
        save_now = step == sched.steps or bool(trainer["checkpoint_every"] and step % trainer["checkpoint_every"] == 0)
        if evaluate_now or save_now:  # this step's state is needed before the next step consumes it
            pending = None
            if reason := record(step, metrics, evaluate_now):
                bar.close()
                return Outcome("DIVERGED", step, reason, {"final_train_loss": None})
            if save_now:
                checkpoints.save(step, state)
                timer.pause()
    bar.close()
    checkpoints.wait()
    figures = {"final_train_loss": row.get("loss"), "tokens_per_s": timer.mean(), "wall_time_s": row.get("elapsed_s"),
               "epochs": data.epochs(sched.steps), "corpus_fingerprint": data.fingerprint,
               **evaluate.final(state.params, held=row)}
    return Outcome("SUCCESS", sched.steps, None, figures)


class Throughput:
    """Tokens per second over steps after the first (which includes compilation)."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.last: float | None = None
        self.total_time = 0.0
        self.steps = 0

    def tick(self, step: int) -> float | None:
        now = time.perf_counter()
        rate = None
        if self.last is not None:
            dt = now - self.last
            self.total_time += dt
            self.steps += 1
            rate = self.tokens_per_step / dt
        self.last = now
        return rate

    def mean(self) -> float | None:
        return self.tokens_per_step * self.steps / self.total_time if self.steps else None

    def pause(self) -> None:
        """Exclude evaluation and checkpoint time from the next interval."""
        self.last = None


class Evaluator:
    """Held-out loss (nats, bits per byte, standard error over sequences), accuracy for the
    synthetic tasks, and loss by position on unpacked long documents."""

    def __init__(self, spec: RunSpec, data: RunData, mesh, jitted: Programs):
        self.spec, self.data, self.mesh = spec, data, mesh
        self._eval, self._predict = jitted.eval, jitted.predict

    def _batch(self, batch):
        rows = next(iter(batch.values())).shape[0] * jax.process_count()
        return global_batch(self.mesh, batch, rows)

    def _local_share(self, batch):
        """This process's rows of a batch every process holds whole (long documents)."""
        n = next(iter(batch.values())).shape[0] // jax.process_count()
        lo = jax.process_index() * n
        return self._batch({k: v[lo:lo + n] for k, v in batch.items()})

    def heldout(self, params) -> dict[str, float]:
        seq_loss, seq_count, correct = [], [], []
        for batch in self.data.heldout:
            out = self._eval(params, self._batch(batch))
            seq_loss.append(to_host(out["seq_loss"]))
            seq_count.append(to_host(out["seq_count"]))
            if self.data.accuracy is not None:
                preds = local_rows(self._predict(params, self._batch(batch)))
                correct.append(self.data.accuracy(preds, batch)["token_accuracy"])
        loss_sum, count = np.concatenate(seq_loss), np.concatenate(seq_count)
        mean = float(loss_sum.sum() / count.sum())
        per_seq = loss_sum[count > 0] / count[count > 0]
        out = {"heldout_loss": mean,
               "heldout_loss_se": float(per_seq.std(ddof=1) / math.sqrt(len(per_seq))) if len(per_seq) > 1 else None}
        if self.data.bytes_per_token:
            out["heldout_bpb"] = mean / math.log(2) / self.data.bytes_per_token
        if correct:
            out["heldout_accuracy"] = float(np.mean(to_host(np.asarray(correct))))
        return out

    def loss_by_position(self, params) -> list[float]:
        docs = self.data.position_docs
        if docs is None:
            return []
        # Chunks of whole documents, padded with masked-out rows to a multiple of the mesh's batch
        # axes (which every process shares equally): a handful of long documents must still
        # split over 8 devices.
        shards = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        step = max(self.spec.schedule.batch_size // shards, 1) * shards
        num_docs, length = docs["tokens"].shape
        sums, counts = np.zeros(length), np.zeros(length)
        for lo in range(0, num_docs, step):
            chunk = pad_rows({k: v[lo:lo + step] for k, v in docs.items()}, step)
            out = self._eval(params, self._local_share(chunk))
            sums += to_host(out["pos_loss"])
            counts += to_host(out["pos_count"])
        return (sums / np.maximum(counts, 1)).tolist()

    def length_extrapolation(self, params) -> dict[str, float]:
        out = {}
        for length in self.spec.data.get("task_eval_lengths") or []:
            batch = self.data.length_eval(length)
            preds = local_rows(self._predict(params, self._batch(batch)))
            accuracy = self.data.accuracy(preds, batch)["token_accuracy"]
            out[str(length)] = float(np.mean(to_host(np.asarray([accuracy]))))
        return out

    def final(self, params, held: dict[str, Any] | None = None) -> dict[str, Any]:
        """The result's figures. `held`: the last step's held-out evaluation, if it had one (the
        same parameters: not computed twice)."""
        held = held if held and "heldout_loss" in held else self.heldout(params)
        figures = {"heldout_loss_nats": held["heldout_loss"], "heldout_loss_se": held["heldout_loss_se"],
                   "heldout_bits_per_byte": held.get("heldout_bpb"),
                   "heldout_loss_by_position": self.loss_by_position(params)}
        if "heldout_accuracy" in held:
            figures["heldout_accuracy"] = held["heldout_accuracy"]
            figures["accuracy_by_length"] = self.length_extrapolation(params)
        return figures


def pad_rows(batch: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """`batch` grown to `rows` rows with zeros; the zero `loss_mask` keeps padding out of every sum."""
    have = next(iter(batch.values())).shape[0]
    return {k: np.concatenate([v, np.zeros((rows - have,) + v.shape[1:], v.dtype)]) if rows > have else v
            for k, v in batch.items()}


def to_host(x) -> np.ndarray:
    """A (possibly multi-process) array, or per-process NumPy values, gathered on every host."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def local_rows(x: jax.Array) -> np.ndarray:
    """This process's rows of an array split over the mesh's 'data' axis, in order."""
    if jax.process_count() == 1:
        return np.asarray(x)
    shards = {s.index[0].start or 0: np.asarray(s.data) for s in x.addressable_shards}
    return np.concatenate([shards[k] for k in sorted(shards)])


class _Progress:
    """A rich progress bar with loss, tokens/s and ETA; silent when disabled (workers)."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.enabled = enabled and jax.process_index() == 0
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
                                 TimeRemainingColumn())
        self.progress.start()
        self.task = self.progress.add_task("train", total=total, completed=start, loss="-", rate="-")

    def update(self, step: int, row: dict[str, Any]) -> None:
        if self.enabled:
            rate = row.get("tokens_per_s")
            self.progress.update(self.task, completed=step, loss=f"{row['loss']:.4f}",
                                 rate=f"{rate:,.0f}" if rate else "-")

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
            self.enabled = False

