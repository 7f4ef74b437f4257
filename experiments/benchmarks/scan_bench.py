"""`griffin-bench scan`: the RG-LRU recurrence h_t = a_t h_{t-1} + x_t, every implementation in
griffin_core/scan.py, judged against a streaming triad timed in the same process.

The scan is memory-bound: per element it reads a and x and writes h, 12 bytes in fp32, for
2 FLOPs. Its speed is therefore reported in GB/s (12 bytes x B x T x D / time) and as a ratio to
the triad `a = b + s c` over arrays of the same size (also 12 bytes per element), the best a
streaming kernel gets from this machine's memory. The default shape is the paper's Fig 8a
setting: batch 8, length 2048, width 1024, fp32.

Variants:
  - sequential `lax.scan` over time-major [T, B, D] arrays, one per unroll value;
  - `lax.associative_scan` over the time axis of [T, B, D];
  - 'chunked': sequential inside chunks of `scan.CHUNK` steps, associative across them;
  - 'auto' on CPU: the recurrence the models run there, written in place over x's buffer
    (x donated; each timed call gets a copy made beforehand);
  - 'pallas': the Pallas kernel (griffin_core/scan_pallas.py). On TPU and CUDA it is a compiled
    kernel and is timed like the rest. On CPU it runs in Pallas interpret mode, a correctness
    path only: it is run once at a small shape (`PALLAS_CHECK_SHAPE` or smaller) against the
    sequential scan, marked "interpret (correctness only)" and never timed. Platforms without
    a kernel (ROCm) leave it out;
  - [B, T, D] arrays through `linear_scan(..., time_major=False)`: the same sequential scan
    plus what the layout costs: transposing a and x on the way in and h on the way out.

Each timed variant is compiled once (ahead of time, its compile time recorded), run once to
warm up and to check its output against the first variant, then, after one untimed round,
timed in interleaved rounds with the triads (see `experiments.benchmarks.time_interleaved`).
Reported: the median time, GB/s at that median, and the median over rounds of the ratio to the
best triad of the same round. The target on CPU: the best variant at `TARGET_X_TRIAD` (0.8x)
of the triad or more.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from statistics import median

from experiments.benchmarks import limits, time_interleaved
from griffin_core import scan as scan_lib
from griffin_core.scan_pallas import PLATFORMS
from run_store.cli import positive_int, positive_int_list

DEFAULT_BATCH, DEFAULT_LENGTH, DEFAULT_WIDTH = 8, 2048, 1024
DEFAULT_UNROLLS = (1, 2, 4, 8, 16, 128)
DEFAULT_REPEATS = 7
BYTES_PER_ELEMENT = 12  # fp32: read a, read x, write h
TARGET_X_TRIAD = 0.8
"""CPU target: the best variant's median ratio to the streaming triad (issue 12; was 0.5)."""
PALLAS_CHECK_SHAPE = (2, 256, 128)
"""(batch, length, width) at most, of the one interpret-mode run of the Pallas kernel on CPU."""
INTERPRET = "interpret (correctness only)"
"""How tables name the Pallas kernel's interpret mode: checked, never timed."""

TIME_MAJOR, BATCH_MAJOR = "[T,B,D]", "[B,T,D]"


@dataclass(frozen=True)
class Variant:
    """One scan implementation: `fn(a, x) -> h`, all three arrays in `layout`."""

    name: str
    impl: str
    layout: str
    unroll: int | None
    fn: Callable[[jax.Array, jax.Array], jax.Array]
    timed: bool = True
    """False for the Pallas kernel in interpret mode (CPU): checked once, never timed."""
    donate_x: bool = False
    """x's buffer is given to the program (the 'auto' CPU scan writes h over it, as in the
    model, where x is an intermediate): each timed call gets its own copy, made beforehand."""


def scan_fn(impl: str, unroll: int, time_major: bool) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """`fn(a, x) -> h`: `linear_scan` by `impl` from a zero state; arrays [T, B, D] if
    `time_major` else [B, T, D], h fp32."""
    def fn(a: jax.Array, x: jax.Array) -> jax.Array:
        h, _ = scan_lib.linear_scan(a, x, None, impl=impl, unroll=unroll, time_major=time_major)
        return h

    return fn


def pallas_mode(platform: str) -> str:
    """How the Pallas kernel runs on `platform` (scan.current_platform()): 'kernel' (TPU,
    CUDA: timed), 'interpret' (CPU: a correctness path, never timed) or 'unavailable'."""
    if platform == "cpu":
        return "interpret"
    return "kernel" if platform in PLATFORMS else "unavailable"


