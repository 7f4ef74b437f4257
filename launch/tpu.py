"""Multi-host TPU runs on Ray: reserve a whole slice, start one process per host, join them
with `jax.distributed`, and turn a lost host into an error the driver retries.

`submit_slice_run` returns at once with the ref of a small orchestrating task (no CPU, kept
next to the driver when possible), which does this:

1. Reserve the slice with Ray's TPU helpers (`ray.util.tpu.slice_placement_group`): a
   placement group on `TPU-<pod_type>-head` claims a slice's host 0 and learns the slice's
   name; then one bundle `{"CPU": 1, "TPU": chips_per_host}` per host, placed by the node
   labels `ray.io/tpu-slice-name` and `ray.io/tpu-pod-type`, gives the run every host of that
   one slice. The head reservation is kept until the run ends, so another run never queues
   on a busy slice.
2. Read which node holds each bundle and its `ray.io/tpu-worker-id` label. Process ids follow
   the slice's own worker ids (slice s, worker w -> process s * hosts_per_slice + w). Host 0's
   address and a port found free on it become the `jax.distributed` coordinator (on TPUs JAX
   could find it itself; the CPU simulation in the tests needs it explicit, so it always is).
3. Start exactly one task per host, in that host's bundle, with `max_calls=1` (the process, and
   libtpu with it, goes away when the run ends) and the run's environment (XLA flags,
   compilation cache); a multi-slice run (`launcher.num_slices` > 1) also gets the MEGASCALE_*
   coordinator variables from `ray.util.tpu.get_tpu_coordinator_env_vars`. On a real TPU host
   the task first removes a stale `/tmp/libtpu_lockfile` (a run killed earlier leaves it, and
   libtpu then refuses to start); in CPU simulation it never touches it.
4. Wait. When a host fails, wait a moment for the others (a lost host makes its peers fail too,
   and the first error to arrive may be a peer's), cancel the rest, release the slice and
   raise: `SliceHostLost` when a host's process or node died (a `launch.errors.RunLost`: the
   driver counts it against the preemption budget), `SliceRunFailed` when the run itself
   raised, ran out of memory or could not be scheduled (failure budget); each host's error is
   classified by `launch.errors.classify`. The driver resubmits; the run resumes from its
   checkpoint.

The report is host 0's (process 0 owns the run store), as `launch.worker.run_point` gives it,
plus the hosts' placement. The driver never imports JAX; only the host tasks do.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Any, Callable, Mapping

from launch.errors import CONFIG_ERROR, LOST, RunConfigError, RunLost, classify, describe
from launch.tpu_types import GENERATIONS, parse_pod_type
from run_store import is_url, one_line

LIBTPU_LOCKFILE = "/tmp/libtpu_lockfile"
"""libtpu's lock: present while a process holds the chips, left behind when one is killed."""
SLICE_NAME_LABEL = "ray.io/tpu-slice-name"
WORKER_ID_LABEL = "ray.io/tpu-worker-id"
POD_TYPE_LABEL = "ray.io/tpu-pod-type"

HostFn = Callable[[Mapping[str, Any], "str | None", dict], dict]
"""What runs on each host: (config, sweep name, host assignment) -> report dict."""


class SliceHostLost(RunLost):
    """A host of the slice was lost (its process or node died, or the slice could not be
    assembled): the driver retries the run on the preemption budget."""


class SliceRunFailed(RuntimeError):
    """The run raised a Python exception on a host, ran out of memory there, or a host task
    could not be scheduled: the driver retries it on the failure budget."""


class SliceConfigError(SliceRunFailed, RunConfigError):
    """A host raised `ConfigError` (the run's config, the same on every try): not retried."""


# -- the slice's shape


