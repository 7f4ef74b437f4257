"""How long a running sweep still needs, from what its own runs show.

The plan's estimates come from earlier runs in the store, or from a guessed fraction of the
machine's matmul peak; on a fresh machine there is neither. So the live estimate measures:

- every running run's metrics rows give its seconds per step within a few steps of its start
  (the first step, which compiles, is left out), hence its remaining time and the training
  FLOP rate its family and size reach on this machine now; a finished run gives its rate
  (training FLOPs / training-loop seconds) and its overhead (the rest of its task's time:
  process, compilation, evaluations, checkpoints);
- a queued run takes overhead + FLOPs / rate, the rate from a throughput model fitted to those
  measurements: log rate linear in log parameters, one level per family and one slope shared
  by the families (a CPU core's utilisation rises with width, so a smaller model must not be
  given a larger one's rate); with one size measured the slope is 0 (the nearest size's rate);
  for a family not measured yet, the plan's estimate;
- with any run's time unknown the answer is "unknown", shown as "?", never 0. Otherwise the
  sweep's remaining time is the makespan of giving the queued runs, largest first, to
  whichever slot frees first.
"""

from __future__ import annotations

import heapq
import math
import statistics
import time
from typing import Any, Iterable

from run_store import StoreError

TAIL_S = 3.0
"""A running run's time after its last step (final evaluation, checkpoint, result)."""
DEFAULT_OVERHEAD_S = 15.0
"""A run's time outside its training steps until a finished run has shown it."""
REFRESH_S = 5.0
"""How often a running run's metrics are read again."""


class SweepEstimate:
    """Remaining time of a sweep run by `launch.scheduler.Scheduler` (see the module doc)."""

    def __init__(self, store):
        self.store = store
        self._progress: dict[str, tuple[float, int, float | None]] = {}  # run id -> (read at, steps, s/step)

    def progress(self, run) -> tuple[int, float | None]:
        """(steps done, seconds per step) of a running run, from its metrics.jsonl."""
        run_id = run.ref.run_id
        cached = self._progress.get(run_id)
        if cached and time.time() - cached[0] < REFRESH_S:
            return cached[1], cached[2]
        try:
            rows = self.store.read_metrics(run_id)
        except (StoreError, OSError):
            rows = []
        timed = [r["elapsed_s"] for r in rows if isinstance(r.get("elapsed_s"), (int, float))]
        steps = rows[-1]["step"] if rows else 0
        per_step = None
        if len(timed) >= 3:  # the first interval holds compilation: use the later ones
            gaps = [b - a for a, b in zip(timed[1:], timed[2:]) if b > a]
            per_step = statistics.median(gaps) if gaps else None
        self._progress[run_id] = (time.time(), steps, per_step)
        return steps, per_step

    def measurements(self, outcomes: Iterable[Any], running: Iterable[Any]) -> tuple[list[tuple], float]:
        """([(family, params, FLOP/s)] seen in this sweep, the median overhead per run)."""
        points, overheads = [], []
        for outcome in outcomes:
            loop = (outcome.report or {}).get("loop_s")
            if outcome.status == "SUCCESS" and loop:
                points.append((outcome.run.ref.spec.family, _params(outcome.run), outcome.run.flops / loop))
                overheads.append(max(0.0, outcome.seconds - loop))
        for task in running:
            _, per_step = self.progress(task.run)
            if per_step:
                steps = task.run.ref.spec.schedule.steps
                points.append((task.run.ref.spec.family, _params(task.run), task.run.flops / steps / per_step))
        return points, statistics.median(overheads) if overheads else DEFAULT_OVERHEAD_S

    def run_seconds(self, run, model: "RateModel", overhead: float) -> float | None:
        """A run's whole duration at this sweep's measured rates, else the plan's estimate."""
        rate = model.rate(run.ref.spec.family, _params(run))
        return run.flops / rate + overhead if rate else run.est_seconds

    def remaining(self, scheduler) -> float | None:
        """Seconds until the sweep ends; None while some run's time is unknown."""
        running = list(scheduler.running.values())
        points, overhead = self.measurements(scheduler.outcomes.values(), running)
        model = RateModel(points)
        now = time.time()
        slots = []
        for task in running:
            steps, per_step = self.progress(task.run)
            total = task.run.ref.spec.schedule.steps
            if per_step:
                slots.append(max(0.0, (total - steps) * per_step) + TAIL_S)
                continue
            whole = self.run_seconds(task.run, model, overhead)
            if whole is None:
                return None
            slots.append(max(TAIL_S, whole - (now - task.started)))
        queued = list(scheduler.queue) + [run for _, run in scheduler.waiting]
        todo = [self.run_seconds(run, model, overhead) for run in queued]
        if any(t is None for t in todo):
            return None
        parallel = max(1, min(scheduler.max_parallel, len(slots) + len(todo)))
        return _makespan(slots, sorted(todo, reverse=True), parallel)


class RateModel:
    """log(FLOP/s) = level[family] + slope * log(parameters), fitted to (family, params, rate)
    points: the slope shared by the families (pooled within-family least squares), 0 until some
    family has two sizes."""

    def __init__(self, points: Iterable[tuple[str, float, float]]):
        by_family: dict[str, list[tuple[float, float]]] = {}
        for family, params, rate in points:
            by_family.setdefault(family, []).append((math.log(params), math.log(rate)))
        centred = []
        self.centre: dict[str, tuple[float, float]] = {}
        for family, pts in by_family.items():
            mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
            self.centre[family] = (mx, my)
            centred += [(x - mx, y - my) for x, y in pts]
        sxx = sum(x * x for x, _ in centred)
        self.slope = sum(x * y for x, y in centred) / sxx if sxx > 1e-12 else 0.0

    def rate(self, family: str, params: float) -> float | None:
        if family not in self.centre:
            return None
        mx, my = self.centre[family]
        return math.exp(my + self.slope * (math.log(params) - mx))


def _params(run) -> int:
    return run.ref.spec.params().total


def _makespan(busy: list[float], todo: list[float], parallel: int) -> float:
    """When the last slot frees if `todo` (largest first) goes to the earliest free slot."""
    slots = sorted(busy)[:parallel] + [0.0] * max(0, parallel - len(busy))
    heapq.heapify(slots)
    for seconds in todo:
        heapq.heappush(slots, heapq.heappop(slots) + seconds)
    return max(slots) if slots else 0.0
