"""launch.eta: the live ETA of a sweep, measured from its own runs; "?" while unknown."""

from __future__ import annotations

import collections
import time
from types import SimpleNamespace

import pytest

from launch.eta import TAIL_S, SweepEstimate, _makespan
from launch.grid import expand
from launch.plan import build_plan

TINY = ["data.seq_len=16", "trainer.batch_size=2", "trainer.budget.rule=steps", "trainer.budget.value=40",
        "data.eval_sequences=2", "data.position_eval_factor=2", "data.position_eval_docs=2",
        "logger.wandb.mode=disabled"]


@pytest.fixture
def plan(tmp_path, monkeypatch):
    """Two Hawk runs of one size and one Griffin run, on an empty store and a machine whose
    matmul peak was never measured: the plan knows no time for any of them."""
    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path / "cache"))
    grid = expand([*TINY, f"store.root={tmp_path / 'store'}", "family=hawk,griffin", "size=cpu-30k",
                   "trainer.seed=0,1"])
    points = [p for p in grid.points if not ("family=griffin" in p and "trainer.seed=1" in p)]
    return build_plan("eta", grid.axes, points)


def scheduler(plan, running=(), queued=(), outcomes=(), max_parallel=2):
    return SimpleNamespace(running={i: SimpleNamespace(run=r, started=time.time() - 5.0) for i, r in enumerate(running)},
                           queue=collections.deque(queued), waiting=[], max_parallel=max_parallel,
                           outcomes={o.run.ref.run_id: o for o in outcomes})


def by_family(plan, family):
    return [r for r in plan.runs if r.ref.spec.family == family]


def test_unknown_before_any_step_then_measured_from_the_first_steps(plan):
    hawk_a, hawk_b = by_family(plan, "hawk")
    (griffin,) = by_family(plan, "griffin")
    assert all(r.est_seconds is None for r in plan.runs)  # nothing measured anywhere
    estimate = SweepEstimate(plan.store)
    assert estimate.remaining(scheduler(plan, running=[hawk_a], queued=[hawk_b, griffin])) is None  # "?", not 0
    # hawk_a's first five steps: the first includes compilation, then 0.5 s a step.
    plan.store.append_metrics(hawk_a.ref.run_id, [{"step": s, "loss": 3.0, "elapsed_s": e} for s, e in
                                                  zip(range(1, 6), (10.0, 10.5, 11.0, 11.5, 12.0))])
    estimate = SweepEstimate(plan.store)
    steps = hawk_a.ref.spec.schedule.steps
    running_left = (steps - 5) * 0.5 + TAIL_S
    hawk_whole = steps * 0.5 + TAIL_S  # same family and size: same rate
    assert estimate.remaining(scheduler(plan, running=[hawk_a], queued=[hawk_b])) == pytest.approx(
        max(running_left, hawk_whole))  # two slots: hawk_b runs beside hawk_a
    # Griffin was never measured: its family has no rate and the plan has no estimate.
    assert estimate.remaining(scheduler(plan, running=[hawk_a], queued=[hawk_b, griffin])) is None


def test_finished_runs_give_their_family_a_rate(plan):
    hawk_a, hawk_b = by_family(plan, "hawk")
    (griffin,) = by_family(plan, "griffin")
    done = SimpleNamespace(run=griffin, status="SUCCESS", report={"wall_time_s": 40.0}, seconds=45.0)
    estimate = SweepEstimate(plan.store)
    plan.store.append_metrics(hawk_a.ref.run_id, [{"step": s, "loss": 3.0, "elapsed_s": 10.0 + 0.5 * s}
                                                  for s in range(1, 6)])
    rates = estimate.rates([done], [SimpleNamespace(run=hawk_a, started=0.0)])
    assert rates["griffin/cpu-30k"] == pytest.approx(griffin.flops / 40.0)
    assert rates["hawk/cpu-30k"] == pytest.approx(hawk_a.flops / hawk_a.ref.spec.schedule.steps / 0.5)
    assert estimate.run_seconds(griffin, rates) == pytest.approx(40.0 + TAIL_S)


def test_makespan_gives_the_largest_first_to_the_earliest_free_slot():
    assert _makespan([], [], 2) == 0.0
    assert _makespan([10.0], [8.0, 5.0, 4.0], 2) == 14.0  # 8 -> the free slot (ends 8), 5 -> it (13), 4 -> the other (14)
    assert _makespan([3.0, 1.0], [10.0], 1) == 11.0  # one slot: the earliest busy one counts
