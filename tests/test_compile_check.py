"""`griffin-sweep ... --dry-run --compile --plan-json`: the paper preset's sharded step compiled
for a simulated mesh of its chips, XLA's memory beside the plan's, and a run that does not fit
rejected by name."""

from __future__ import annotations

import json

from launch.cli import sweep_main


def test_a_paper_run_compiles_for_its_slice_and_is_written_to_plan_json(tmp_path, capsys):
    path = tmp_path / "PLAN.json"
    code = sweep_main(["experiment=scaling_paper", "family=griffin", "size=100M,3B", "--dry-run", "--compile",
                       "--plan-json", str(path), f"store.root={tmp_path / 'store'}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    runs = {r["size"]: r for r in json.loads(path.read_text())}
    # The planner's formula within 15% of XLA's figure, under fsdp and under fsdp_tp (every
    # paper run: docs/launching.md).
    for r in runs.values():
        assert abs(r["planned_bytes_per_device"] / r["compiled_bytes_per_device"] - 1) < 0.15, r
    assert runs["3B"]["mesh"] == {"data": 1, "fsdp": 32, "tensor": 4} and runs["3B"]["strategy"] == "fsdp_tp"
    run = runs["100M"]
    assert run["family"] == "griffin" and run["size"] == "100M" and run["chips"] == 16
    assert run["mesh"] == {"data": 1, "fsdp": 16, "tensor": 1} and run["strategy"] == "fsdp"
    assert run["error"] is None and run["compile_seconds"] > 0
    assert run["replicated_state_bytes"] == 0  # every array of Griffin 100M divides 16 devices
    compiled, planned, hbm = run["compiled_bytes_per_device"], run["planned_bytes_per_device"], run["hbm_bytes_per_chip"]
    assert 0 < compiled < hbm and 0 < planned < hbm
    parts = run["compiled_breakdown"]
    assert compiled == parts["arguments"] + parts["outputs"] + parts["temporaries"] - parts["aliased"]
    # The train state is donated: its buffers are written in place (aliased), not twice.
    assert parts["aliased"] > 0.9 * parts["outputs"]
    assert "compiled/device" in out.out and "GiB" in out.out
    assert not (tmp_path / "store").exists()  # a dry run writes nothing to the store


def test_a_run_whose_compiled_step_does_not_fit_is_rejected(tmp_path, capsys):
    # MQA 14B replicated (dp) on the 4 chips of a v4-8: parameters and Adam state alone are
    # 16 bytes per parameter on every chip.
    code = sweep_main(["experiment=smoke_cpu", "family=mqa", "size=14B", "launcher=tpu", "launcher.tpu_type=v4-8",
                       "model.scan_layers=true", "trainer.batch_size=4", "data.seq_len=128", "--dry-run", "--compile",
                       f"store.root={tmp_path / 'store'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("griffin-sweep: error: 1 run(s) do not fit: mqa-14B-"), err
    assert "GiB compiled per device > 32 GiB HBM" in err[0]
