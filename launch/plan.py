"""The sweep plan: every grid point composed, validated and sized before anything launches.

For each run: id, family, size, parameters, tokens, steps, FLOPs (exact), estimated time from
a measured throughput, resources, and whether it is already done. For TPU launchers also the
chips, chip-hours at a stated MFU, and the memory per device under the run's sharding; a run
that does not fit is rejected. Plain Python: no JAX.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from typing import Any, Sequence

from conf.launcher_fields import check_launcher
from experiments.configuration import UsageError, compose, hydra_context, to_dict
from experiments.runner import RunRef, resolve
from griffin_core import counting
from griffin_core.config import ConfigError
from griffin_core.data.errors import DataError
from griffin_core.parallelism import check_batch, check_model, resolve_mesh
from launch.resources import check_machine
from launch.tpu_types import parse_pod_type
from run_store import RunStore, StoreError, one_line
from run_store.locations import limits_path

# Fallbacks when nothing has been measured yet: a fraction of the cached matmul peak, and the
# fixed cost of a run (process start, compilation, evaluations, checkpoints).
ASSUMED_CPU_MFU = 0.2
ASSUMED_OVERHEAD_S = 20.0


@dataclasses.dataclass
class PlannedRun:
    ref: RunRef
    overrides: list[str]
    point: dict[str, str]
    """The grid axes' values of this point."""
    state: str
    """Store status: PENDING | RUNNING | SUCCESS | FAILED | DIVERGED."""
    flops: float
    est_seconds: float | None
    resources: dict[str, float]
    tpu: dict[str, Any] | None = None
    compiled: dict[str, Any] | None = None
    """XLA's figures for the compiled train step (launch.compile_check), when asked for."""

    @property
    def config(self) -> dict:
        return dict(self.ref.spec.config)

    @property
    def done(self) -> bool:
        return self.state == "SUCCESS"


@dataclasses.dataclass
class Plan:
    name: str
    axes: dict[str, list[str]]
    runs: list[PlannedRun]
    store: RunStore
    launcher: dict[str, Any]
    replaced: dict[tuple[str, str], tuple[str, list[str]]] = dataclasses.field(default_factory=dict)
    """The preset's size_overrides the command line replaced: {(size, key): (the preset's value,
    the command line's values)}."""

    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if not r.done]


def build_plan(name: str, axes: dict[str, list[str]], grid: Sequence[Sequence[str]], *,
               store_kwargs: dict | None = None, require_data: bool = True, check_memory: bool = True) -> Plan:
    """Compose and validate every point; raise UsageError naming the first bad point.
    require_data=False (dry runs) plans runs whose data is not on this machine.
    check_memory=False keeps runs whose planned memory exceeds their chip (the compiled
    figure decides instead: launch.compile_check)."""
    refs = []
    replaced: dict[tuple[str, str], tuple[str, list[str]]] = {}
    with hydra_context():  # one Hydra for every point's compose
        for overrides in grid:
            point = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] in axes}
            try:
                cfg = to_dict(compose(list(overrides)))
                size = cfg["size"]["name"]
                extra, taken = preset_size_overrides(cfg["experiment"]["size_overrides"].get(size) or [], overrides,
                                                     config_groups(overrides))
                for key, values in taken.items():
                    mine = replaced.setdefault((size, key), (values[0], []))[1]
                    mine += [v for v in values[1:] if v not in mine]
                if extra:
                    overrides = [*extra, *overrides]  # after the preset's: the command line's keys win
                    cfg = to_dict(compose(list(overrides)))
                check_launcher(cfg["launcher"])
                ref = resolve(cfg, require_data)
                check_mesh(ref.spec, devices_per_run(cfg["launcher"]))
                check_machine(cfg["launcher"])
                refs.append((ref, list(overrides), point))
            except (UsageError, ConfigError, DataError) as err:
                where = (" ".join(f"{k}={v}" for k, v in point.items())
                         or " ".join(o for o in overrides if _key(o) in ("family", "size")) or "the only point")
                raise UsageError(f"grid point {where}: {one_line(err)}") from None
    if not refs:
        raise UsageError("the sweep has no grid points")
    first = refs[0][0].spec.config
    store = RunStore(first["store"]["root"], **(store_kwargs or {}))
    launcher = dict(first["launcher"])
    rates = measured_rates(store)
    runs = []
    seen = set()
    for ref, overrides, point in refs:
        if ref.run_id in seen:
            continue  # two points that resolve to the same run (e.g. a no-op axis) train once
        seen.add(ref.run_id)
        spec = ref.spec
        flops = spec.flops()["exact"]
        try:
            state = "NO DATA" if ref.data_error else store.status(ref.run_id).state
            if state in ("SUCCESS", "DIVERGED"):
                store.read_result(ref.run_id)  # the summary reads it: a corrupt one is refused now
        except StoreError as err:
            raise UsageError(str(err)) from None
        run_launcher = spec.config["launcher"]  # per run: size_overrides may choose its slice
        run = PlannedRun(ref, overrides, point, state, flops, None, resources(run_launcher))
        if run_launcher["kind"] == "tpu":
            run.tpu = tpu_plan(spec, run_launcher)
            if check_memory and not run.tpu["fits"]:
                raise UsageError(run.tpu["unfit"])
            run.est_seconds = run.tpu["hours"] * 3600
        else:
            run.est_seconds = estimate_seconds(spec, rates, threads=max(1, int(run_launcher["cpus_per_run"])))
        runs.append(run)
    try:
        store.read_sweep(name)  # replaced by this sweep's plan, but a corrupt one is the user's to look at
    except StoreError as err:
        raise UsageError(f"{err}; delete it and this sweep writes a new one") from None
    except ValueError as err:  # not a sweep name
        raise UsageError(f"experiment.name: {err}") from None
    # Largest first, so a small run never finishes alone at the end.
    runs.sort(key=lambda r: -r.flops)
    return Plan(name, axes, runs, store, launcher, replaced)


