"""griffin-sweep on a real Ray cluster on loopback (`ray.cluster_utils.Cluster`, one per
module): plans, failure isolation and retries, skipping what succeeded, a killed and restarted
driver, two drivers at once, and a node lost mid-sweep. Every run trains the same tiny Hawk
(seeds differ), so after the first compile the shared JAX cache makes runs quick."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal

import faults
import pytest

from run_store import RunStore, read_metrics
from launch.cli import sweep_main
from launch.grid import expand

from sweep_helpers import TINY, args, driver as _driver, ray_cluster, wait_for as _wait


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from ray_cluster(1, os.environ["JAX_COMPILATION_CACHE_DIR"])  # the suite's (conftest.py)


def claims(store: RunStore, run_id: str) -> int:
    """How many times a worker took this run's lease to train it."""
    log = pathlib.Path(store.run_dir(run_id)) / "logs" / "worker.log"
    return log.read_text().count(f"run {run_id}: claimed") if log.exists() else 0


def test_grid_axes_from_preset_and_command_line():
    g = expand(["experiment=smoke_cpu", "size=glob(cpu-3*)", "trainer.seed=range(0,2)"])
    axes, grid = g.axes, g.points
    assert axes["family"] == ["mqa", "hawk", "griffin"]  # from the preset
    assert axes["size"] == ["cpu-300k", "cpu-30k"]  # the command line replaces the preset's axis
    assert len(grid) == 3 * 2 * 2 and grid[0][-3:] == ["family=mqa", "size=cpu-300k", "trainer.seed=0"]


