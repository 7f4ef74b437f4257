"""What `griffin-bench device` measures, one function per figure: the device's copy bandwidth,
the scan variants at one shape in GB/s against it, and one model's training step (if its
memory estimate fits the device) with its MFU. The order, the time budget and the progress are
`device_bench`'s; the report is `device_report`'s.

Timing: on a dedicated accelerator the speed a program gets barely drifts, so each figure is
the best (bandwidth, scans) or the median (training steps) of a few calls after a warm-up;
the scan variants of one length are still timed in interleaved rounds
(`experiments.benchmarks.time_interleaved`), as everywhere in griffin-bench.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from statistics import median
from typing import Any

import jax
import jax.numpy as jnp

from experiments.benchmarks import limits, scan_bench, time_interleaved
from experiments.benchmarks.step_runner import StepRunner
from experiments.mfu import LABELS, nominal_chip, utilisation
from griffin_core import counting
from griffin_core import scan as scan_lib
from griffin_core.config import ModelConfig
from run_store.errors import one_line

BYTES_PER_ELEMENT = scan_bench.BYTES_PER_ELEMENT
"""A scan moves 12 bytes per element in fp32: reads a and x, writes h."""
SCAN_VARIANTS = ("sequential", "associative", "chunked", "pallas")
"""The scan implementations compared (griffin_core.scan.linear_scan's `impl`, time-major)."""
MEMORY_FRACTION = 0.8
"""Share of the device's memory a training step's estimate may take: the estimate leaves out
fragmentation, the compiled code and XLA's own workspace (docs/counting.md)."""


# --------------------------------------------------------------------------- the device


def device_memory() -> tuple[int, str]:
    """(bytes, where the figure comes from) of the default device: what its allocator may use
    (`memory_stats()['bytes_limit']`), else its chip's HBM (griffin_core.accelerators), else
    the host's available RAM (CPU)."""
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), "memory_stats"
    chip = nominal_chip(device.platform, device.device_kind)
    if chip is not None:
        return chip.hbm_bytes, f"accelerator table ({chip.name})"
    import psutil

    return int(psutil.virtual_memory().available), "host RAM available"


def matmul_peak(dtype: str, quick: bool) -> dict[str, Any]:
    """The dense-matmul peak MFU divides by where the chip has no nominal figure (CPU, or a GPU
    the accelerator table lacks), in the steps' compute dtype. Quick: a small matmul measured
    now and not cached (it would stand for the machine in the cache otherwise); else
    `limits.matmul_peak` (measured once per machine and cached)."""
    if quick:
        return {**limits.measure_matmul_peak(n=256, repeats=3, dtype=dtype), "source": "measured now (quick, n=256)"}
    return limits.matmul_peak(dtype=dtype)


# --------------------------------------------------------------------------- bandwidth