def preset_size_overrides(extra: Sequence[str], given: Sequence[str], groups: Sequence[str] = ()
                          ) -> tuple[list[str], dict[str, list[str]]]:
    """A preset's `experiment.size_overrides` items for one size, less those a grid point's
    overrides `given` replace (the point sets the key or a parent of it; an item whose child
    the point sets is kept, to be composed first), and what the point replaced:
    {the preset's key: [the preset's value, then the point's]}. Keys in `groups` choose a config
    group's option (`launcher=tpu`): the preset's values inside that group still apply."""
    mine = {_key(text): text for text in given if _key(text) not in groups}
    kept, taken = [], {}
    for text in extra:
        key, value = _key(text), text.partition("=")[2]
        over = [k for k in mine if k == key or key.startswith(k + ".")]
        under = [k for k in mine if k.startswith(key + ".")]
        if not over:
            kept.append(text)
        if over or under:
            taken[key] = [value, *(mine[k].partition("=")[2] if k == key else mine[k] for k in over + under)]
    return kept, taken


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def config_groups(overrides: Sequence[str]) -> set[str]:
    """The keys of `overrides` that are config groups (inside `hydra_context`)."""
    from hydra.core.global_hydra import GlobalHydra

    repository = GlobalHydra.instance().config_loader().repository
    return {_key(o) for o in overrides if repository.group_exists(_key(o))}


def devices_per_run(launcher: dict[str, Any]) -> int:
    """The devices one run sees: a TPU run's chips (over all its slices), a GPU run's GPUs,
    else one CPU device (the workers' XLA_FLAGS ask for no more: launch.worker.xla_env)."""
    if launcher["kind"] == "tpu":
        return parse_pod_type(launcher["tpu_type"]).chips * max(1, int(launcher.get("num_slices") or 1))
    return int(launcher["gpus_per_run"]) or 1


def check_mesh(spec, devices: int):
    """What a run checks of its mesh before it compiles (experiments.programs.mesh_layout's
    calls, without JAX): the strategy and axis sizes for `devices` devices, tensor parallelism
    against the model, the batch against the batch axes and microbatches. The resolved mesh
    plan, or ConfigError naming the key."""
    trainer, launcher = spec.trainer, spec.config["launcher"]
    try:
        mesh = resolve_mesh(trainer["strategy"], trainer["mesh"], devices, trainer["axis_rules"])
    except ConfigError as err:
        has = (f"{devices} chips: {launcher['num_slices']} x launcher.tpu_type={launcher['tpu_type']}"
               if launcher["kind"] == "tpu" else f"{devices} GPUs: launcher.gpus_per_run={devices}"
               if launcher["gpus_per_run"] else "1 CPU device")
        raise ConfigError(f"{err} (each run of this launcher has {has})") from None
    check_model(spec.model, mesh)
    check_batch(mesh, spec.schedule.batch_size, int(trainer["microbatches"]))
    return mesh


def resources(launcher: dict[str, Any]) -> dict[str, float]:
    if launcher["kind"] == "tpu":
        return {"TPU": parse_pod_type(launcher["tpu_type"]).spec.chips_per_host}
    out = {"CPU": float(launcher["cpus_per_run"])}
    if launcher["gpus_per_run"]:
        out["GPU"] = float(launcher["gpus_per_run"])
    return out


