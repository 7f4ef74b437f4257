"""The launcher's settings and resources, checked before a sweep starts (conf.launcher_fields,
launch.resources): a value that cannot work, a run no node can hold and a Ray address nobody
answers at are one line naming the key, never a sweep waiting forever."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from conf.launcher_fields import check_launcher
from conf.schema import LauncherConf
from experiments.configuration import UsageError
from griffin_core.config import ConfigError
from launch import resources


def launcher(**changes) -> dict:
    import dataclasses

    return {**dataclasses.asdict(LauncherConf()), **changes}


@pytest.mark.parametrize("changes", [
    {}, {"kind": "cluster", "ray_address": "auto"}, {"ray_address": "10.0.0.1:6379"}, {"ray_address": "ray://head:10001"},
    {"ray_address": "[::1]:6379"}, {"max_parallel": 0}, {"gpus_per_run": 1}, {"failure_retries": 0},
    {"heartbeat_s": 0.5, "lease_timeout_s": 4.0}, {"assumed_mfu": 1.0}, {"tpu_topology": "2x2x2"},
    {"worker_setup_hook": "faults.setup"}])
def test_values_that_work(changes):
    check_launcher(launcher(**changes))


@pytest.mark.parametrize("changes, message", [
    ({"kind": "moon"}, r"launcher\.kind='moon' is unknown; known: \['local', 'cluster', 'tpu'\]"),
    ({"cpus_per_run": 0}, r"launcher\.cpus_per_run=0 must be a whole number of at least 1"),
    ({"num_slices": 0}, r"launcher\.num_slices=0 must be"),
    ({"distributed_timeout_s": 0}, r"launcher\.distributed_timeout_s=0 must be"),
    ({"max_parallel": -1}, r"launcher\.max_parallel=-1 must be a whole number of at least 0"),
    ({"gpus_per_run": -1}, r"launcher\.gpus_per_run=-1"),
    ({"failure_retries": -1}, r"launcher\.failure_retries=-1"),
    ({"preemption_retries": -5}, r"launcher\.preemption_retries=-5"),
    ({"heartbeat_s": 0.0}, r"launcher\.heartbeat_s=0\.0 must be a positive number of seconds"),
    ({"poll_s": float("nan")}, r"launcher\.poll_s=nan must be a positive"),
    ({"lease_timeout_s": float("inf")}, r"launcher\.lease_timeout_s=inf must be a positive"),
    ({"heartbeat_s": 90.0}, r"launcher\.heartbeat_s=90\.0 must be below launcher\.lease_timeout_s=90\.0"),
    ({"assumed_mfu": 2.0}, r"launcher\.assumed_mfu=2\.0 must be a fraction in \(0, 1\]"),
    ({"assumed_mfu": 0.0}, r"launcher\.assumed_mfu=0\.0"),
    ({"ray_address": "nohost"}, r"launcher\.ray_address='nohost' is not a Ray address"),
    ({"ray_address": "host:99999"}, r"launcher\.ray_address='host:99999' is not a Ray address"),
    ({"tpu_topology": "2y2"}, r"launcher\.tpu_topology='2y2' is not a chip topology"),
    ({"worker_setup_hook": "setup"}, r"launcher\.worker_setup_hook='setup' is not 'package\.module\.function'"),
    ({"compile_cache": " "}, r"launcher\.compile_cache=' ' is empty")])
def test_values_that_cannot_work_name_the_key(changes, message):
    with pytest.raises(ConfigError, match=message):
        check_launcher(launcher(**changes))


def test_this_machine_must_hold_one_run():
    cores = len(resources.available_cores())
    resources.check_machine(launcher(cpus_per_run=cores))
    for address in (None, "127.0.0.1:6379"):  # embedded, or a cluster on this machine: runs pinned to its cores
        with pytest.raises(UsageError, match=rf"launcher\.cpus_per_run={cores + 1} is more than the {cores} core"):
            resources.check_machine(launcher(cpus_per_run=cores + 1, ray_address=address))
    resources.check_machine(launcher(cpus_per_run=cores + 1, ray_address="10.0.0.1:6379"))  # the cluster decides
    with pytest.raises(UsageError, match=r"launcher\.tpu_topology='2x2' has 4 chips, but launcher\.tpu_type='v4-16' has 8"):
        resources.check_machine(launcher(kind="tpu", tpu_type="v4-16", tpu_topology="2x2"))


def test_embedded_ray_gpus_are_counted_by_ray(monkeypatch):
    monkeypatch.setattr(resources, "local_gpus", lambda: 0)
    resources.check_machine(launcher(gpus_per_run=1))  # a plan (a dry run) of a GPU sweep works anywhere
    with pytest.raises(UsageError, match=r"launcher\.gpus_per_run=1 is more than the 0 GPU\(s\) Ray finds"):
        resources.check_gpus(launcher(gpus_per_run=1))
    monkeypatch.setattr(resources, "local_gpus", lambda: None)  # Ray cannot tell: it decides at run time
    resources.check_gpus(launcher(gpus_per_run=1))


def test_start_ray_refuses_before_ray_starts(monkeypatch):
    """A launcher no node can serve is refused before `ray.init` (which would wait forever)."""
    import ray

    from launch import scheduler

    monkeypatch.setattr(resources, "local_gpus", lambda: 0)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init called"))
    with pytest.raises(UsageError, match=r"launcher\.gpus_per_run=1"):
        scheduler.start_ray(launcher(gpus_per_run=1))
    with pytest.raises(UsageError, match=r"launcher\.ray_address=127\.0\.0\.1:\d+: cannot reach"):
        scheduler.start_ray(launcher(kind="cluster", ray_address=f"127.0.0.1:{_closed_port()}"))


class FakeRay:
    def __init__(self, *nodes):
        self._nodes = [{"Alive": True, "Resources": n} for n in nodes] + [{"Alive": False, "Resources": {"CPU": 64.0}}]

    def nodes(self):
        return self._nodes


def test_the_cluster_must_have_a_node_for_one_run(monkeypatch):
    monkeypatch.setattr(resources, "cluster_nodes", lambda ray: ([n["Resources"] for n in ray.nodes() if n["Alive"]], []))
    ray = FakeRay({"CPU": 4.0}, {"CPU": 8.0, "GPU": 1.0})
    resources.check_cluster(ray, launcher(kind="cluster", cpus_per_run=8, gpus_per_run=1))
    with pytest.raises(UsageError, match=r"launcher\.cpus_per_run=99: no node of the Ray cluster at h:1 can hold one "
                                         r"run \(at most 8 CPU per node"):
        resources.check_cluster(ray, launcher(kind="cluster", cpus_per_run=99, ray_address="h:1"))
    with pytest.raises(UsageError, match=r"launcher\.gpus_per_run=2:.*at most 8 CPU, 1 GPU per node"):
        resources.check_cluster(ray, launcher(kind="cluster", gpus_per_run=2))
    with pytest.raises(UsageError, match=r"launcher\.tpu_type=v4-16: no node .* has the resource TPU-v4-16-head"):
        resources.check_cluster(ray, launcher(kind="tpu", tpu_type="v4-16"))
    resources.check_cluster(FakeRay({"CPU": 1.0, "TPU-v4-16-head": 1.0}), launcher(kind="tpu", tpu_type="v4-16"))


def test_an_autoscaler_node_type_counts(monkeypatch):
    """A node the cluster's autoscaler may start (Ray's cluster config) can hold the run too."""
    import types

    group = types.SimpleNamespace(max_count=10, resources={"CPU": 32})
    config = types.SimpleNamespace(node_group_configs=[group, types.SimpleNamespace(max_count=0, resources={"CPU": 99})])
    import ray._private.state

    monkeypatch.setattr(ray._private.state.state, "get_cluster_config", lambda: config)
    assert resources.cluster_nodes(FakeRay({"CPU": 0.0})) == ([{"CPU": 0.0}], [{"CPU": 32.0}])
    resources.check_cluster(FakeRay({"CPU": 0.0}), launcher(kind="cluster", cpus_per_run=32))
    with pytest.raises(UsageError, match=r"launcher\.cpus_per_run=33: .*at most 32 CPU per node"):
        resources.check_cluster(FakeRay({"CPU": 0.0}), launcher(kind="cluster", cpus_per_run=33))
    # A slice's head resource appears once its host is up: a node type with TPUs may become one.
    with pytest.raises(UsageError, match=r"TPU-v4-16-head"):
        resources.check_cluster(FakeRay({"CPU": 0.0}), launcher(kind="tpu", tpu_type="v4-16"))
    group.resources = {"CPU": 8, "TPU": 4}
    resources.check_cluster(FakeRay({"CPU": 0.0}), launcher(kind="tpu", tpu_type="v4-16"))
    # The v1 autoscaler (`ray up`) publishes no node types: the cluster may grow, so nothing is refused.
    monkeypatch.setattr(ray._private.state.state, "get_cluster_config", lambda: None)
    monkeypatch.setattr(resources, "_v1_autoscaler", lambda: True)
    assert resources.cluster_nodes(FakeRay({"CPU": 0.0})) == ([{"CPU": 0.0}], None)
    resources.check_cluster(FakeRay({"CPU": 0.0}), launcher(kind="cluster", cpus_per_run=99))


def test_a_cluster_started_by_hand_does_not_autoscale():
    """Every head runs Ray's v1 monitor; without a cluster config it names each node's type after
    the node, and nothing can be added: the nodes alive decide."""
    def status(mapping):
        return json.dumps({"autoscaler_report": {"node_type_mapping": mapping, "legacy": True}}).encode()

    assert not resources.autoscales(None)
    assert not resources.autoscales(status({"3dd5": "node_3dd5", "77ab": "node_77ab"}))
    assert resources.autoscales(status({"3dd5": "ray.head.default"}))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nobody_answers_at_is_one_line_at_once():
    port = _closed_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        start = time.monotonic()
        with pytest.raises(UsageError, match=rf"launcher\.ray_address={address}: cannot reach a Ray cluster there: "
                                             r"Connection refused"):
            resources.check_address(address)
        assert time.monotonic() - start < 2


def test_auto_without_a_cluster_names_the_key(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    import ray._private.services as services

    monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    with pytest.raises(UsageError, match=r"launcher\.ray_address=auto: no running Ray cluster found"):
        resources.check_address("auto")


def test_a_server_that_is_not_ray_is_refused_within_seconds():
    """Something accepts the connection but speaks no Ray: Ray's own client says so."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    try:
        start = time.monotonic()
        with pytest.raises(UsageError, match=rf"launcher\.ray_address={address}: something answers there, but not a "
                                             r"Ray cluster"):
            resources.check_address(address, timeout_s=2.0)
        assert time.monotonic() - start < 10
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.mark.timeout(180)
def test_a_real_cluster_started_by_hand(tmp_path):
    """A one-node cluster on this machine (1 CPU, no autoscaler; its head's monitor runs read-only):
    its address answers as Ray, a run of 1 CPU fits and one of 2 is refused at once."""
    import ray
    from sweep_helpers import ray_cluster

    cluster = ray_cluster(1, str(tmp_path / "jax-cache"))
    c = next(cluster)
    try:
        assert resources.check_address(c.address) == c.address
        alive, groups = resources.cluster_nodes(ray)
        assert [n["CPU"] for n in alive] == [1.0] and groups == []
        resources.check_cluster(ray, launcher(kind="cluster", ray_address=c.address))
        with pytest.raises(UsageError, match=r"launcher\.cpus_per_run=2: no node of the Ray cluster at .* can hold one "
                                             r"run \(at most 1 CPU per node"):
            resources.check_cluster(ray, launcher(kind="cluster", ray_address=c.address, cpus_per_run=2))
    finally:
        next(cluster, None)
