"""How long a running sweep still needs, from what its own runs show.

The plan's estimates come from earlier runs in the store, or from a guessed fraction of the
machine's matmul peak; on a fresh machine there is neither. So the live estimate measures:
every running run's metrics rows give its seconds per step within a few steps of its start
(the first step, which compiles, is left out), and from that its remaining time and the FLOP
rate its family and size reach on this machine now. A queued run is estimated from the rate
of its own family and size, else its family's nearest size, else the plan's estimate; with
none of these the answer is "unknown", shown as "?", never 0. The sweep's remaining time is
then the makespan of giving the queued runs, largest first, to whichever slot frees first.
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
REFRESH_S = 5.0
"""How often a running run's metrics are read again."""


class SweepEstimate:
    """Remaining time of a sweep run by `launch.scheduler.Scheduler` (see the module doc)."""

    def __init__(self, store):
        self.store = store
        self._progress: dict[str, tuple[float, int, float | None]] = {}  # run id -> (read at, steps, s/step)
        self._params: dict[str, int] = {}  # "family/size" -> parameters, for the nearest-size rule

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

    def rates(self, outcomes: Iterable[Any], running: Iterable[Any]) -> dict[str, float]:
        """Exact training FLOP/s seen in this sweep: by "family/size" and by family."""
        seen: dict[str, list[float]] = {}
        for outcome in outcomes:
            report = outcome.report or {}
            wall = report.get("wall_time_s")
            if outcome.status == "SUCCESS" and wall:
                seen.setdefault(_key(outcome.run), []).append(outcome.run.flops / wall)
        for task in running:
            _, per_step = self.progress(task.run)
            if per_step:
                steps = task.run.ref.spec.schedule.steps
                seen.setdefault(_key(task.run), []).append(task.run.flops / steps / per_step)
        for run in [o.run for o in outcomes] + [t.run for t in running]:
            self._params.setdefault(_key(run), run.ref.spec.params().total)
        rates = {key: statistics.median(v) for key, v in seen.items()}
        for key, value in list(rates.items()):
            family = key.split("/")[0]
            rates.setdefault(family, value)
        return rates

    def run_seconds(self, run, rates: dict[str, float]) -> float | None:
        """A run's whole duration at this sweep's measured rates, else the plan's estimate."""
        rate = rates.get(_key(run)) or self._nearest(run, rates)
        if rate:
            return run.flops / rate + TAIL_S
        return run.est_seconds

    def remaining(self, scheduler) -> float | None:
        """Seconds until the sweep ends; None while some run's time is unknown."""
        running = list(scheduler.running.values())
        rates = self.rates(scheduler.outcomes.values(), running)
        now = time.time()
        slots = []
        for task in running:
            steps, per_step = self.progress(task.run)
            total = task.run.ref.spec.schedule.steps
            if per_step:
                slots.append(max(0.0, (total - steps) * per_step) + TAIL_S)
                continue
            whole = self.run_seconds(task.run, rates)
            if whole is None:
                return None
            slots.append(max(TAIL_S, whole - (now - task.started)))
        queued = list(scheduler.queue) + [run for _, run in scheduler.waiting]
        todo = [self.run_seconds(run, rates) for run in queued]
        if any(t is None for t in todo):
            return None
        parallel = max(1, min(scheduler.max_parallel, len(slots) + len(todo)))
        return _makespan(slots, sorted(todo, reverse=True), parallel)

    def _nearest(self, run, rates: dict[str, float]) -> float | None:
        """The rate of the run's family at the measured size nearest in parameters (log scale):
        a CPU core's utilisation rises several-fold with width, so the nearest size is the
        best guess of an unmeasured one."""
        family, params = run.ref.spec.family, run.ref.spec.params().total
        best = None
        for key, rate in rates.items():
            other = self._params.get(key)
            if key.split("/")[0] == family and other:
                distance = abs(math.log(other / params))
                if best is None or distance < best[0]:
                    best = (distance, rate)
        return best[1] if best else rates.get(family)


def _key(run) -> str:
    spec = run.ref.spec
    return f"{spec.family}/{spec.size}"


def _makespan(busy: list[float], todo: list[float], parallel: int) -> float:
    """When the last slot frees if `todo` (largest first) goes to the earliest free slot."""
    slots = sorted(busy)[:parallel] + [0.0] * max(0, parallel - len(busy))
    heapq.heapify(slots)
    for seconds in todo:
        heapq.heappush(slots, heapq.heappop(slots) + seconds)
    return max(slots) if slots else 0.0