def copy_bandwidth(nbytes: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """GB/s of a jitted copy of an fp32 array of `nbytes` (read once, written once: 2 x
    `nbytes` moved), the best of `repeats` calls after a warm-up."""
    elements = max(1, nbytes // 4)
    x = jax.block_until_ready(jax.random.normal(jax.random.key(seed), (elements,), jnp.float32))
    copy = jax.jit(jnp.copy)
    jax.block_until_ready(copy(x))
    times = time_interleaved({"copy": lambda: jax.block_until_ready(copy(x))}, repeats, seed).seconds["copy"]
    moved = 2 * 4 * elements
    return {"bytes": 4 * elements, "moved_bytes": moved, "repeats": repeats, "best_ms": 1e3 * min(times),
            "times_ms": [1e3 * t for t in times], "gbps": moved / min(times) / 1e9}


# --------------------------------------------------------------------------- scans


def _row(variant: str, length: int, **fields: Any) -> dict[str, Any]:
    return {"variant": variant, "length": length, **fields}


def measure_scans(batch: int, length: int, width: int, repeats: int, copy_gbps: float, platform: str,
                  seed: int = 0) -> list[dict[str, Any]]:
    """Every variant of SCAN_VARIANTS at [length, batch, width] fp32, one row each.

    Timed rows ("status": "timed"): compile seconds, the largest difference from the
    sequential scan's output, the best time of `repeats` interleaved rounds (after one untimed
    round), GB/s at 12 bytes per element and "x_copy", that over `copy_gbps`. The Pallas
    kernel on CPU ("status": "correctness_only"): interpret mode, run once at
    `scan_bench.check_shape` against the sequential scan, never timed. Where there is no
    kernel: "status": "skipped" with the reason."""
    a, x = scan_bench.make_inputs(batch, length, width, seed, batch_major=False)[scan_bench.TIME_MAJOR]
    nbytes = BYTES_PER_ELEMENT * batch * length * width
    rows: dict[str, dict[str, Any]] = {}
    calls: dict[str, Callable[[], Any]] = {}
    reference = None
    for variant in SCAN_VARIANTS:
        unroll = scan_lib.default_unroll() if variant == "sequential" else None
        fn = scan_bench.scan_fn(variant, unroll or 1, True)
        mode = scan_bench.pallas_mode(platform) if variant == "pallas" else "kernel"
        if mode == "unavailable":
            rows[variant] = _row(variant, length, status="skipped", reason=f"no Pallas kernel on {platform}")
            continue
        if mode == "interpret":
            check = scan_bench.check_against_sequential(fn, *scan_bench.check_shape(batch, length, width), seed=seed)
            rows[variant] = _row(variant, length, status="correctness_only", mode=scan_bench.INTERPRET,
                                 check_shape=check["shape"], max_abs_diff=check["max_abs_diff"],
                                 max_abs_h=check["max_abs_h"])
            continue
        t0 = time.perf_counter()
        exe = jax.jit(fn).lower(a, x).compile()
        compile_s = time.perf_counter() - t0
        h = jax.block_until_ready(exe(a, x))
        if reference is None:  # the sequential scan, the first variant
            reference = h
        rows[variant] = _row(variant, length, status="timed", unroll=unroll, compile_s=compile_s,
                             max_abs_diff=float(jnp.max(jnp.abs(h - reference))),
                             max_abs_h=float(jnp.max(jnp.abs(reference))))
        del h
        calls[variant] = (lambda exe=exe: jax.block_until_ready(exe(a, x)))
    del reference
    if calls:
        time_interleaved(calls, 1, seed + 1)
        seconds = time_interleaved(calls, repeats, seed).seconds
        for variant, times in seconds.items():
            best = min(times)
            rows[variant].update(best_ms=1e3 * best, times_ms=[1e3 * t for t in times],
                                 gbps=nbytes / best / 1e9, x_copy=nbytes / best / 1e9 / copy_gbps)
    return [rows[v] for v in SCAN_VARIANTS]


def speedups(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The Pallas kernel's speed over lax.scan (sequential) and over the associative scan at
    one length: time of the other / time of the kernel (None unless both were timed)."""
    best = {r["variant"]: r["best_ms"] for r in rows if r["status"] == "timed"}
    pallas = best.get("pallas")
    return {f"pallas_over_{other}": (best[other] / pallas if pallas and other in best else None)
            for other in ("sequential", "associative")}


def scan_seconds_estimate(batch: int, length: int, width: int, repeats: int, copy_gbps: float,
                          compile_s: float) -> float:
    """A generous guess of one length's `measure_scans` in seconds, for the time budget: per
    variant a compile and repeats + 2 calls at 5% of the copy bandwidth or 20 us per time step,
    whichever is slower (a lax.scan on a GPU launches a kernel per step)."""
    call = max(BYTES_PER_ELEMENT * batch * length * width / (0.05 * copy_gbps * 1e9), 20e-6 * length)
    return len(SCAN_VARIANTS) * (compile_s + (repeats + 2) * call)


# --------------------------------------------------------------------------- training steps


def fits(cfg: ModelConfig, batch: int, length: int, memory: int) -> tuple[bool, float]:
    """Whether a step's memory estimate (counting.memory_per_device, one device) is within
    MEMORY_FRACTION of `memory` bytes, and the estimate."""
    need = counting.memory_per_device(cfg, batch, length)["total"]
    return need <= MEMORY_FRACTION * memory, need


def plan_step(cfg: ModelConfig, batch: int, length: int, memory: int, shrink_batch: bool
              ) -> tuple[ModelConfig, int, float] | str:
    """The first of: `cfg` as is, with remat 'full', then (if `shrink_batch`) with remat 'full'
    at half the batch, a quarter, ... down to 1, whose memory estimate fits `memory`:
    (config, batch, estimated bytes). Else the reason it does not fit."""
    tries = [(cfg, batch), (cfg.replace(remat="full"), batch)]
    b = batch // 2
    while shrink_batch and b >= 1:
        tries.append((cfg.replace(remat="full"), b))
        b //= 2
    need = 0.0
    for c, b in tries:
        ok, need = fits(c, b, length, memory)
        if ok:
            return c, b, need
    return (f"memory: needs {need / 2**30:.1f} GiB at batch {tries[-1][1]} with remat 'full' "
            f"(estimate), {MEMORY_FRACTION:.0%} of {memory / 2**30:.1f} GiB allowed")


def step_seconds_estimate(cfg: ModelConfig, batch: int, length: int, flops_per_s: float, repeats: int,
                          call_seconds: float, compile_s: float) -> float:
    """A generous guess of `time_step` in seconds, for the time budget: the compile, a warm-up
    and a calibration step at 25% of `flops_per_s`, and `repeats` calls of at least
    `call_seconds`."""
    step = counting.training_flops_per_token(cfg, length, "exact") * batch * length / (0.25 * flops_per_s)
    return compile_s + 2 * step + repeats * max(call_seconds, step)


def time_step(cfg: ModelConfig, batch: int, length: int, repeats: int, call_seconds: float,
              basis: dict[str, Any], seed: int = 0, compiler_options: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """One model's training step (experiments.benchmarks.step_runner.StepRunner: forward,
    backward and AdamW, state donated): compiled, warmed up, calibrated to `call_seconds` per
    call, then `repeats` calls. Step time is the median; MFU divides its exact FLOP/s by the
    peak `basis` names (`mfu_basis`). The runner and its state are freed before returning, so
    the next model has the device's memory. A step the device cannot run (JAX's runtime error,
    e.g. out of memory despite the estimate) is returned as skipped with the error's first line."""
    try:
        runner = StepRunner(cfg, batch, length, seed, compiler_options)
        runner.calibrate(call_seconds)
        seconds = time_interleaved({"step": runner}, repeats, seed).seconds["step"]
    except jax.errors.JaxRuntimeError as err:  # out of memory despite the estimate, say
        gc.collect()
        return {"status": "skipped", "reason": f"failed: {one_line(err, limit=200)}", "batch": batch,
                "length": length, "remat": cfg.remat}
    step_s = [t / runner.steps for t in seconds]
    med = median(step_s)
    flops = runner.flops_per_step
    use = utilisation(flops / med, basis["jax_platform"], basis["device_kind"], 1, basis["measured_peak"])
    row = {"status": "timed", "batch": batch, "length": length, "remat": cfg.remat, "dtype": cfg.dtype,
           "params": counting.count_params(cfg).total, "compile_s": runner.compile_s,
           "steps_per_call": runner.steps, "step_ms": 1e3 * med, "step_ms_rounds": [1e3 * t for t in step_s],
           "tokens_per_s": runner.tokens_per_step / med, "flops_per_step_exact": flops,
           "mfu": use.mfu, "mfu_kind": use.kind, "mfu_label": LABELS.get(use.kind, "MFU"),
           "loss_first": runner.first_loss, "loss_last": runner.losses[-1]}
    del runner  # its state and compiled step: the next model gets the device's memory
    gc.collect()
    return row


def mfu_basis(dtype: str, quick: bool) -> dict[str, Any]:
    """What the steps' MFU divides by on the default device: the chip's nominal dense bf16
    peak (griffin_core.accelerators), else a measured matmul peak in `dtype` (`matmul_peak`)."""
    device = jax.devices()[0]
    chip = nominal_chip(device.platform, device.device_kind)
    basis: dict[str, Any] = {"jax_platform": device.platform, "device_kind": device.device_kind,
                             "chip": chip.name if chip else None, "measured_peak": None, "peak_source": None}
    if chip is None:
        peak = matmul_peak(dtype, quick)
        basis.update(measured_peak=peak["flops_per_s"], peak_dtype=dtype,
                     peak_source=f"{peak['source']}, n={peak['shape'][0]}")
    basis["flops_per_s"] = chip.peak_bf16_flops if chip else basis["measured_peak"]
    kind = utilisation(1.0, device.platform, device.device_kind, 1, basis["measured_peak"]).kind
    basis.update(kind=kind, label=LABELS.get(kind, "MFU"))
    return basis
