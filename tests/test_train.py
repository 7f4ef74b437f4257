"""One training run end to end through `griffin-train`: the run store's files, skipping a
finished run, divergence, and one-line errors with nothing written."""

from __future__ import annotations

import json
import math
import os
import pathlib

import pytest

from experiments.cli import train_main
from run_store import RunStore, read_metrics, read_result

TINY = ["size=cpu-30k", "data.seq_len=32", "model.local_window=16", "trainer.batch_size=4",
        "trainer.budget.rule=steps", "trainer.budget.value=12", "trainer.eval_every=6",
        "trainer.checkpoint_every=6", "data.eval_sequences=8", "data.position_eval_factor=2",
        "data.position_eval_docs=4", "logger.wandb.mode=disabled"]


def run_cli(capsys, root, *overrides):
    code = train_main([*TINY, f"store.root={root}", "--quiet", *overrides])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_interrupted_run_stays_resumable(tmp_path, capsys, monkeypatch):
    """Ctrl-C (or the SystemExit Ray raises in a worker whose driver died) is not a failure:
    exit 130, the run left RUNNING with its lease released, and the next command finishes it."""
    import experiments.train as runner  # experiments.runner imports `train` from here when it runs

    real_train = runner.train

    def interrupted(spec, folder, write_rows, **kw):
        write_rows([{"step": 1, "loss": 5.0, "tokens": 0, "elapsed_s": 0.0}])
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", interrupted)
    code, _, _ = run_cli(capsys, tmp_path, "family=hawk")
    assert code == 130
    store = RunStore(tmp_path)
    (run_id,) = store.list_runs()
    assert store.status(run_id).state == "RUNNING"
    assert not (pathlib.Path(store.run_dir(run_id)) / "lease.json").exists()
    monkeypatch.setattr(runner, "train", real_train)
    code, _, err = run_cli(capsys, tmp_path, "family=hawk")
    assert code == 0, err
    assert store.status(run_id).state == "SUCCESS"


def test_mamba2_trains_end_to_end(tmp_path, capsys):
    code, _, err = run_cli(capsys, tmp_path, "family=mamba2")
    assert code == 0, err
    (run_id,) = RunStore(tmp_path).list_runs()
    result = RunStore(tmp_path).read_result(run_id)
    assert run_id.startswith("mamba2-cpu-30k-") and result.family == "mamba2"
    assert 0 < result.heldout_loss_nats < 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    code = train_main([*TINY, f"store.root={root}", "--quiet", "family=griffin"])
    assert code == 0
    (run_id,) = RunStore(root).list_runs()
    return root, run_id