def tpu_plan(spec, launcher: dict[str, Any]) -> dict[str, Any]:
    """Chips (over all `launcher.num_slices` slices), chip-hours at the stated MFU, the mesh,
    and memory per device by formula (`fits`, and `unfit`: the one-line reason when it does
    not)."""
    tpu = parse_pod_type(launcher["tpu_type"])
    trainer = spec.trainer
    chips = devices_per_run(launcher)  # every slice's chips: a multi-slice run's mesh spans them all
    try:
        mesh = check_mesh(spec, chips)
    except ConfigError as err:
        raise UsageError(f"run {spec.family} {spec.size} on {tpu.pod_type}: {err}") from None
    mem = counting.memory_per_device(spec.model, spec.schedule.batch_size, spec.schedule.seq_len, sizes=mesh.sizes,
                                     strategy=mesh.strategy, microbatches=int(trainer["microbatches"]))
    mfu = float(launcher["assumed_mfu"])
    hours = spec.flops()["exact"] / (chips * tpu.spec.peak_flops_per_chip * mfu) / 3600
    fits = mem["total"] <= tpu.spec.hbm_bytes_per_chip
    unfit = (f"run {spec.family} {spec.size} does not fit on {tpu.pod_type}: "
             f"{mem['total'] / 2**30:.1f} GiB per device (params {mem['params'] / 2**30:.1f}, optimiser "
             f"{mem['optimizer'] / 2**30:.1f}, activations {mem['activations'] / 2**30:.1f}) > "
             f"{tpu.spec.hbm_bytes_per_chip / 2**30:.0f} GiB HBM; shard more (trainer.strategy, trainer.mesh), "
             f"raise trainer.microbatches or use a larger slice")
    return {"fits": fits, "unfit": unfit, "pod_type": tpu.pod_type, "chips": chips, "hosts": tpu.hosts, "mfu": mfu,
            "hours": hours, "chip_hours": hours * chips, "memory": mem, "hbm": tpu.spec.hbm_bytes_per_chip,
            "mesh": mesh.sizes, "strategy": mesh.strategy}


def measured_rates(store: RunStore) -> dict[str, float]:
    """Achieved exact training FLOP/s, medians over the store's finished runs: by family and
    size ("hawk/cpu-30k"; a CPU core's utilisation rises several-fold with width), by family,
    and over families ("*"); and ("overhead") the median time a run spends outside its
    training steps."""
    by_family: dict[str, list[float]] = {}
    by_size: dict[str, list[float]] = {}
    overheads: list[float] = []
    for run_id in store.list_runs():
        try:
            result = store.read_result(run_id)
        except StoreError:
            continue
        if not result or not result.tokens_per_s or result.status != "SUCCESS" or "exact" not in result.flops:
            continue
        per_token = result.flops["exact"] / max(result.tokens, 1)
        rate = result.tokens_per_s * per_token
        by_family.setdefault(result.family, []).append(rate)
        by_size.setdefault(f"{result.family}/{result.size}", []).append(rate)
        overheads.append(max(0.0, result.wall_time_s - result.tokens / result.tokens_per_s))
    rates = {fam: statistics.median(v) for fam, v in by_family.items()}
    if rates:
        rates["*"] = statistics.median(rates.values())
        rates["overhead"] = statistics.median(overheads)
        rates |= {key: statistics.median(v) for key, v in by_size.items()}
    return rates


def cached_matmul_peak(threads: int = 1) -> float | None:
    """The dense-matmul FLOP/s `griffin-bench` cached for this machine (read without JAX), for
    a run given `threads` cores: the entry measured with that many threads, else the best
    entry's per-thread rate times `threads` (a run pinned to one core gets one core's peak)."""
    path = limits_path()
    try:
        entries = list(json.loads(path.read_text()).get("matmul_peak", {}).values())
        same = [float(e["flops_per_s"]) for e in entries if int(e["threads"]) == threads]
        if same:
            return max(same)
        return max(float(e["flops_per_s"]) / max(int(e["threads"]), 1) for e in entries) * threads
    except (OSError, ValueError, KeyError, TypeError):
        return None


def estimate_seconds(spec, rates: dict[str, float], threads: int = 1) -> float | None:
    """A run's seconds: its exact FLOPs at the store's measured rate for its family and size,
    else its family, else any family, else at ASSUMED_CPU_MFU of the cached matmul peak for its
    cores; plus the per-run overhead."""
    flops = spec.flops()["exact"]
    rate = rates.get(f"{spec.family}/{spec.size}") or rates.get(spec.family) or rates.get("*")
    if rate is None:
        peak = cached_matmul_peak(threads)
        rate = peak * ASSUMED_CPU_MFU if peak else None
    return flops / rate + rates.get("overhead", ASSUMED_OVERHEAD_S) if rate else None
