"""Can this launcher run one run at all? Checked before a sweep starts, so that a run no node
can ever hold, or a Ray address nobody answers at, is one line naming the key instead of a
sweep waiting forever (Ray queues an infeasible task without end, and retries an unreachable
address for minutes).

- `check_machine` (plan time, dry runs too, no Ray): runs pinned to this machine's cores (an
  embedded Ray, or a cluster on 127.0.0.1) need `launcher.cpus_per_run` of them; a TPU slice
  type must parse and match `launcher.tpu_topology`.
- `check_gpus` (before an embedded Ray starts): the GPUs one run asks for, counted by Ray's own
  accelerator manager.
- `check_address` (before `ray.init`): `launcher.ray_address` resolved as Ray resolves it
  (`auto`: RAY_ADDRESS or the cluster `ray start` last started here) and answering a TCP
  connection within a few seconds.
- `check_cluster` (once connected): some node of the cluster, alive now or one the cluster's
  autoscaler may start (its node groups, from Ray's cluster config), holds one run's resources.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any, Mapping

from experiments.configuration import UsageError
from launch.tpu_types import parse_pod_type

CONNECT_TIMEOUT_S = 3.0
"""How long a Ray address may take to accept a connection before the sweep is refused."""


def available_cores() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def is_local(address: str | None) -> bool:
    """Runs share this machine's cores (embedded Ray, or a cluster on loopback): pin them."""
    return not address or address.removeprefix("ray://").split(":")[0] in ("127.0.0.1", "localhost")


def per_run(launcher: Mapping[str, Any]) -> dict[str, float]:
    """What one run's task asks Ray for (launch.plan.resources; a TPU run: its slice's head)."""
    if launcher["kind"] == "tpu":
        return {f"TPU-{launcher['tpu_type']}-head": 1.0}
    need = {"CPU": float(launcher["cpus_per_run"])}
    if launcher["gpus_per_run"]:
        need["GPU"] = float(launcher["gpus_per_run"])
    return need


def check_machine(launcher: Mapping[str, Any]) -> None:
    """UsageError naming the key if this machine cannot hold one run (see the module doc)."""
    if launcher["kind"] == "tpu":
        tpu = parse_pod_type(launcher["tpu_type"])
        topology = launcher.get("tpu_topology")
        if topology:
            chips = 1
            for d in str(topology).split("x"):
                chips *= int(d)
            if chips != tpu.chips:
                raise UsageError(f"launcher.tpu_topology={topology!r} has {chips} chips, but launcher.tpu_type="
                                 f"{tpu.pod_type!r} has {tpu.chips}")
        return
    address = launcher.get("ray_address")
    if not is_local(address):
        return
    cores = len(available_cores())
    if launcher["cpus_per_run"] > cores:
        where = "embedded Ray" if not address else f"a Ray cluster on this machine, {address}"
        raise UsageError(f"launcher.cpus_per_run={launcher['cpus_per_run']} is more than the {cores} core(s) this "
                         f"machine gives the sweep ({where} pins each run to cores of its own)")


def check_gpus(launcher: Mapping[str, Any]) -> None:
    """Before an embedded Ray starts: UsageError unless Ray finds the GPUs one run asks for
    (not at plan time: a dry run never imports Ray, and plans a GPU sweep anywhere)."""
    if launcher.get("gpus_per_run") and launcher.get("kind") != "tpu":
        gpus = local_gpus()
        if gpus is not None and launcher["gpus_per_run"] > gpus:
            raise UsageError(f"launcher.gpus_per_run={launcher['gpus_per_run']} is more than the {gpus} GPU(s) "
                             f"Ray finds on this machine (embedded Ray)")


def local_gpus() -> int | None:
    """The GPUs an embedded Ray would find here (Ray's own count; CUDA_VISIBLE_DEVICES
    honoured); None if Ray cannot tell."""
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        count = manager.get_current_node_num_accelerators()
        visible = manager.get_current_process_visible_accelerator_ids()
    except Exception:  # noqa: BLE001 - a private helper of Ray's: without it, Ray decides at run time
        return None
    return min(count, len(visible)) if visible is not None else count


def check_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """The HOST:PORT `address` (launcher.ray_address) leads to, resolved as Ray does; UsageError
    in one line if there is none, or nothing accepts a connection there within `timeout_s`."""
    key = f"launcher.ray_address={address}"
    if address in ("auto", "local"):
        if address == "local":
            return address
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:
            resolved = canonicalize_bootstrap_address_or_die(address)
        except (ConnectionError, ValueError) as err:
            raise UsageError(f"{key}: no running Ray cluster found from this machine ({_first_sentence(err)}); "
                             f"start one with `ray start --head` or give HOST:PORT") from None
    else:
        resolved = address.removeprefix("ray://")
    host, _, port = resolved.rpartition(":")
    via = f" (resolved to {resolved})" if resolved != address.removeprefix("ray://") else ""
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as err:
        reason = "no answer" if isinstance(err, socket.timeout) else (err.strerror or type(err).__name__)
        raise UsageError(f"{key}: cannot reach a Ray cluster there{via}: {reason} within {timeout_s:g} s") from None
    if not address.startswith("ray://"):  # Ray Client's server is not a GCS
        problem = _ask_gcs(resolved, timeout_s)
        if problem:
            raise UsageError(f"{key}: something answers there{via}, but not a Ray cluster: {problem}")
    return resolved