def test_bad_point_rejects_the_whole_grid(tmp_path, capsys):
    code = sweep_main([*TINY, f"store.root={tmp_path}", "size.num_heads=2,5", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "size.num_heads=5" in err and "num_heads=5" in err and "divide width=24" in err
    assert not any(tmp_path.iterdir())


def test_dry_run_plans_largest_first_and_writes_nothing(tmp_path, capsys):
    code = sweep_main([*TINY, f"store.root={tmp_path}", "size=cpu-30k,cpu-50k", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.index("hawk-cpu-50k") < out.index("hawk-cpu-30k")
    assert "2 to run" in out and not any(tmp_path.iterdir())


def test_failure_is_isolated_retried_and_rerun_skips_successes(cluster, tmp_path, capsys):
    faults.write(tmp_path, fail_seed=1)
    code = sweep_main(args(cluster, tmp_path, "trainer.seed=0,1,2", "launcher.failure_retries=1"))
    out = capsys.readouterr().out
    store = RunStore(tmp_path)
    states = {r: store.status(r).state for r in store.list_runs()}
    assert code == 1 and sorted(states.values()) == ["FAILED", "SUCCESS", "SUCCESS"]
    (failed,) = [r for r, s in states.items() if s == "FAILED"]
    assert claims(store, failed) == 2  # one retry for a real error
    assert "failing on purpose" in out and "worker.log" in out
    manifest = json.loads((tmp_path / "sweeps" / "default.json").read_text())
    assert sorted(manifest["runs"]) == sorted(states)
    # Fixed: the rerun trains only the failed point; the others are skipped, not run again.
    faults.write(tmp_path)
    assert sweep_main(args(cluster, tmp_path, "trainer.seed=0,1,2")) == 0
    assert all(store.status(r).state == "SUCCESS" for r in states)
    assert all(claims(store, r) == (3 if r == failed else 1) for r in states)


def claimant_pids(store: RunStore) -> list[int]:
    """The worker process of every claim in the store's logs, in no particular order."""
    pids = []
    for run_id in store.list_runs():
        log = pathlib.Path(store.run_dir(run_id)) / "logs" / "worker.log"
        pids += [int(p) for p in re.findall(rf"run {run_id}: claimed by \S+:(\d+)", log.read_text())]
    return pids


def test_cpu_runs_share_worker_processes_unless_told_not_to(cluster, tmp_path):
    # One CPU: the runs go one after another, and each finds the previous run's process idle.
    assert sweep_main(args(cluster, tmp_path / "reused", "trainer.seed=0,1,2")) == 0
    reused = claimant_pids(RunStore(tmp_path / "reused"))
    assert len(reused) == 3 and len(set(reused)) == 1
    assert sweep_main(args(cluster, tmp_path / "fresh", "trainer.seed=0,1", "launcher.reuse_workers=false")) == 0
    fresh = claimant_pids(RunStore(tmp_path / "fresh"))
    assert len(fresh) == 2 and len(set(fresh)) == 2 and not set(fresh) & set(reused)


def test_only_cpu_runs_reuse_worker_processes():
    from launch.scheduler import reuses_workers

    cpu = {"kind": "local", "reuse_workers": True, "gpus_per_run": 0}
    assert reuses_workers(cpu)
    assert not reuses_workers(cpu | {"reuse_workers": False})
    assert not reuses_workers(cpu | {"gpus_per_run": 1})  # the process keeps the GPU it initialised
    assert not reuses_workers(cpu | {"kind": "tpu"})


def test_pinning_a_reused_worker_moves_its_existing_threads(tmp_path):
    """XLA's thread pool outlives a run: re-pinning must move every thread, not only the caller."""
    import threading

    from launch.worker import pin_process

    original = os.sched_getaffinity(0)
    started, stop = threading.Event(), threading.Event()
    tid = []

    def pool_thread():
        tid.append(threading.get_native_id())
        started.set()
        stop.wait(30)

    thread = threading.Thread(target=pool_thread)
    thread.start()
    started.wait(10)
    core = min(original)
    try:
        pin_process([core])
        assert os.sched_getaffinity(tid[0]) == {core} and os.sched_getaffinity(0) == {core}
    finally:
        stop.set()
        thread.join()
        os.sched_setaffinity(0, original)


def test_run_output_goes_to_its_log_and_back(tmp_path, capfd):
    from launch.worker import output_to

    os.write(1, b"before\n")
    with output_to(str(tmp_path / "logs" / "worker.log")):
        os.write(1, b"during run\n")
        os.write(2, b"xla says\n")
    os.write(1, b"after\n")
    assert (tmp_path / "logs" / "worker.log").read_text() == "during run\nxla says\n"
    out = capfd.readouterr().out
    assert "before" in out and "after" in out and "during" not in out


def test_killed_driver_restarts_without_rerunning_successes(cluster, tmp_path):
    faults.write(tmp_path, stall_after_step=3)  # every run stalls after step 3 ...
    first = _driver(cluster, tmp_path, "trainer.seed=0,1", "launcher.max_parallel=1", "trainer.budget.value=6")
    store = RunStore(tmp_path)
    runs_started = lambda: [r for r in store.list_runs() if read_metrics(store.run_dir(r))]  # noqa: E731
    _wait(lambda: runs_started() and read_metrics(store.run_dir(runs_started()[0]))[-1]["step"] >= 3)
    os.killpg(first.pid, signal.SIGKILL)  # ... so the driver dies with a run half done
    first.wait()
    (interrupted,) = runs_started()
    assert store.status(interrupted).state == "RUNNING"
    faults.write(tmp_path)
    second = _driver(cluster, tmp_path, "trainer.seed=0,1", "launcher.max_parallel=1", "trainer.budget.value=6")
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    assert len(store.list_runs()) == 2
    for run_id in store.list_runs():
        assert store.status(run_id).state == "SUCCESS"
        assert [r["step"] for r in read_metrics(store.run_dir(run_id))] == list(range(1, 7))
    assert claims(store, interrupted) == 2  # resumed once, from its step-2 checkpoint
    # A third driver finds everything done and runs nothing.
    third = _driver(cluster, tmp_path, "trainer.seed=0,1", "trainer.budget.value=6")
    out, _ = third.communicate(timeout=120)
    assert third.returncode == 0 and out.count("SKIPPED") == 2
    assert claims(store, interrupted) == 2


def test_two_drivers_run_each_point_once(cluster, tmp_path):
    drivers = [_driver(cluster, tmp_path, "trainer.seed=0,1,2") for _ in range(2)]
    for d in drivers:
        out, _ = d.communicate(timeout=300)
        assert d.returncode == 0, out
    store = RunStore(tmp_path)
    assert len(store.list_runs()) == 3
    for run_id in store.list_runs():
        assert store.status(run_id).state == "SUCCESS"
        assert claims(store, run_id) == 1
        assert [r["step"] for r in read_metrics(store.run_dir(run_id))] == list(range(1, 7))


def test_node_lost_mid_sweep_is_retried_elsewhere(cluster, tmp_path):
    node = cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
    cluster.wait_for_nodes()
    # 40 steps of ~0.3 s: the run on the new node starts a worker process (seconds) while the
    # other, on a warm worker with cached programs, is already training; both must overlap.
    faults.write(tmp_path, step_sleep=0.3)
    driver = _driver(cluster, tmp_path, "trainer.seed=0,1", "trainer.budget.value=40", "trainer.checkpoint_every=5")
    store = RunStore(tmp_path)
    progressing = lambda: [r for r in store.list_runs() if store.status(r).state == "RUNNING"  # noqa: E731
                           and (read_metrics(store.run_dir(r)) or [{"step": 0}])[-1]["step"] >= 6]
    _wait(lambda: len(progressing()) == 2)
    cluster.remove_node(node)  # one of the two runs was placed there and dies with it
    out, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, out
    # Retried on the preemption budget, never on the failure budget. (On a loaded machine Ray
    # may lose more than the removed node's worker, so the count of retries is not pinned.)
    assert re.search(r"\b[1-9]\d*p/0e\b", out) and not re.search(r"p/[1-9]\d*e\b", out), out
    for run_id in store.list_runs():
        assert store.status(run_id).state == "SUCCESS"
        assert [r["step"] for r in read_metrics(store.run_dir(run_id))] == list(range(1, 41))
    assert max(claims(store, r) for r in store.list_runs()) >= 2


def test_every_experiment_preset_passes_its_dry_run(tmp_path, capsys):
    import conf

    presets = sorted(p.stem for p in (pathlib.Path(conf.__file__).parent / "experiment").glob("*.yaml"))
    assert {"scaling_cpu", "scaling_paper", "isoflop_cpu", "seeds_cpu", "lr_sweep_cpu"} <= set(presets)
    for preset in presets:
        assert sweep_main([f"experiment={preset}", f"store.root={tmp_path}", "--dry-run"]) == 0, preset
    out = capsys.readouterr().out
    assert "chip-hours" in out and "GiB" in out  # the TPU plan of scaling_paper
    assert not any(tmp_path.iterdir())


def test_sweep_benchmark_reports_overhead_and_busy_fraction(cluster, tmp_path):
    """`griffin-bench sweep` end to end on the session's Ray (no figure is checked). The
    learning-rate sweep only: the seeds sweep differs in its axis alone (checked below)."""
    from experiments import bench
    from launch.sweep_bench import _axes

    tiny = [f"--override={o}" for o in ("data.seq_len=16", "trainer.batch_size=2", "data.eval_sequences=2",
                                        "data.position_eval_docs=2")]
    result = bench.run(["sweep", "--runs", "2", "--steps", "3", "--sweeps", "learning_rates", "--root", str(tmp_path),
                        *tiny, "--json", str(tmp_path / "sweep.json")])
    (sweep,) = result["sweeps"].values()
    assert len(sweep["runs"]) == 2 and all(r["status"] == "SUCCESS" for r in sweep["runs"])
    for r in sweep["runs"]:
        assert 0 < r["loop_s"] < r["task_s"] and r["overhead_s"] == pytest.approx(r["task_s"] - r["loop_s"])
        assert r["cpu_s"] > 0 and r["rss_mb"] > 0
    assert 0 < sweep["busy_fraction"] and sweep["wall_s"] >= max(r["task_s"] for r in sweep["runs"])
    assert len({r["run"] for r in sweep["runs"]}) == 2  # two grid points, not one run twice
    assert json.loads((tmp_path / "sweep.json").read_text())["command"] == "sweep"
    # The warm-up pass compiles what the measured pass runs: every rate; for seeds, any seed.
    assert _axes("learning_rates", 3, True, 1)[0] == _axes("learning_rates", 3, False, 1)[0] == \
        "optim.lr_multiplier=1.00,1.01,1.02"
    assert _axes("seeds", 3, True, 2) == ["trainer.seed=100,101"] and _axes("seeds", 3, False, 2) == ["trainer.seed=0,1,2"]
    with pytest.raises(SystemExit) as exit_:
        bench.run(["sweep", "--sweeps", "sizes", "--root", str(tmp_path / "none")])
    assert exit_.value.code == 2 and not (tmp_path / "none").exists()
    import ray

    assert ray.is_initialized()  # the benchmark left the session's Ray running


def test_time_estimates_use_the_cached_peak_of_a_runs_cores(tmp_path, monkeypatch):
    from launch import plan

    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path))
    assert plan.cached_matmul_peak(1) is None  # nothing measured: no estimate rather than a guess
    entries = {"a": {"threads": 2, "flops_per_s": 100e9}, "b": {"threads": 4, "flops_per_s": 120e9}}
    (tmp_path / "limits.json").write_text(json.dumps({"matmul_peak": entries}))
    assert plan.cached_matmul_peak(2) == 100e9  # measured with the run's thread count
    assert plan.cached_matmul_peak(1) == 50e9  # else the best per-thread rate, scaled
    assert plan.cached_matmul_peak(3) == 150e9
    (tmp_path / "limits.json").write_text("{not json")
    assert plan.cached_matmul_peak(1) is None


def test_time_estimates_prefer_the_runs_own_family_and_size():
    """A narrow CPU model runs at a fraction of a wide one's utilisation: a family's median rate
    would misjudge both, so measured runs of the same family and size come first."""
    from types import SimpleNamespace

    from launch import plan

    def result(family, size, flops_per_s, overhead=2.0):
        tokens, tokens_per_s = 1000, 100.0  # 10 s of training
        return SimpleNamespace(family=family, size=size, status="SUCCESS", tokens=tokens, tokens_per_s=tokens_per_s,
                               flops={"exact": flops_per_s * tokens / tokens_per_s}, wall_time_s=10.0 + overhead)

    results = {"a": result("hawk", "cpu-30k", 5e9), "b": result("hawk", "cpu-300k", 20e9),
               "c": result("hawk", "cpu-300k", 30e9), "d": result("mqa", "cpu-30k", 4e9)}
    store = SimpleNamespace(list_runs=lambda: list(results), read_result=results.get)
    rates = plan.measured_rates(store)
    assert rates["hawk/cpu-30k"] == 5e9 and rates["hawk/cpu-300k"] == 25e9 and rates["hawk"] == 20e9
    assert rates["overhead"] == 2.0

    def spec(family, size):
        return SimpleNamespace(family=family, size=size, flops=lambda: {"exact": 1e11})

    assert plan.estimate_seconds(spec("hawk", "cpu-30k"), rates) == pytest.approx(1e11 / 5e9 + 2.0)
    assert plan.estimate_seconds(spec("hawk", "cpu-80k"), rates) == pytest.approx(1e11 / 20e9 + 2.0)  # family
    assert plan.estimate_seconds(spec("griffin", "cpu-80k"), rates) == pytest.approx(1e11 / rates["*"] + 2.0)



def test_a_command_line_value_replaces_the_presets_axis():
    """`griffin-sweep experiment=smoke_cpu family=hawk` plans Hawk only, and says so."""
    grid = expand(["experiment=smoke_cpu", "family=hawk"])
    assert "family" not in grid.axes and all("family=hawk" in p for p in grid.points)
    assert grid.replaced == {"family": (["mqa", "hawk", "griffin"], ["hawk"])}
    several = expand(["experiment=smoke_cpu", "family=hawk,griffin"])
    assert several.axes["family"] == ["hawk", "griffin"]
    assert several.replaced == {"family": (["mqa", "hawk", "griffin"], ["hawk", "griffin"])}