def test_run_writes_the_store_contract(trained):
    root, run_id = trained
    store = RunStore(root)
    run_dir = pathlib.Path(store.run_dir(run_id))
    assert run_id.startswith("griffin-cpu-30k-12st-")
    assert {"config.yaml", "status.json", "metrics.jsonl", "result.json", "ckpt"} <= set(os.listdir(run_dir))
    assert store.status(run_id).state == "SUCCESS"
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 13))
    for key in ("loss", "lr", "grad_norm", "param_norm", "update_norm", "tokens", "flops"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert "heldout_loss" in rows[5] and "heldout_loss" in rows[11] and "heldout_loss" not in rows[6]
    result = read_result(run_dir).to_json()
    assert result["data_source"] == "embedded" and result["mfu_kind"] in (None, "fraction_of_measured_matmul_peak")
    assert result["status"] == "SUCCESS" and result["tokens"] == 12 * 4 * 32
    assert result["heldout_loss_nats"] < math.log(256)  # it learned something about bytes
    assert result["heldout_bits_per_byte"] == pytest.approx(result["heldout_loss_nats"] / math.log(2))
    assert len(result["heldout_loss_by_position"]) == 64  # 2 x the training length
    assert set(result["flops"]) == {"6N", "6N_nonembed", "exact", "as_executed"}
    assert result["epochs"] > 0 and result["corpus_fingerprint"]
    # The learning-rate schedule: warmup to the peak, then cosine decay to 10% of it.
    lrs = [r["lr"] for r in rows]
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(result["lr"], rel=1e-5)


def test_finished_run_is_skipped(trained, capsys):
    root, run_id = trained
    before = read_metrics(RunStore(root).run_dir(run_id))
    code, out, _ = run_cli(capsys, root, "family=griffin")
    assert code == 0 and "already succeeded" in out
    assert read_metrics(RunStore(root).run_dir(run_id)) == before


def test_corrupt_status_file_is_one_line_error(trained, capsys, tmp_path):
    root, run_id = trained
    status = pathlib.Path(RunStore(root).run_dir(run_id)) / "status.json"
    saved = status.read_bytes()
    try:
        status.write_text("{not json")
        code, _, err = run_cli(capsys, root, "family=griffin")
    finally:
        status.write_bytes(saved)
    assert code == 2 and err.count("\n") == 1 and "status.json" in err


def test_divergence_is_recorded(tmp_path, capsys):
    code, out, _ = run_cli(capsys, tmp_path, "family=hawk", "optim.lr=1e4", "optim.clip_norm=0",
                           "trainer.spike_warmup=0", "trainer.spike_window=2", "trainer.budget.value=12")
    assert code == 1 and "DIVERGED" in out
    (run_id,) = RunStore(tmp_path).list_runs()
    status = RunStore(tmp_path).status(run_id)
    assert status.state == "DIVERGED" and 1 <= status.step <= 12 and status.reason


def _write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_griffin_eval_loss_by_position_from_the_checkpoint(trained, capsys):
    from experiments.evaluate import main as eval_main

    root, run_id = trained
    run_dir = RunStore(root).run_dir(run_id)
    assert eval_main([run_dir, "--length", "128", "--docs", "2"]) == 0
    out = json.loads((pathlib.Path(run_dir) / "eval" / "loss_by_position_128.json").read_text())
    assert out["length"] == 128 and len(out["loss_by_position"]) == 128 and out["train_seq_len"] == 32
    assert all(math.isfinite(x) for x in out["loss_by_position"])
    assert "mean" in capsys.readouterr().out
    assert eval_main([str(root)]) == 2  # not a run folder: one line, exit 2
    assert "not a run folder" in capsys.readouterr().err


def test_a_run_on_cached_programs_equals_one_traced_afresh(tmp_path):
    """A sweep's worker trains runs in turn and keeps the last run's jitted programs: a run of
    another seed on them must train exactly as in a fresh process (nothing of the seed is baked in)."""
    from experiments.programs import programs

    def losses(root, seed):
        assert train_main([*TINY, f"store.root={root}", "--quiet", "family=griffin", f"trainer.seed={seed}"]) == 0
        (run_id,) = RunStore(root).list_runs()
        return [r["loss"] for r in read_metrics(RunStore(root).run_dir(run_id))]

    losses(tmp_path / "first", seed=0)
    hits = programs.cache_info().hits
    reused = losses(tmp_path / "reused", seed=1)  # on the seed-0 run's programs
    assert programs.cache_info().hits == hits + 1
    programs.cache_clear()
    assert losses(tmp_path / "fresh", seed=1) == reused


def test_the_quickly_compiled_init_gives_bitwise_the_same_state():
    """The init program is compiled at a lower LLVM level (it runs once): its state must be
    the default-compiled program's, bit for bit (Griffin: every kind of block's parameters)."""
    import jax
    import numpy as np

    from experiments.configuration import compose, to_dict
    from experiments.spec import validate
    from experiments.programs import INIT_COMPILER_OPTIONS
    from griffin_core.model import init_params
    from griffin_core.optim import make_optimizer
    from griffin_core.optim_config import OptimSpec
    from griffin_core.train_step import init_state

    for family in ("griffin",):
        spec = validate(to_dict(compose([*TINY, f"family={family}"])))
        optimizer = make_optimizer(OptimSpec(total_steps=10, **spec.optim))

        def make_state(key):
            return init_state(init_params(spec.model, key), optimizer)

        key = jax.random.PRNGKey(3)
        quick = jax.jit(make_state, compiler_options=INIT_COMPILER_OPTIONS)(key)
        default = jax.jit(make_state)(key)
        for a, b in zip(jax.tree_util.tree_leaves(quick), jax.tree_util.tree_leaves(default)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