GCS_PROBE = ("import sys; from ray._raylet import InnerGcsClient; "
             "InnerGcsClient.standalone(sys.argv[1], None, int(float(sys.argv[2]) * 1000))")
"""Ray's own GCS client, asked once in a child process: its C++ retries and log lines stay there,
and the child is killed at the deadline."""


def _ask_gcs(address: str, timeout_s: float) -> str | None:
    """None if a Ray GCS answers at `address` (asked with Ray's own client, see GCS_PROBE)
    within about `timeout_s` (plus the child's start), else why not. None too if this Ray has no
    such client: ray.init decides then."""
    try:
        done = subprocess.run([sys.executable, "-c", GCS_PROBE, address, str(timeout_s)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout_s + 2)
    except subprocess.TimeoutExpired:
        return f"no answer from a Ray GCS within {timeout_s:g} s"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit code {done.returncode}"
    if "ImportError" in last or "AttributeError" in last:
        return None
    return last.split(": ", 1)[-1][:200] if last.startswith(("ray.", "Ray", "Rpc")) else last[:200]


def _first_sentence(err: BaseException) -> str:
    return " ".join(str(err).split()).split(". ")[0].rstrip(".")


def cluster_nodes(ray: Any) -> tuple[list[dict[str, float]], list[dict[str, float]] | None]:
    """The resources of each node the connected cluster has alive, and of each node type its
    autoscaler may start (Ray's cluster config: [] without an autoscaler; None when an
    autoscaler runs whose node types Ray does not publish, as the v1 autoscaler of `ray up`)."""
    alive = [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - no autoscaler config to read: the nodes alive now decide
        config = None
    if config is None and _v1_autoscaler():
        return alive, None
    groups = [{k: float(v) for k, v in g.resources.items()}
              for g in getattr(config, "node_group_configs", None) or [] if g.max_count != 0]
    return alive, groups


def _v1_autoscaler() -> bool:
    """True if the v1 autoscaler of a `ray up` cluster runs (it does not publish its node types:
    the cluster may grow in ways this driver cannot see). Every head runs that monitor, in
    read-only mode on a cluster started by hand: see `autoscales`."""
    try:
        from ray._private.ray_constants import DEBUG_AUTOSCALING_STATUS
        from ray.experimental.internal_kv import _internal_kv_get

        return autoscales(_internal_kv_get(DEBUG_AUTOSCALING_STATUS))
    except Exception:  # noqa: BLE001 - nothing to read: no such autoscaler
        return False


def autoscales(status: bytes | None) -> bool:
    """From the v1 monitor's published status: True if it runs a cluster config's node types.
    In read-only mode (no config) each node's type is named after the node, `node_<id>`."""
    if not status:
        return False
    mapping = (json.loads(status).get("autoscaler_report") or {}).get("node_type_mapping") or {}
    return any(kind != f"node_{node}" for node, kind in mapping.items())


def check_cluster(ray: Any, launcher: Mapping[str, Any]) -> None:
    """UsageError naming the key unless some node of the connected cluster, alive or one its
    autoscaler may start, can hold one run. A TPU slice's `TPU-<type>-head` resource appears
    only once its host is up, so an autoscaler node type with TPUs counts as a possible slice."""
    need = per_run(launcher)
    alive, groups = cluster_nodes(ray)
    if groups is None:
        return  # an autoscaler whose node types are unknown here: Ray queues the runs until one fits
    nodes = alive + groups
    if any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
        return
    if launcher["kind"] == "tpu" and any(g.get("TPU", 0.0) > 0 for g in groups):
        return
    where = launcher.get("ray_address") or "this machine"
    if launcher["kind"] == "tpu":
        raise UsageError(f"launcher.tpu_type={launcher['tpu_type']}: no node of the Ray cluster at {where} has the "
                         f"resource TPU-{launcher['tpu_type']}-head (no such slice there, now or from its autoscaler)")
    keys = {"CPU": "cpus_per_run", "GPU": "gpus_per_run"}
    largest = {k: max((n.get(k, 0.0) for n in nodes), default=0.0) for k in need}
    short = next((k for k, v in need.items() if largest[k] < v), "GPU")  # else: no one node has both
    have = ", ".join(f"{largest[k]:g} {k}" for k in need)
    raise UsageError(f"launcher.{keys[short]}={launcher[keys[short]]}: no node of the Ray cluster at {where} can hold "
                     f"one run (at most {have} per node, counting its autoscaler's node types)")
