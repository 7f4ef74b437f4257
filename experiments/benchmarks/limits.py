"""Machine limits that benchmark figures are divided by.

- Streaming bandwidth: a triad `a = b + s * c` over large fp32 arrays (12 bytes per element:
  read b, read c, write a), timed in the caller's process next to the kernel it judges, never
  cached: contention on a shared machine changes it from one minute to the next. Two
  implementations, and the faster is the limit:
    * XLA: the triad jitted with JAX. XLA's CPU backend splits large elementwise loops over
      its thread pool, and its output is a fresh buffer, as a scan's output is.
    * NumPy: one thread per usable core, each streaming its share of the arrays in
      cache-sized blocks into a preallocated output (NumPy ufuncs release the GIL).
- Dense-matmul peak (FLOP/s of a square matmul, 2 n^3 per product, best of several), used
  for MFU. It is measured once per machine and thread count and cached with its provenance
  in `limits.json` under the cache folder (`GRIFFIN_CACHE_DIR`, default
  ~/.cache/griffin-scaling). An entry is reused while its key (CPU model, threads, JAX
  version, backend, device kind, dtype) matches; `force=True` re-measures.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from statistics import median

from experiments.benchmarks import time_interleaved, write_json_atomic
from run_store.locations import limits_path

CACHE_SCHEMA_VERSION = 1
TRIAD_SCALAR = 2.5
# Elements per NumPy triad block: 3 arrays x 16K fp32 = 192 KiB, inside a core's L2, so the
# two passes a NumPy triad needs (c*s into a, then a += b) cost one trip to memory.
_NUMPY_BLOCK = 1 << 14


# --------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which a launcher may have narrowed)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def effective_threads() -> int:
    """Threads XLA's CPU backend will use for a matmul: the usable cores, unless XLA_FLAGS
    narrows it (`intra_op_parallelism_threads=N`, or `--xla_cpu_multi_thread_eigen=false`,
    which makes Eigen's matmuls single-threaded)."""
    flags = os.environ.get("XLA_FLAGS", "")
    threads = usable_cores()
    match = re.search(r"intra_op_parallelism_threads=(\d+)", flags)
    if match and int(match.group(1)) > 0:
        threads = min(threads, int(match.group(1)))
    if re.search(r"xla_cpu_multi_thread_eigen=(false|0)", flags, re.IGNORECASE):
        threads = 1
    return threads


def machine_key(dtype: str = "float32") -> dict[str, Any]:
    """What a cached limit depends on. A different value means measure again."""
    device = jax.devices()[0]
    return {
        "cpu_model": cpu_model(),
        "threads": effective_threads(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "dtype": dtype,
    }


def machine_info() -> dict[str, Any]:
    """Provenance printed with and stored beside every benchmark figure."""
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "threads": effective_threads(),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "jax_version": jax.__version__,
        "jaxlib_version": _jaxlib_version(),
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "date": now_iso(),
    }


def _jaxlib_version() -> str | None:
    with contextlib.suppress(Exception):
        import jaxlib

        return jaxlib.__version__
    return None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------- streaming triad


@dataclass
class Probe:
    """One timed operation: `run()` does it once and blocks until done; it moves `bytes`."""

    name: str
    bytes: int
    run: Callable[[], Any]
    close: Callable[[], None] = field(default=lambda: None)


def xla_triad(b: jax.Array, c: jax.Array) -> Probe:
    """a = b + s c, jitted; b and c: same shape, fp32. Warmed up (compiled) on return."""
    fn = jax.jit(lambda b, c: b + jnp.float32(TRIAD_SCALAR) * c)
    jax.block_until_ready(fn(b, c))
    return Probe("triad XLA", 3 * b.size * 4, lambda: jax.block_until_ready(fn(b, c)))


def numpy_triad(b: np.ndarray, c: np.ndarray, threads: int) -> Probe:
    """a = b + s c with NumPy on `threads` threads, each over a contiguous share of the
    (flattened) arrays, block by block, into a preallocated output."""
    b = np.ascontiguousarray(b, np.float32).reshape(-1)
    c = np.ascontiguousarray(c, np.float32).reshape(-1)
    a = np.empty_like(b)
    s = np.float32(TRIAD_SCALAR)
    threads = max(1, min(threads, b.size // _NUMPY_BLOCK or 1))
    bounds = np.linspace(0, b.size, threads + 1).astype(np.int64)

    def share(k: int) -> None:
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        for i in range(lo, hi, _NUMPY_BLOCK):
            j = min(i + _NUMPY_BLOCK, hi)
            np.multiply(c[i:j], s, out=a[i:j])
            np.add(a[i:j], b[i:j], out=a[i:j])

    pool = ThreadPoolExecutor(threads, thread_name_prefix="triad") if threads > 1 else None

    def run() -> None:
        if pool is None:
            share(0)
        else:
            for done in [pool.submit(share, k) for k in range(threads)]:
                done.result()

    run()  # touch the output's pages once, outside any timing
    close = pool.shutdown if pool is not None else (lambda: None)
    return Probe(f"triad NumPy {threads} thr", 3 * b.size * 4, run, close)


def triad_probes(b: jax.Array, c: jax.Array, threads: int | None = None) -> list[Probe]:
    """The XLA triad and the NumPy triad on `threads` threads (default: all usable cores) and
    on one thread, over the same data. A single-threaded kernel (like the scan) is bounded by
    what one core can stream, which on a shared VM is sometimes as much as two cores get."""
    threads = threads or usable_cores()
    b_np, c_np = np.asarray(b), np.asarray(c)
    probes = [xla_triad(b, c), numpy_triad(b_np, c_np, threads)]
    if threads > 1:
        probes.append(numpy_triad(b_np, c_np, 1))
    return probes


@contextlib.contextmanager
def opened(probes: list[Probe]) -> Iterator[list[Probe]]:
    try:
        yield probes
    finally:
        for probe in probes:
            probe.close()


def measure_bandwidth(shape: tuple[int, ...] = (2048, 8, 1024), repeats: int = 9, seed: int = 0
                      ) -> dict[str, Any]:
    """Streaming bandwidth on its own (`griffin-bench limits`): each triad's median GB/s and
    the best of them. Benchmarks that need a ratio time the probes beside their own kernels."""
    kb, kc = jax.random.split(jax.random.key(seed))
    b = jax.random.normal(kb, shape, jnp.float32)
    c = jax.random.normal(kc, shape, jnp.float32)
    with opened(triad_probes(b, c)) as probes:
        rounds = time_interleaved({p.name: p.run for p in probes}, repeats, seed)
        times = rounds.seconds
        rows = {p.name: {"median_s": median(times[p.name]), "best_s": min(times[p.name]),
                         "gbps": p.bytes / median(times[p.name]) / 1e9,
                         "page_faults": median(rounds.page_faults[p.name])} for p in probes}
    best = max(rows, key=lambda name: rows[name]["gbps"])
    return {"shape": list(shape), "repeats": repeats, "triads": rows, "limit": best,
            "gbps": rows[best]["gbps"]}


# --------------------------------------------------------------------------- matmul peak


def measure_matmul_peak(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> dict[str, Any]:
    """FLOP/s of an n x n by n x n matmul (2 n^3 FLOPs), best of `repeats` after a warm-up."""
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (n, n), jnp.float32).astype(dtype)
    y = jax.random.normal(ky, (n, n), jnp.float32).astype(dtype)
    fn = jax.jit(jnp.matmul)
    jax.block_until_ready(fn(x, y))
    times = time_interleaved({"matmul": lambda: jax.block_until_ready(fn(x, y))}, repeats).seconds["matmul"]
    best = min(times)
    return {"flops_per_s": 2.0 * n**3 / best, "shape": [n, n, n], "dtype": dtype,
            "repeats": repeats, "times_s": times, "best_s": best}


def cache_path() -> Path:
    """This machine's limits cache (run_store.locations.limits_path; GRIFFIN_CACHE_DIR moves it)."""
    return limits_path()


def _key_id(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        print(f"griffin-bench: ignoring unreadable limits cache {path}: {err}", file=sys.stderr)
        return {}
    if not isinstance(data, dict) or data.get("schema_version") != CACHE_SCHEMA_VERSION:
        return {}
    return data


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise measuring and writing between processes (two runs starting together would
    otherwise both measure, each slowed by the other)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):
        yield


def matmul_peak(force: bool = False, n: int = 2048, repeats: int = 5, dtype: str = "float32"
                ) -> dict[str, Any]:
    """The dense-matmul peak of this machine and thread count, from the cache if its key
    matches, else measured now and stored. Returns the cached record (with "flops_per_s",
    "key", "measured_at", the shape and timings) plus "source": "cache" or "measured" and
    "cache_path"."""
    path = cache_path()
    key = machine_key(dtype)
    key_id = _key_id(key)
    with _locked(path):
        data = _read_cache(path)
        entries = data.get("matmul_peak", {})
        if not force and isinstance(entries.get(key_id), dict):
            return {**entries[key_id], "source": "cache", "cache_path": str(path)}
        record = {"key": key, "measured_at": now_iso(), "cpu_model": key["cpu_model"],
                  "threads": key["threads"], **measure_matmul_peak(n, repeats, dtype)}
        entries = {**entries, key_id: record}
        write_json_atomic(path, {"schema_version": CACHE_SCHEMA_VERSION, "matmul_peak": entries})
    return {**record, "source": "measured", "cache_path": str(path)}