def slice_topology(pod_type: str) -> str:
    """The chip topology Cloud TPU gives a pod type by default, e.g. v4-16 -> 2x2x2,
    v5litepod-16 -> 4x4. Set `launcher.tpu_topology` for any other shape."""
    tpu = parse_pod_type(pod_type)
    chips = tpu.chips
    if GENERATIONS[tpu.generation].cores_per_chip == 2:  # v4, v5p: 3-D torus
        dims, order = ([2, 2, 1], []) if chips == 4 else ([2, 2, 2], [2, 1, 0])
    else:  # v5e, v6e: 2-D
        dims, order = ([1, 1], []) if chips == 1 else ([2, 2], [1, 0])
    i = 0
    while order and _prod(dims) < chips:
        dims[order[i % len(order)]] *= 2
        i += 1
    if _prod(dims) != chips:
        raise ValueError(f"no default topology for {pod_type} ({chips} chips): set launcher.tpu_topology")
    return "x".join(map(str, dims))


def _prod(dims) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


# -- the driver side


def submit_slice_run(cfg: Mapping[str, Any], sweep: str | None, launcher: Mapping[str, Any],
                     env: Mapping[str, str], *, host_fn: HostFn | None = None,
                     reserve_timeout_s: float | None = None, ready_timeout_s: float = 600.0,
                     grace_s: float = 5.0):
    """Start one run on a whole TPU slice (or `launcher.num_slices` slices); returns an
    ObjectRef that resolves to the run's report or raises `SliceHostLost` / `SliceRunFailed`.

    host_fn: what each host runs (default `run_host`: `execute_distributed`); tests inject stubs.
    reserve_timeout_s: how long to wait for a free slice's head (None: queue until one frees).
    ready_timeout_s: how long the reserved slice's hosts may take to be placed; a slice missing
        a host (e.g. one preempted) raises `SliceHostLost` after this.
    grace_s: after the first host failure, how long to wait for the others before cancelling.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()  # beside the driver, off the TPU hosts
    task = ray.remote(run_slice).options(
        num_cpus=0, max_retries=0, name=f"slice-run:{launcher.get('tpu_type')}",
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True))
    return task.remote(dict(cfg), sweep, dict(launcher), {str(k): str(v) for k, v in env.items()},
                       host_fn or run_host, reserve_timeout_s, ready_timeout_s, grace_s)


# -- the orchestrating task


def run_slice(cfg: Mapping[str, Any], sweep: str | None, launcher: Mapping[str, Any], env: dict[str, str],
              host_fn: HostFn, reserve_timeout_s: float | None, ready_timeout_s: float,
              grace_s: float) -> dict:
    """Reserve the slice(s), run `host_fn` once per host, release; see the module docstring."""
    import ray
    from ray.util import tpu as ray_tpu

    pod = parse_pod_type(launcher["tpu_type"])
    topology = launcher.get("tpu_topology") or slice_topology(pod.pod_type)
    num_slices = max(1, int(launcher.get("num_slices") or 1))
    timeout_s = int(launcher.get("distributed_timeout_s") or 300)
    # Every bundle also asks for the pod type's label: a single-host slice has no head to
    # reserve, and must not take one host out of a larger slice.
    bundles, _ = ray_tpu.get_tpu_worker_resources(topology, pod.generation, num_slices=num_slices)
    try:
        handle = ray_tpu.slice_placement_group(topology, pod.generation, num_slices=num_slices,
                                               head_reservation_timeout_s=reserve_timeout_s,
                                               bundle_label_selector=[{POD_TYPE_LABEL: pod.pod_type}] * bundles)
    except TimeoutError as err:
        raise SliceHostLost(f"no free {pod.pod_type} slice within {reserve_timeout_s}s: {one_line(err, limit=400)}") from None
    try:
        pg = handle.placement_group
        ready, _ = ray.wait([pg.ready()], timeout=ready_timeout_s)
        if not ready:
            raise SliceHostLost(f"the reserved {pod.pod_type} slice(s) did not get all {handle.num_hosts} hosts "
                                f"within {ready_timeout_s}s (a host lost or busy?)")
        hosts = assign_hosts(handle)
        first = hosts[0]
        try:
            probe = ray.remote(_free_port).options(num_cpus=0, scheduling_strategy=_in_bundle(pg, first["bundle"]))
            port = ray.get(probe.remote(first["address"]), timeout=120)
        except ray.exceptions.RayError as err:
            raise SliceHostLost(f"host 0 of slice {first['slice_name']} did not answer: {one_line(err, limit=400)}") from None
        coordinator = f"{first['address']}:{port}"
        entry = ray.remote(max_calls=1)(host_entry)  # a fresh process per run: libtpu is released
        bundle = handle.bundle_resources  # {"CPU": 1, "TPU": chips per host}: the host task fills it
        refs = {}
        for host in hosts:
            host.update(coordinator=coordinator, bind_address=coordinator, num_processes=len(hosts),
                        init_timeout_s=timeout_s, heartbeat_timeout_s=timeout_s)
            host_env = dict(env)
            if num_slices > 1:
                host_env.update(ray_tpu.get_tpu_coordinator_env_vars(first["address"], num_slices, host["slice_index"]))
            host["megascale"] = {k: v for k, v in host_env.items() if k.startswith("MEGASCALE_")}
            ref = entry.options(
                num_cpus=bundle.get("CPU", 0), resources={"TPU": bundle["TPU"]}, max_retries=0,
                scheduling_strategy=_in_bundle(pg, host["bundle"]), runtime_env={"env_vars": host_env},
                name=f"tpu-host:{host['slice_name']}:{host['worker_id']}",
            ).remote(host_fn, cfg, sweep, dict(host))
            refs[ref] = host
        reports = wait_hosts(refs, grace_s)
    finally:
        handle.shutdown()  # the worker and head placement groups: the slice is free again
    report = dict(reports[0])
    report["hosts"] = [{k: h[k] for k in ("process_id", "slice_index", "slice_name", "worker_id", "node_id", "address")}
                       for h in hosts]
    report["coordinator"] = coordinator
    report["orchestrator_node"] = ray.get_runtime_context().get_node_id()
    return report


def assign_hosts(handle) -> list[dict]:
    """One entry per host of the reserved slice(s), ordered by process id: the bundle that
    holds it, its node and address, slice index and name, and its worker id (from the node's
    `ray.io/tpu-worker-id` label, so process ids agree with the TPU runtime's own numbering)."""
    import ray
    from ray.util import placement_group_table

    bundle_nodes = placement_group_table(handle.placement_group)["bundles_to_node_id"]
    nodes = {n["NodeID"]: n for n in ray.nodes()}
    per_slice = handle.num_bundles // handle.num_slices
    selectors = handle.bundle_label_selector
    hosts = []
    for i in range(handle.num_bundles):
        node = nodes.get(bundle_nodes.get(i, ""))
        if node is None or not node.get("Alive"):
            raise SliceHostLost(f"bundle {i} of the reserved slice has no live node (a host was lost)")
        labels = node.get("Labels") or {}
        label = labels.get(WORKER_ID_LABEL, "")
        slice_index = i // per_slice
        hosts.append({
            "bundle": i, "node_id": node["NodeID"], "address": node["NodeManagerAddress"],
            "slice_index": slice_index,
            "slice_name": labels.get(SLICE_NAME_LABEL) or (selectors[i] if i < len(selectors) else {}).get(
                SLICE_NAME_LABEL),
            "worker_id": int(label) if label.isdigit() else i % per_slice,
        })
    for s in range(handle.num_slices):
        ids = sorted(h["worker_id"] for h in hosts if h["slice_index"] == s)
        if ids != list(range(per_slice)):
            raise SliceRunFailed(f"slice {s}'s hosts carry worker ids {ids} ({WORKER_ID_LABEL} labels), "
                                 f"expected 0..{per_slice - 1}: the cluster's TPU labels are inconsistent")
    for h in hosts:
        h["process_id"] = h["slice_index"] * per_slice + h["worker_id"]
    return sorted(hosts, key=lambda h: h["process_id"])


def wait_hosts(refs: dict, grace_s: float) -> dict[int, dict]:
    """The hosts' reports by process id, or raise when any host failed (after cancelling the
    others): `SliceHostLost` if any host's process or node was lost, else `SliceRunFailed`."""
    import ray

    pending = dict(refs)
    reports: dict[int, dict] = {}
    errors: list[tuple[dict, BaseException]] = []
    while pending and not errors:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            host = pending.pop(ref)
            try:
                reports[host["process_id"]] = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - classified below
                errors.append((host, err))
    if not errors:
        return reports
    if pending and grace_s > 0:  # a lost host's peers fail too: see which error is the cause
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=grace_s)
        for ref in done:
            host = pending.pop(ref)
            try:
                ray.get(ref)
            except Exception as err:  # noqa: BLE001
                errors.append((host, err))
    for ref in pending:
        ray.cancel(ref, force=True)
    raise slice_error(errors)


