"""A sweep submitted as a Ray job, as docs/launching.md tells users to: a real head started
with `ray start --head` on 127.0.0.1 (dashboard and job server, token authentication), then
`ray job submit --working-dir REPO -- python -m launch.cli experiment=smoke_cpu launcher=cluster
...` (the job ships this checkout; `ray_address: auto` finds the cluster from inside the job)
and, at the same time, the Ray Jobs Python SDK with the project found through the job's
PYTHONPATH (as on a cluster where it is installed). Both jobs must succeed and leave their
runs SUCCESS with a result in their stores. The head is stopped by process id at the end."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess

import pytest
from ray_head import RAY, RayHead

from run_store import RunStore

REPO = pathlib.Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "jax-tests"
"""The tests' persistent JAX compilation cache (tests/conftest.py): reruns compile nothing."""


def sweep_args(root: pathlib.Path, family: str) -> list[str]:
    return ["experiment=smoke_cpu", f"family={family}", "size=cpu-30k", "launcher=cluster",
            f"launcher.compile_cache={CACHE}", f"store.root={root}", "logger.wandb.mode=disabled", "--no-live"]


def package_root() -> str:
    """Where this test imports the project from: the source tree, or the installed package."""
    return str(pathlib.Path(importlib.util.find_spec("launch").origin).parents[1])


@pytest.fixture(scope="module")
def head():
    h = RayHead(num_cpus=2).start()
    yield h
    h.stop()


def check_store(root: pathlib.Path, family: str) -> None:
    store = RunStore(root)
    (run_id,) = store.list_runs()
    assert run_id.startswith(f"{family}-cpu-30k-")
    assert store.status(run_id).state == "SUCCESS"
    assert (pathlib.Path(store.run_dir(run_id)) / "result.json").is_file()
    assert store.read_result(run_id).heldout_loss_nats > 0
    manifest = json.loads((root / "sweeps" / "smoke_cpu.json").read_text())
    assert manifest["runs"] == [run_id]


@pytest.mark.timeout(300)
def test_a_sweep_submitted_by_ray_job_submit_and_by_the_jobs_sdk(head, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    cli_root, sdk_root = tmp_path / "cli", tmp_path / "sdk"
    cli = subprocess.Popen([RAY, "job", "submit", "--address", head.dashboard, "--working-dir", str(REPO), "--",
                            "python", "-m", "launch.cli", *sweep_args(cli_root, "hawk")],
                           cwd=tmp_path, env=head.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = JobSubmissionClient(head.dashboard, headers={"Authorization": f"Bearer {head.token}"})
    try:
        job = client.submit_job(entrypoint=" ".join(["python", "-m", "launch.cli", *sweep_args(sdk_root, "griffin")]),
                                runtime_env={"env_vars": {"PYTHONPATH": package_root()}})
        status = head.wait_for(lambda: (s := client.get_job_status(job)).is_terminal() and s, 240,
                               "the SDK's job to end")
        logs = client.get_job_logs(job)
        out, _ = cli.communicate(timeout=240)
    finally:
        if cli.poll() is None:  # the jobs themselves end with the head (the fixture stops it)
            cli.kill()
            cli.wait()
    assert cli.returncode == 0 and "succeeded" in out, out[-4000:]
    assert "Running entrypoint" in out and "SUCCESS" in out and "sweep manifest" in out
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert "SUCCESS" in logs and "1 to run, 0 already done" in logs
    check_store(cli_root, "hawk")
    check_store(sdk_root, "griffin")
