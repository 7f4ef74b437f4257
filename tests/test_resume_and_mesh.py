"""Exact resume after SIGKILL, and the same losses on 1 and 8 (simulated) devices. Both run
`griffin-train` in subprocesses: a kill needs its own process, and the device count is fixed
when JAX starts."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import faults
import numpy as np
import orbax.checkpoint as ocp
import pytest

from run_store import RunStore, read_metrics, read_result

ARGS = ["family=griffin", "size=cpu-30k", "data.seq_len=32", "model.local_window=16", "trainer.batch_size=8",
        "trainer.budget.rule=steps", "trainer.budget.value=16", "trainer.eval_every=0",
        "trainer.checkpoint_every=5", "data.eval_sequences=8", "data.position_eval_factor=2",
        "data.position_eval_docs=2", "logger.wandb.mode=disabled", "--quiet"]
ENTRY = "import sys, faults; faults.install(); from experiments.cli import train_main; sys.exit(train_main(sys.argv[1:]))"


def _env(**extra):
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    env.update(extra)
    return env


def _start(root, *extra, env=None):
    return subprocess.Popen([sys.executable, "-c", ENTRY, *ARGS, f"store.root={root}", *extra],
                            env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _final_params(store_root):
    store = RunStore(store_root)
    (run_id,) = store.list_runs()
    ckpt = pathlib.Path(store.ckpt_dir(run_id))
    step = max(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
    restored = ocp.StandardCheckpointer().restore(ckpt / str(step) / "params")
    return restored, read_result(store.run_dir(run_id)).to_json(), read_metrics(store.run_dir(run_id))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run on one device, started at once and awaited by the tests that
    compare with it (the reference for both the resumed run and the 8-device run)."""
    root = tmp_path_factory.mktemp("straight")
    proc = _start(root)
    yield root, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _finished(run) -> pathlib.Path:
    """The run's store root, once its process has ended well (awaited at most once)."""
    root, proc = run
    err = proc.communicate(timeout=600)[1] if proc.returncode is None else ""
    assert proc.returncode == 0, err
    return root


def test_sigkill_then_resume_is_bitwise_identical(straight, tmp_path):
    # The second run stalls after step 12 (checkpoints at 5 and 10), so SIGKILL lands between
    # checkpoints; a half-written checkpoint folder is planted too, as if killed during a save.
    faults.write(tmp_path / "b", stall_after_step=12)
    killed = _start(tmp_path / "b")
    deadline = time.time() + 300
    while time.time() < deadline:
        rows = read_metrics(next((tmp_path / "b" / "runs").iterdir())) if (tmp_path / "b" / "runs").exists() else []
        if rows and rows[-1]["step"] >= 12:
            break
        assert killed.poll() is None, killed.communicate()
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    run_dir = next((tmp_path / "b" / "runs").iterdir())
    assert json.loads((run_dir / "status.json").read_text())["state"] == "RUNNING"
    (run_dir / "ckpt" / "15.orbax-checkpoint-tmp-1234").mkdir()
    faults.write(tmp_path / "b")
    # The dead owner's lease is stale only after the timeout; the rerun waits it out.
    resumed = _start(tmp_path / "b")
    out_b, err_b = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err_b
    params_a, result_a, rows_a = _final_params(_finished(straight))
    params_b, result_b, rows_b = _final_params(tmp_path / "b")
    assert [r["step"] for r in rows_b] == list(range(1, 17))  # cut back to step 10, then 11..16 once
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert result_a["final_train_loss"] == result_b["final_train_loss"]
    assert result_a["heldout_loss_nats"] == result_b["heldout_loss_nats"]
    flat_a, flat_b = (ocp.tree.to_flat_dict(p) for p in (params_a, params_b))
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=str(key))


def test_one_and_eight_devices_give_the_same_losses(straight, tmp_path):
    """Data parallelism over 8 simulated CPU devices: per-step losses equal the single-device
    run's within 1e-5 relative (the reduction order of the gradient differs)."""
    eight = _start(tmp_path, "trainer.mesh.data=8", env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
    roots = [_finished(straight), _finished((tmp_path, eight))]
    losses = [[r["loss"] for r in read_metrics(next((root / "runs").iterdir()))] for root in roots]
    assert len(losses[0]) == 16
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    # Evaluation too, including loss by position over 2 long documents padded to 8 rows.
    results = [json.loads(next((root / "runs").iterdir()).joinpath("result.json").read_text()) for root in roots]
    by_position = [r["heldout_loss_by_position"] for r in results]
    assert len(by_position[0]) == 64 and np.isfinite(by_position[0]).all()
    np.testing.assert_allclose(by_position[1], by_position[0], rtol=1e-5)
    np.testing.assert_allclose(results[1]["heldout_loss_nats"], results[0]["heldout_loss_nats"], rtol=1e-5)
