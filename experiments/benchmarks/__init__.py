"""Speed benchmarks behind `griffin-bench` (experiments/bench.py).

Every benchmark reports its figures as a ratio to a machine limit measured in the same process
(`limits`): a memory-bound kernel against a streaming triad, matmul-heavy work against the
dense-matmul peak. This module holds what they share: interleaved timing, the malloc setting
the timings are taken under, and atomic JSON output.

Timing is interleaved on purpose: the machines this runs on are often shared, and the speed a
process gets drifts by 2-3x over seconds. Timing every candidate once per round, in a shuffled
order, exposes all of them to the same drift, and a ratio taken within a round cancels most of it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import resource
except ImportError:  # not POSIX
    resource = None  # type: ignore[assignment]


@dataclass
class Rounds:
    """What `time_interleaved` measured: per callable, one entry per round."""

    seconds: dict[str, list[float]]
    page_faults: dict[str, list[int]]  # minor page faults of the whole process during the call


def time_interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int, seed: int = 0) -> Rounds:
    """Time each zero-argument callable once per round, `repeats` rounds, in a shuffled order.

    Each callable must block until its work is done (e.g. end in `jax.block_until_ready`).
    Its return value is released only after the clock stops, so freeing a large output is not
    counted. Round r is at index r of every list.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: need at least 1")
    rng = random.Random(seed)
    names = list(fns)
    rounds = Rounds({name: [] for name in names}, {name: [] for name in names})
    for _ in range(repeats):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            faults = _minor_faults()
            start = time.perf_counter()
            out = fns[name]()
            rounds.seconds[name].append(time.perf_counter() - start)
            rounds.page_faults[name].append(_minor_faults() - faults)
            del out
    return rounds


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
MALLOC_MODES = ("reuse", "no_trim", "default")

NO_TRIM_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
"""glibc settings, as environment variables read when a process starts, under which training
steps take no page faults: one arena, no mmap for large blocks, no trimming (a step's
temporaries are reused from the heap instead of faulted in afresh every step: 1.24-1.37x
tokens/s in the train benchmark). Sweep workers start with them (`launcher.malloc`)."""


def configure_malloc(mode: str = "reuse") -> dict[str, Any]:
    """Make freed large buffers reusable without page faults, for timing.

    XLA:CPU allocates every output and temporary with malloc. glibc serves a block above its
    mmap threshold (which adapts up to 32 MiB; XLA's worker threads, on their own arenas, fall
    back to mmap for large blocks too) with a fresh mmap and unmaps it on free. So every call of
    a kernel with a 64 MiB output takes 16K page faults, the OS zeroing each page: on the
    benchmark machine that costs as much as the kernel itself. 'reuse' keeps such blocks in the main heap (one arena, no mmap, trim only above
    1 GiB), so a repeated call reuses warm pages, as the NumPy triad does with its
    preallocated output. 'no_trim' also never trims (what `griffin-train` and the sweep
    workers run with: a training step's temporaries exceed 1 GiB at larger shapes). It must
    run before JAX starts its threads to take full effect. 'default' leaves malloc alone. Returns what was done, for the results' provenance.
    """
    if mode not in MALLOC_MODES:
        raise ValueError(f"malloc mode {mode!r}: expected one of {MALLOC_MODES}")
    info: dict[str, Any] = {"mode": mode, "applied": False}
    if mode == "default":
        return info
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return {**info, "note": "not glibc: left as is"}
    trim = -1 if mode == "no_trim" else 1 << 30  # -1: never trim (NO_TRIM_ENV's setting)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = [libc.mallopt(_M_ARENA_MAX, 1), libc.mallopt(_M_MMAP_MAX, 0), libc.mallopt(_M_TRIM_THRESHOLD, trim)]
    except (OSError, AttributeError) as err:
        return {**info, "note": f"mallopt unavailable: {err}"}
    return {**info, "applied": all(ok), "mallopt": {"M_ARENA_MAX": 1, "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": trim}}


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON via a temporary file in the same folder and a rename,
    so a reader never sees a half-written file."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` via a temporary file in the same folder, fsynced, and a rename."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
