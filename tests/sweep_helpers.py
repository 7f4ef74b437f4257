"""What the sweep tests share: a tiny sweep's overrides, a Ray cluster on loopback, drivers in
their own processes, and waiting (test helper)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import faults

TINY = ["family=hawk", "size=cpu-30k", "data.seq_len=16", "trainer.batch_size=2", "trainer.budget.rule=steps",
        "trainer.budget.value=6", "trainer.eval_every=0", "trainer.checkpoint_every=2", "data.eval_sequences=2",
        "data.position_eval_factor=2", "data.position_eval_docs=2", "logger.wandb.mode=disabled",
        "launcher.kind=cluster", "launcher.lease_timeout_s=4", "launcher.heartbeat_s=0.5", "launcher.poll_s=0.5"]
ENTRY = "import sys; from launch.cli import sweep_main; sys.exit(sweep_main(sys.argv[1:]))"


def ray_cluster(num_cpus: int, compile_cache: str):
    """A one-node Ray cluster this process is connected to (a generator for a fixture)."""
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": num_cpus, "object_store_memory": 80 * 2**20,
                                                      "include_dashboard": False})
    ray.init(address=c.address)
    c.compile_cache = compile_cache
    yield c
    ray.shutdown()
    c.shutdown()


def args(cluster, root, *extra) -> list[str]:
    """griffin-sweep's arguments for TINY on `cluster` with its store at `root`."""
    return [*TINY, f"launcher.ray_address={cluster.address}", f"launcher.compile_cache={cluster.compile_cache}",
            f"store.root={root}", f"launcher.worker_setup_hook={faults.HOOK}", "--no-live", *extra]


def driver(cluster, root, *extra, env=None) -> subprocess.Popen:
    """A sweep driver in its own process (and session, so a test can kill it alone)."""
    return subprocess.Popen([sys.executable, "-c", ENTRY, *args(cluster, root, *extra)], env=env or dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(predicate, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError("timed out")