def build_variants(unrolls: Sequence[int] = DEFAULT_UNROLLS, batch_major_unroll: int | None = None,
                   platform: str | None = None) -> list[Variant]:
    """The variants, the first being the reference for the numerical check.
    `batch_major_unroll` defaults to this backend's default unroll (`scan.default_unroll`);
    `platform` (default: this process's) decides whether the Pallas kernel is timed, checked
    in interpret mode only, or left out (`pallas_mode`)."""
    unrolls = list(dict.fromkeys(unrolls))  # unique, in order: names must not collide
    if not unrolls or min(unrolls) < 1:
        raise ValueError(f"unrolls must be positive integers, got {unrolls}")
    bm_unroll = batch_major_unroll or scan_lib.default_unroll()
    variants = [Variant(f"sequential {TIME_MAJOR} unroll={u}", "sequential", TIME_MAJOR, u,
                        scan_fn("sequential", u, True)) for u in unrolls]
    for impl in ("associative", "chunked"):
        variants.append(Variant(f"{impl} {TIME_MAJOR}", impl, TIME_MAJOR, None, scan_fn(impl, 1, True)))
    mode = pallas_mode(platform or scan_lib.current_platform())
    if mode == "interpret":  # on CPU 'auto' is its own recurrence (in place); elsewhere the kernel
        variants.append(Variant(f"auto {TIME_MAJOR} (in place, x donated)", "auto", TIME_MAJOR, None,
                                scan_fn("auto", 1, True), donate_x=True))
    if mode != "unavailable":
        variants.append(Variant(f"pallas {TIME_MAJOR}", "pallas", TIME_MAJOR, None, scan_fn("pallas", 1, True),
                                timed=mode == "kernel"))
    variants.append(Variant(f"sequential {BATCH_MAJOR} unroll={bm_unroll} (swapaxes)", "sequential",
                            BATCH_MAJOR, bm_unroll, scan_fn("sequential", bm_unroll, False)))
    return variants


def check_shape(batch: int, length: int, width: int) -> tuple[int, int, int]:
    """The interpret-mode check's (batch, length, width): the timed shape, capped by
    `PALLAS_CHECK_SHAPE`."""
    return tuple(min(v, cap) for v, cap in zip((batch, length, width), PALLAS_CHECK_SHAPE))  # type: ignore[return-value]


def check_against_sequential(fn: Callable[[jax.Array, jax.Array], jax.Array], batch: int, length: int,
                             width: int, seed: int = 0) -> dict[str, Any]:
    """Run the time-major `fn` once at [length, batch, width] (inputs of `make_inputs`) next to
    the sequential scan (unroll 1): its compile-and-run seconds, the largest absolute
    difference and the largest |h| of the reference."""
    a, x = make_inputs(batch, length, width, seed, batch_major=False)[TIME_MAJOR]
    reference = jax.jit(scan_fn("sequential", 1, True))(a, x)
    t0 = time.perf_counter()
    h = jax.block_until_ready(jax.jit(fn)(a, x))
    seconds = time.perf_counter() - t0
    return {"shape": {"batch": batch, "length": length, "width": width}, "seconds": seconds,
            "max_abs_diff": float(jnp.max(jnp.abs(h - reference))), "max_abs_h": float(jnp.max(jnp.abs(reference)))}


def make_inputs(batch: int, length: int, width: int, seed: int = 0, batch_major: bool = True
                ) -> dict[str, tuple[jax.Array, jax.Array]]:
    """{layout: (a, x)}, fp32. a is uniform in [0.001, 1), strictly inside (0, 1) as the
    RG-LRU's a_t is; x is standard normal. The [B, T, D] pair (unless not `batch_major`) is the
    [T, B, D] pair transposed, materialised here so that only the transposes inside
    `linear_scan` are timed."""
    ka, kx = jax.random.split(jax.random.key(seed))
    shape = (length, batch, width)
    a = jax.random.uniform(ka, shape, jnp.float32, minval=1e-3, maxval=1.0)
    x = jax.random.normal(kx, shape, jnp.float32)
    out = {TIME_MAJOR: (a, x)}
    if batch_major:
        transpose = jax.jit(lambda t: jnp.swapaxes(t, 0, 1))
        out[BATCH_MAJOR] = (transpose(a), transpose(x))
    return jax.block_until_ready(out)


def to_time_major(h: jax.Array, layout: str) -> jax.Array:
    return h if layout == TIME_MAJOR else jnp.swapaxes(h, 0, 1)


def _timed_call(exe: Callable[..., jax.Array], a: jax.Array, x: jax.Array, copies: int = 0
                ) -> Callable[[], jax.Array]:
    """A call of `exe(a, x)`; with `copies`, x is donated: that many copies of it are made now
    and each call consumes one, so the copying is not timed."""
    if not copies:
        return lambda: jax.block_until_ready(exe(a, x))
    fresh = [jax.block_until_ready(jnp.copy(x)) for _ in range(copies)]
    return lambda: jax.block_until_ready(exe(a, fresh.pop()))


