"""The sweep plan (launch/plan.py), no Ray: a preset's per-size `size_overrides` yield to the
command line (and the plan says so), and every point's mesh is checked against the devices its
run will have before anything starts."""

from __future__ import annotations

import pytest

from experiments.configuration import UsageError, compose, hydra_context, to_dict
from experiments.runner import resolve
from launch.cli import sweep_main
from launch.grid import expand
from launch.plan import build_plan, devices_per_run, preset_size_overrides


def paper_plan(tmp_path, *overrides):
    grid = expand(["experiment=scaling_paper", f"store.root={tmp_path}", *overrides])
    return build_plan("paper", grid.axes, grid.points, require_data=False)


def test_the_command_line_wins_over_the_presets_size_overrides_and_the_plan_says_so(tmp_path, capsys):
    plan = paper_plan(tmp_path, "family=griffin", "size=3B,7B", "trainer.mesh.tensor=2", "trainer.microbatches=4")
    assert len(plan.runs) == 2
    for run in plan.runs:
        trainer = run.config["trainer"]
        assert trainer["mesh"]["tensor"] == 2 and trainer["microbatches"] == 4
        assert trainer["strategy"] == "fsdp_tp"  # a key the command line did not give: the preset's
        assert run.tpu["mesh"]["tensor"] == 2
    assert plan.replaced == {("3B", "trainer.mesh.tensor"): ("4", ["2"]), ("3B", "trainer.microbatches"): ("8", ["4"]),
                             ("7B", "trainer.mesh.tensor"): ("8", ["2"]), ("7B", "trainer.microbatches"): ("8", ["4"])}
    assert sweep_main(["experiment=scaling_paper", "family=griffin", "size=3B", "trainer.mesh.tensor=2",
                       f"store.root={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "size 3B trainer.mesh.tensor: the command line's 2 replaces the preset's 4 (experiment.size_overrides)" in out
    assert not any(tmp_path.iterdir())


def test_choosing_a_config_group_keeps_the_presets_values_inside_it(tmp_path):
    """`experiment=scaling_paper launcher=tpu` (the README's command) keeps each size's slice."""
    plan = paper_plan(tmp_path, "family=hawk", "size=100M,14B", "launcher=tpu", "data=tokens")
    assert plan.replaced == {}
    assert sorted(r.tpu["pod_type"] for r in plan.runs) == ["v4-1024", "v4-32"]


def test_an_axis_of_the_command_line_replaces_a_size_override_at_every_point(tmp_path):
    plan = paper_plan(tmp_path, "family=hawk", "size=100M", "trainer.microbatches=16,32")
    # Gradient accumulation is not in the run id: both points are one run, planned once.
    assert [r.config["trainer"]["microbatches"] for r in plan.runs] == [16]
    assert plan.replaced == {("100M", "trainer.microbatches"): ("8", ["16", "32"])}


def test_the_unmodified_preset_plans_its_size_overrides(tmp_path):
    """Each run is the run of its point with the preset's size_overrides given explicitly (the
    run ids did not change with the order of composition)."""
    plan = paper_plan(tmp_path, "family=hawk")
    assert plan.replaced == {}
    sizes = to_dict(compose(["experiment=scaling_paper"]))["experiment"]["size_overrides"]
    with hydra_context():
        for run in plan.runs:
            explicit = [f"{k}={v}" for k, v in run.point.items()] + sizes[run.ref.spec.size]
            cfg = to_dict(compose(["experiment=scaling_paper", f"store.root={tmp_path}", "family=hawk", *explicit]))
            assert resolve(cfg, require_data=False).run_id == run.ref.run_id
    assert len(plan.runs) == 7 and {r.tpu["pod_type"] for r in plan.runs} == {"v4-32", "v4-64", "v4-128", "v4-256",
                                                                              "v4-512", "v4-1024"}


def test_size_override_items_give_way_to_the_key_or_a_parent_and_go_first_under_a_child():
    extra = ["launcher.tpu_type=v4-32", "trainer.mesh.tensor=4", "trainer.microbatches=8"]
    kept, taken = preset_size_overrides(extra, ["family=hawk", "trainer.mesh={data:2}", "+trainer.microbatches=2"])
    assert kept == ["launcher.tpu_type=v4-32"]
    assert taken == {"trainer.mesh.tensor": ["4", "trainer.mesh={data:2}"], "trainer.microbatches": ["8", "2"]}
    kept, taken = preset_size_overrides(["trainer.mesh={tensor:4}"], ["trainer.mesh.tensor=2"])
    assert kept == ["trainer.mesh={tensor:4}"] and taken == {"trainer.mesh": ["{tensor:4}", "trainer.mesh.tensor=2"]}


@pytest.mark.parametrize("overrides,match", [
    (["family=griffin", "size=100M", "trainer.strategy=zero3"], r"trainer\.strategy='zero3' is unknown"),
    (["family=griffin", "size=3B", "trainer.mesh.tensor=3"], r"trainer\.mesh\.tensor=3 does not divide"),
    (["family=mamba2", "size=7B", "trainer.mesh.tensor=3"], r"trainer\.mesh\.tensor=3 does not divide model\.num_heads"),
    (["family=hawk", "size=100M", "launcher.tpu_type=v4-8", "trainer.microbatches=3", "trainer.strategy=dp"],
     r"trainer\.microbatches=3 must divide"),
    (["family=hawk", "size=100M", "trainer.mesh.data=3"], r"trainer\.mesh: .* do not divide the 16 devices \(each run "
                                                          r"of this launcher has 16 chips"),
])
def test_bad_values_the_command_line_gives_a_paper_size_are_rejected(tmp_path, overrides, match):
    with pytest.raises(UsageError, match=match):
        paper_plan(tmp_path, *overrides)


def test_a_cpu_runs_mesh_is_checked_against_its_one_device_at_every_point(tmp_path):
    def plan(*overrides):
        grid = expand(["experiment=smoke_cpu", "family=hawk", "size=cpu-30k", f"store.root={tmp_path}", *overrides])
        return build_plan("cpu", grid.axes, grid.points, require_data=False)

    assert len(plan("trainer.mesh.data=1").runs) == 1
    with pytest.raises(UsageError, match=r"grid point trainer\.mesh\.data=2: trainer\.mesh: data x fsdp x "
                                         r"tensor = .* is not the device count 1 \(each run of this launcher has 1 CPU"):
        plan("trainer.mesh.data=1,2")
    with pytest.raises(UsageError, match=r"trainer\.mesh\.tensor=2 does not divide"):
        plan("trainer.strategy=fsdp_tp", "trainer.mesh.tensor=2", "launcher.gpus_per_run=2", "size.num_heads=3",
             "size.width=24")
    assert len(plan("trainer.mesh.data=2", "launcher.gpus_per_run=2").runs) == 1  # two GPUs: two devices
    assert not any(tmp_path.iterdir())


def test_devices_per_run():
    assert devices_per_run({"kind": "local", "gpus_per_run": 0}) == 1
    assert devices_per_run({"kind": "cluster", "gpus_per_run": 4}) == 4
    assert devices_per_run({"kind": "tpu", "tpu_type": "v4-32", "num_slices": 1, "gpus_per_run": 0}) == 16
    assert devices_per_run({"kind": "tpu", "tpu_type": "v4-16", "num_slices": 2, "gpus_per_run": 0}) == 16


def test_a_multislice_run_is_planned_over_every_slices_chips(tmp_path):
    """Two v4-32 slices: the mesh, the memory per device and the chip-hours cover 32 chips, as
    the run's jax.distributed mesh will (launch/tpu.py)."""
    one, two = (paper_plan(tmp_path, "family=griffin", "size=100M", f"launcher.num_slices={n}").runs[0].tpu
                for n in (1, 2))
    assert (one["chips"], two["chips"]) == (16, 32)
    assert one["mesh"] == {"data": 1, "fsdp": 16, "tensor": 1} and two["mesh"] == {"data": 1, "fsdp": 32, "tensor": 1}
    assert two["hours"] == pytest.approx(one["hours"] / 2) and two["chip_hours"] == pytest.approx(one["chip_hours"])
    assert two["memory"]["params"] == pytest.approx(one["memory"]["params"] / 2)


@pytest.mark.parametrize("setting, environment, expected", [
    ("launcher.compile_cache={tmp}/mine", "{tmp}/env", "{tmp}/mine"),  # the launcher's setting first
    (None, "{tmp}/env", "{tmp}/env"),  # then the one JAX itself would read
    (None, None, "{tmp}/store/jax-cache"),  # then one beside a local store's runs
])
def test_the_sweeps_compilation_cache(tmp_path, monkeypatch, setting, environment, expected):
    from launch.plan import build_plan
    from launch.scheduler import Scheduler

    fill = lambda text: text.format(tmp=tmp_path)  # noqa: E731
    if environment:
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", fill(environment))
    else:
        monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    overrides = ["family=hawk", "size=cpu-30k", f"store.root={tmp_path / 'store'}", "logger.wandb.mode=disabled"]
    plan = build_plan("cache", {}, [overrides + ([fill(setting)] if setting else [])])
    env = Scheduler(plan).env
    assert env["JAX_COMPILATION_CACHE_DIR"] == fill(expected)
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