def slice_error(errors: list[tuple[dict, BaseException]]) -> Exception:
    """A lost host (`launch.errors.classify` says LOST) outranks any other error: a lost host
    makes its peers fail too. Anything else (the run's exception, out of memory, unschedulable)
    is a `SliceRunFailed` naming the first host's error."""
    lost = [(h, e) for h, e in errors if classify(e) == LOST]
    host, err = (lost or errors)[0]
    where = f"process {host['process_id']} (host {host['worker_id']} of slice {host['slice_name']})"
    others = f"; {len(errors) - 1} other host(s) failed too" if len(errors) > 1 else ""
    if lost:
        return SliceHostLost(f"{where} was lost: {describe(err, limit=400)}{others}")
    failed = SliceConfigError if classify(err) == CONFIG_ERROR else SliceRunFailed
    return failed(f"{where} raised {describe(err, limit=400)}{others}")


def _in_bundle(pg, index: int):
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index)


def _free_port(address: str) -> int:
    """A port free on this host now, for the jax.distributed coordinator."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


# -- on each host


def host_entry(host_fn: HostFn, cfg: Mapping[str, Any], sweep: str | None, host: dict) -> dict:
    """Every host task starts here: clear a stale libtpu lock (real TPU hosts only), record
    where it runs, then call `host_fn`."""
    import ray

    chips = tpu_chips_on_this_host()
    host = dict(host, node_id=ray.get_runtime_context().get_node_id(), pid=os.getpid(), tpu_chips=chips,
                lockfile_removed=remove_stale_libtpu_lockfile(on_tpu=chips > 0))
    return host_fn(cfg, sweep, host)


def run_host(cfg: Mapping[str, Any], sweep: str | None, host: dict) -> dict:
    """The default host function: this host's process of the run (`execute_distributed`), its
    output in the run's `logs/worker.log` (host 0) or `logs/worker-<process>.log` when the store
    is a local folder."""
    from experiments.runner import execute_distributed, resolve, store_for
    from launch.worker import output_to, run_setup_hook

    run_setup_hook(cfg["launcher"].get("worker_setup_hook"))
    store = store_for(cfg)
    log = None
    if not is_url(store.root):
        name = "worker.log" if host["process_id"] == 0 else f"worker-{host['process_id']}.log"
        log = os.path.join(store.run_dir(resolve(cfg).run_id), "logs", name)
    with output_to(log):
        report = execute_distributed(cfg, host["coordinator"], host["num_processes"], host["process_id"],
                                     bind_address=host["bind_address"], init_timeout_s=host["init_timeout_s"],
                                     heartbeat_timeout_s=host["heartbeat_timeout_s"], sweep=sweep)
    result = report.result
    return {"run_id": report.run_id, "status": report.status, "reason": report.reason,
            "heldout_loss_nats": result.heldout_loss_nats if result else None,
            "wall_time_s": result.wall_time_s if result else None,
            "pid": os.getpid(), "process_id": host["process_id"]}


def tpu_chips_on_this_host() -> int:
    """TPU chips this machine really has (device files under /dev; no metadata-server query)."""
    from ray.util.tpu import get_num_tpu_chips_on_node

    try:
        return int(get_num_tpu_chips_on_node())
    except Exception:  # noqa: BLE001 - detection is best effort: no TPU
        return 0


def remove_stale_libtpu_lockfile(path: str = LIBTPU_LOCKFILE, *, on_tpu: bool | None = None) -> bool:
    """Remove libtpu's lockfile if it is stale (nobody holds a lock on it); True if removed.
    Only on a real TPU host (`on_tpu`, detected when None): in CPU simulation it is left alone."""
    if on_tpu is None:
        on_tpu = tpu_chips_on_this_host() > 0
    if not on_tpu or not os.path.exists(path):
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False  # a live process holds it: not stale
        raise
    finally:
        os.close(fd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