def run_scan_bench(batch: int = DEFAULT_BATCH, length: int = DEFAULT_LENGTH, width: int = DEFAULT_WIDTH,
                   repeats: int = DEFAULT_REPEATS, unrolls: Sequence[int] = DEFAULT_UNROLLS,
                   batch_major_unroll: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Time every variant and the triads; return the figures as a JSON-ready dict."""
    if min(batch, length, width, repeats) < 1:
        raise ValueError(f"batch, length, width and repeats must be >= 1, got "
                         f"{batch}, {length}, {width}, {repeats}")
    inputs = make_inputs(batch, length, width, seed)
    variants = build_variants(unrolls, batch_major_unroll)
    timed = [v for v in variants if v.timed]
    elements = batch * length * width
    nbytes = BYTES_PER_ELEMENT * elements

    # Compile, warm up, and check each output against the first variant's.
    fns: dict[str, Callable[[], Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    reference, scale = None, 0.0
    for v in timed:
        a, x = inputs[v.layout]
        t0 = time.perf_counter()
        exe = jax.jit(v.fn, donate_argnums=(1,) if v.donate_x else ()).lower(a, x).compile()
        compile_s = time.perf_counter() - t0
        h = to_time_major(jax.block_until_ready(exe(a, jnp.copy(x) if v.donate_x else x)), v.layout)
        if reference is None:
            reference, scale = h, float(jnp.max(jnp.abs(h)))
        diff = float(jnp.max(jnp.abs(h - reference)))
        del h
        # Donating variants: one copy per round, the untimed round included.
        fns[v.name] = _timed_call(exe, a, x, copies=repeats + 1 if v.donate_x else 0)
        rows[v.name] = {"name": v.name, "impl": v.impl, "layout": v.layout, "unroll": v.unroll, "timed": True,
                        "compile_s": compile_s, "max_abs_diff": diff, "max_abs_h": scale}
    del reference
    for v in variants:
        if not v.timed:  # the Pallas kernel in interpret mode: checked at a small shape, not timed
            check = check_against_sequential(v.fn, *check_shape(batch, length, width), seed=seed)
            rows[v.name] = {"name": v.name, "impl": v.impl, "layout": v.layout, "unroll": v.unroll, "timed": False,
                            "mode": INTERPRET, "check_shape": check["shape"], "check_s": check["seconds"],
                            "max_abs_diff": check["max_abs_diff"], "max_abs_h": check["max_abs_h"]}

    a_tm, x_tm = inputs[TIME_MAJOR]
    with limits.opened(limits.triad_probes(a_tm, x_tm)) as probes:
        for p in probes:
            fns[p.name] = p.run
        # One untimed round first: the allocator settles (with `--malloc reuse` the heap has to
        # grow to hold the buffers in flight before freed ones are reused) and caches warm.
        time_interleaved(fns, 1, seed + 1)
        rounds = time_interleaved(fns, repeats, seed)
        times, faults = rounds.seconds, rounds.page_faults
        triad_bytes = {p.name: p.bytes for p in probes}

    # The limit in round r is the faster triad of that round; ratios are taken round by round.
    limit_gbps = [max(triad_bytes[name] / times[name][r] for name in triad_bytes) / 1e9
                  for r in range(repeats)]
    triads = {}
    for name, b in triad_bytes.items():
        triads[name] = {"median_ms": 1e3 * median(times[name]), "best_ms": 1e3 * min(times[name]),
                        "gbps": b / median(times[name]) / 1e9,
                        "ratio": median([b / times[name][r] / 1e9 / limit_gbps[r] for r in range(repeats)]),
                        "page_faults": median(faults[name]), "times_ms": [1e3 * t for t in times[name]]}
    for v in timed:
        ts = times[v.name]
        rows[v.name].update({
            "median_ms": 1e3 * median(ts), "best_ms": 1e3 * min(ts), "gbps": nbytes / median(ts) / 1e9,
            "ratio": median([nbytes / ts[r] / 1e9 / limit_gbps[r] for r in range(repeats)]),
            "page_faults": median(faults[v.name]), "times_ms": [1e3 * t for t in ts]})
    best = max((rows[v.name] for v in timed), key=lambda row: row["ratio"])
    best_time_major = max((rows[v.name] for v in timed if v.impl == "sequential" and v.layout == TIME_MAJOR),
                          key=lambda row: row["ratio"])
    return {
        "benchmark": "scan",
        "machine": limits.machine_info(),
        "shape": {"batch": batch, "length": length, "width": width},
        "dtype": "float32",
        "bytes_per_element": BYTES_PER_ELEMENT,
        "bytes": nbytes,
        "repeats": repeats,
        "seed": seed,
        "limit": {"name": max(triads, key=lambda n: triads[n]["gbps"]), "gbps": median(limit_gbps),
                  "per_round_gbps": limit_gbps, "triads": triads},
        "variants": [rows[v.name] for v in variants],
        "best": best["name"],
        "best_unroll": best_time_major["unroll"],
        "default_unroll": scan_lib.default_unroll(),
        "target": {"x_triad": TARGET_X_TRIAD, "best_x_triad": best["ratio"], "met": best["ratio"] >= TARGET_X_TRIAD,
                   "applies": scan_lib.current_platform() == "cpu"},
    }


def _ms(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.3f}"


def render(result: dict[str, Any]) -> None:
    """Print the figures as a table."""
    from rich.console import Console
    from rich.table import Table

    s, m = result["shape"], result["machine"]
    table = Table(title=(f"RG-LRU scan  B={s['batch']} T={s['length']} D={s['width']} fp32, "
                         f"{result['bytes_per_element']} B/element, median of {result['repeats']}"),
                  caption=(f"limit: best triad per round, median {result['limit']['gbps']:.2f} GB/s. "
                           f"x triad: median over rounds of GB/s / limit in the same round. "
                           f"{m['cpu_model']}, {m['usable_cores']} cores, jax {m['jax_version']}, "
                           f"malloc {result.get('malloc', {}).get('mode', 'default')}"))
    table.add_column("variant", no_wrap=True)
    table.add_column("time ms", justify="right", no_wrap=True)
    table.add_column("GB/s", justify="right")
    table.add_column("x triad", justify="right")
    table.add_column("page faults", justify="right")
    for row in result["variants"]:
        if not row.get("timed", True):
            table.add_row(row["name"], row["mode"], "-", "-", "-", style="dim")
            continue
        style = "bold green" if row["name"] == result["best"] else None
        table.add_row(row["name"], _ms(row["median_ms"]), f"{row['gbps']:.2f}", f"{row['ratio']:.2f}",
                      f"{row['page_faults']:.0f}", style=style)
    table.add_section()
    for name, row in result["limit"]["triads"].items():
        table.add_row(name, _ms(row["median_ms"]), f"{row['gbps']:.2f}", f"{row['ratio']:.2f}",
                      f"{row['page_faults']:.0f}", style="dim")
    console = Console(width=max(110, Console().width))
    console.print(table)
    bad = [row["name"] for row in result["variants"]
           if not row["max_abs_diff"] <= 1e-3 * max(1.0, row["max_abs_h"])]
    if bad:
        console.print(f"[bold red]outputs disagree with the first variant (a checked-only row: with the "
                      f"sequential scan): {', '.join(bad)}")
    console.print(f"best: {result['best']}; best time-major unroll {result['best_unroll']} "
                  f"(griffin_core.scan default on {result['machine']['backend']}: "
                  f"{result['default_unroll']})")
    for row in result["variants"]:
        if not row.get("timed", True):
            c = row["check_shape"]
            console.print(f"{row['name']}: {row['mode']}: run once at B={c['batch']} T={c['length']} "
                          f"D={c['width']} against the sequential scan (max |diff| {row['max_abs_diff']:.2g}), "
                          f"never timed")
    t = result["target"]
    verdict = ("[green]met" if t["met"] else "[red]not met") if t["applies"] else "not a target off CPU (see griffin-bench device)"
    console.print(f"target (CPU): best variant >= {t['x_triad']:.1f}x the triad: {t['best_x_triad']:.2f}x, {verdict}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH, help="batch B (default %(default)s)")
    parser.add_argument("--length", type=positive_int, default=DEFAULT_LENGTH, help="sequence length T (default %(default)s)")
    parser.add_argument("--width", type=positive_int, default=DEFAULT_WIDTH, help="recurrence width D (default %(default)s)")
    parser.add_argument("--unrolls", type=positive_int_list, default=list(DEFAULT_UNROLLS),
                        help="lax.scan unroll values for the time-major scan (default 1,2,4,8,16,128)")
    parser.add_argument("--batch-major-unroll", type=positive_int, default=None,
                        help="unroll of the [B,T,D] variant (default: griffin_core.scan's default)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    result = run_scan_bench(batch=args.batch, length=args.length, width=args.width,
                            repeats=args.repeats or DEFAULT_REPEATS, unrolls=args.unrolls,
                            batch_major_unroll=args.batch_major_unroll, seed=args.seed)
    result["malloc"] = getattr(args, "malloc_info", {"mode": "default", "applied": False})
    render(result)
    return result
