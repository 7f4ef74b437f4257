"""The launcher section's values, checked before anything starts (`check_launcher`): kinds,
ranges and formats, one `ConfigError` naming the key. Plain Python, no Ray: a dry run checks
the same. What needs the machine or the cluster (cores, GPUs, a reachable address, a node big
enough for one run) is checked by `launch.resources`.

Hydra's schema (`conf.schema.LauncherConf`) already refuses a wrong type (`cpus_per_run=abc`);
these are the rules a type cannot say.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from griffin_core.config import ConfigError

KINDS = ("local", "cluster", "tpu")
AT_LEAST_ONE = ("cpus_per_run", "num_slices", "distributed_timeout_s")
"""Whole numbers of at least 1."""
AT_LEAST_ZERO = {"gpus_per_run": "GPUs per run", "max_parallel": "0 = as many runs at once as resources allow",
                 "preemption_retries": "retries", "failure_retries": "retries"}
"""Whole numbers of at least 0, and what the number counts."""
SECONDS = ("lease_timeout_s", "heartbeat_s", "poll_s")
"""Positive, finite numbers of seconds."""
ADDRESS_RE = re.compile(r"(?:ray://)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d+)")
"""HOST:PORT (an IPv6 host in brackets), or ray://HOST:PORT for Ray Client."""
NAMED_ADDRESSES = ("auto", "local")
"""Ray's own names: `auto` joins the cluster this machine belongs to; `local` starts one."""
TOPOLOGY_RE = re.compile(r"\d+(?:x\d+)+")
HOOK_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def check_launcher(launcher: Mapping[str, Any]) -> None:
    """ConfigError naming the first launcher key whose value cannot work (see the module doc)."""
    def bad(key: str, rule: str) -> ConfigError:
        return ConfigError(f"launcher.{key}={launcher[key]!r} {rule}")

    if launcher["kind"] not in KINDS:
        raise ConfigError(f"launcher.kind={launcher['kind']!r} is unknown; known: {list(KINDS)}")
    for key in AT_LEAST_ONE:
        if not _whole(launcher[key]) or launcher[key] < 1:
            raise bad(key, "must be a whole number of at least 1")
    for key, what in AT_LEAST_ZERO.items():
        if not _whole(launcher[key]) or launcher[key] < 0:
            raise bad(key, f"must be a whole number of at least 0 ({what})")
    for key in SECONDS:
        value = launcher[key]
        if not _number(value) or not math.isfinite(value) or value <= 0:
            raise bad(key, "must be a positive number of seconds")
    if launcher["heartbeat_s"] >= launcher["lease_timeout_s"]:
        raise ConfigError(f"launcher.heartbeat_s={launcher['heartbeat_s']!r} must be below launcher.lease_timeout_s="
                          f"{launcher['lease_timeout_s']!r} (a live run would look abandoned and be taken over)")
    mfu = launcher["assumed_mfu"]
    if not _number(mfu) or not 0 < mfu <= 1:
        raise bad("assumed_mfu", "must be a fraction in (0, 1] (model-FLOPs utilisation)")
    address = launcher["ray_address"]
    if address is not None and address not in NAMED_ADDRESSES and not _valid_address(str(address)):
        raise bad("ray_address", "is not a Ray address: HOST:PORT (e.g. 10.0.0.1:6379), ray://HOST:PORT, auto, "
                                 "or null for an embedded local Ray")
    topology = launcher["tpu_topology"]
    if topology is not None and not TOPOLOGY_RE.fullmatch(str(topology)):
        raise bad("tpu_topology", "is not a chip topology such as 2x2x2 or 4x4")
    hook = launcher["worker_setup_hook"]
    if hook is not None and not HOOK_RE.fullmatch(str(hook)):
        raise bad("worker_setup_hook", "is not 'package.module.function'")
    for key in ("compile_cache",):
        if launcher[key] is not None and not str(launcher[key]).strip():
            raise bad(key, "is empty: give a folder or URL, or null for the default")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return _number(value) and float(value).is_integer()


def _valid_address(address: str) -> bool:
    match = ADDRESS_RE.fullmatch(address)
    return bool(match) and 0 < int(match.group("port")) < 65536
