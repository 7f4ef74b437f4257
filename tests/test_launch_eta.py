"""launch.eta: the live ETA of a sweep, measured from its own runs; "?" while unknown."""

from __future__ import annotations

import collections
import math
import time
from types import SimpleNamespace

import pytest

from launch.eta import DEFAULT_OVERHEAD_S, TAIL_S, RateModel, SweepEstimate, _makespan
from launch.grid import expand
from launch.plan import build_plan

TINY = ["data.seq_len=16", "trainer.batch_size=2", "trainer.budget.rule=steps", "trainer.budget.value=40",
        "data.eval_sequences=2", "data.position_eval_factor=2", "data.position_eval_docs=2",
        "logger.wandb.mode=disabled"]


@pytest.fixture
def plan(tmp_path, monkeypatch):
    """Two Hawk runs of one size, a larger Hawk and one Griffin run, on an empty store and a
    machine whose matmul peak was never measured: the plan knows no time for any of them."""
    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path / "cache"))
    grid = expand([*TINY, f"store.root={tmp_path / 'store'}", "family=hawk,griffin", "size=cpu-30k,cpu-80k",
                   "trainer.seed=0,1"])
    keep = {("hawk", "cpu-30k", 0), ("hawk", "cpu-30k", 1), ("hawk", "cpu-80k", 0), ("griffin", "cpu-30k", 0)}
    points = [p for p in grid.points
              if (p[-3].split("=")[1], p[-2].split("=")[1], int(p[-1].split("=")[1])) in keep]
    return build_plan("eta", grid.axes, points)


def runs(plan, family, size):
    return [r for r in plan.runs if r.ref.spec.family == family and r.ref.spec.size == size]


def scheduler(running=(), queued=(), outcomes=(), max_parallel=2):
    return SimpleNamespace(running={i: SimpleNamespace(run=r, started=time.time() - 5.0) for i, r in enumerate(running)},
                           queue=collections.deque(queued), waiting=[], max_parallel=max_parallel,
                           outcomes={o.run.ref.run_id: o for o in outcomes})


def steps_of(store, run, gaps):
    """Metrics rows of `run` whose step times are `gaps` (the first step compiles: 10 s)."""
    elapsed, rows = 10.0, []
    for step, gap in enumerate([10.0, *gaps], start=1):
        elapsed += gap if step > 1 else 0.0
        rows.append({"step": step, "loss": 3.0, "elapsed_s": elapsed})
    store.append_metrics(run.ref.run_id, rows)


def test_unknown_before_any_step_then_measured_from_the_first_steps(plan):
    hawk_a, hawk_b = runs(plan, "hawk", "cpu-30k")
    (griffin,) = runs(plan, "griffin", "cpu-30k")
    assert all(r.est_seconds is None for r in plan.runs)  # nothing measured anywhere
    assert SweepEstimate(plan.store).remaining(scheduler(running=[hawk_a], queued=[hawk_b, griffin])) is None
    steps_of(plan.store, hawk_a, [0.5] * 4)  # five steps: then 0.5 s a step
    estimate = SweepEstimate(plan.store)
    steps = hawk_a.ref.spec.schedule.steps
    running_left = (steps - 5) * 0.5 + TAIL_S
    hawk_whole = steps * 0.5 + DEFAULT_OVERHEAD_S  # same family and size: same rate
    assert estimate.remaining(scheduler(running=[hawk_a], queued=[hawk_b])) == pytest.approx(
        max(running_left, hawk_whole))  # two slots: hawk_b runs beside hawk_a
    # Griffin was never measured: its family has no rate and the plan has no estimate: "?".
    assert estimate.remaining(scheduler(running=[hawk_a], queued=[hawk_b, griffin])) is None


def test_finished_runs_give_rates_and_the_overhead(plan):
    (griffin,) = runs(plan, "griffin", "cpu-30k")
    done = SimpleNamespace(run=griffin, status="SUCCESS", report={"loop_s": 40.0}, seconds=52.0)
    points, overhead = SweepEstimate(plan.store).measurements([done], [])
    assert overhead == 12.0 and points == [("griffin", griffin.ref.spec.params().total, griffin.flops / 40.0)]
    assert SweepEstimate(plan.store).run_seconds(griffin, RateModel(points), overhead) == pytest.approx(52.0)


def test_smaller_models_get_the_lower_rate_the_measured_sizes_imply():
    """Rates measured at two sizes of one family give the slope every family then uses."""
    model = RateModel([("hawk", 1e5, 10e9), ("hawk", 4e5, 20e9), ("mqa", 4e5, 8e9)])
    assert model.slope == pytest.approx(0.5)
    assert model.rate("hawk", 1e5) == pytest.approx(10e9) and model.rate("hawk", 1.6e6) == pytest.approx(40e9)
    assert model.rate("mqa", 1e5) == pytest.approx(4e9)  # its own level, the shared slope
    assert model.rate("griffin", 1e5) is None
    assert RateModel([("hawk", 1e5, 10e9)]).rate("hawk", 1e6) == pytest.approx(10e9)  # one size: no slope
    assert math.isclose(RateModel([]).slope, 0.0)


def test_makespan_gives_the_largest_first_to_the_earliest_free_slot():
    assert _makespan([], [], 2) == 0.0
    assert _makespan([10.0], [8.0, 5.0, 4.0], 2) == 14.0  # 8 -> the free slot (ends 8), 5 -> it (13), 4 -> the other (14)
    assert _makespan([3.0, 1.0], [10.0], 1) == 11.0  # one slot: the earliest busy one counts
