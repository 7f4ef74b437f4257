"""`griffin-bench train`: speed of the whole training step (forward, backward, AdamW update) of
each family, as tokens/s and as MFU.

MFU = (training FLOPs per token under the 'exact' convention of griffin_core.counting x tokens
per step / step time) / the dense-matmul peak of this machine, which `limits.matmul_peak()`
measures once and caches with its provenance. The FLOPs are what an ideal implementation must
compute (causal attention counted once per kept logit), so MFU charges the implementation for
everything it spends beyond that.

On a shared machine the speed a process gets drifts by 2-3x within seconds, and the cached peak
was measured at another moment. So a square fp32 matmul of the peak's size is also timed in
every round, and "x matmul" is the step's FLOP/s over that matmul's FLOP/s in the same round
(median over rounds): it says how close the step comes to the matmul speed the process had at
that moment.

What is timed (see `run_train_bench`):
  - the fixed shape of the issue (D 256, depth 6, T 512, batch 16, heads 4, D_RNN 352 in 16
    gate blocks, local window 256 = T/2 as in the paper, byte vocabulary, fp32), one jitted
    `train_step` per family with the state donated as in training, after compiling, one
    warm-up step and one untimed round; then `--repeats` interleaved rounds. The Griffin/MQA
    and Hawk/MQA step-time ratios are taken inside each round.
  - the CPU ladder (`griffin_core.sizes.CPU_SIZES`) at T 256, batch 16: each size and family
    runs enough steps per timed call to last about a quarter of a second, because the small
    widths are bound by per-operation dispatch, not by arithmetic.
  - glibc malloc: with its default settings every large buffer XLA allocates is a fresh mmap,
    page-faulted in on first touch (see `configure_malloc`), and a step's temporaries are one
    block of gigabytes. The setting is process-wide and must precede JAX's threads, so the
    comparison runs child processes of this benchmark, one setting after another in rotating
    order (`MALLOC_SETTINGS`), each timing the fixed shape. This process itself runs with
    `--malloc reuse` and trimming off (`disable_trim`) unless told otherwise.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from experiments.benchmarks import limits, median, time_interleaved
from griffin_core import counting
from griffin_core.config import ModelConfig
from griffin_core.model import init_params
from griffin_core.optim import OptimSpec, learning_rate_schedule, make_optimizer
from griffin_core.sizes import CPU_SIZES, model_config
from griffin_core.train_step import init_state, train_step

FAMILIES = ("mqa", "hawk", "griffin")
# The fixed shape. D_RNN = 4D/3 = 341 is rounded to 352 so that 16 gate blocks divide it.
DEFAULT_SHAPE = dict(width=256, depth=6, num_heads=4, lru_width=352, num_gate_blocks=16,
                     local_window=256, vocab_size=256, length=512, batch=16)
DEFAULT_REPEATS = 5
LADDER_LENGTH, LADDER_BATCH = 256, 16
LADDER_CALL_SECONDS = 0.25  # each timed ladder call runs this long at least (dispatch-bound sizes)
MALLOC_REPEATS = 3
TARGET_MFU, TARGET_GRIFFIN_OVER_MQA = 0.40, 1.0
MALLOC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
              "MALLOC_TOP_PAD_")


# --------------------------------------------------------------------------- one model's step


class StepRunner:
    """A compiled train step of `cfg` on a fixed random batch, holding its (donated) state.

    `__call__` runs `steps` optimiser steps and blocks until the last is done."""

    def __init__(self, cfg: ModelConfig, batch: int, length: int, seed: int = 0) -> None:
        self.cfg, self.batch, self.length = cfg, batch, length
        spec = OptimSpec(lr=1e-3, total_steps=1000, warmup_steps=10)  # the update's cost is what counts
        optimizer = make_optimizer(spec)
        self.state = init_state(init_params(cfg, jax.random.PRNGKey(seed)), optimizer)
        tokens = jax.random.randint(jax.random.PRNGKey(seed + 1), (batch, length + 1), 0, cfg.vocab_size)
        self.data = {"tokens": tokens[:, :-1], "targets": tokens[:, 1:],
                     "segment_pos": jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length)),
                     "loss_mask": jnp.ones((batch, length), jnp.float32)}
        step = jax.jit(functools.partial(train_step, cfg, optimizer, learning_rate_schedule(spec)),
                       donate_argnums=0)
        t0 = time.perf_counter()
        self.step = step.lower(self.state, self.data).compile()
        self.compile_s = time.perf_counter() - t0
        memory = self.step.memory_analysis()
        self.temp_bytes = int(getattr(memory, "temp_size_in_bytes", 0) or 0)
        self.steps = 1
        self.losses: list[float] = []
        self.run(1)  # warm-up: the first call also settles the allocator
        self.first_loss = self.losses[0]

    def run(self, steps: int) -> Any:
        metrics = None
        for _ in range(steps):
            self.state, metrics = self.step(self.state, self.data)
        jax.block_until_ready((self.state, metrics))
        self.losses.append(float(metrics["loss"]))
        return metrics

    def __call__(self) -> Any:
        return self.run(self.steps)

    def calibrate(self, min_seconds: float) -> int:
        """Steps per call so that one call lasts at least `min_seconds`."""
        t0 = time.perf_counter()
        self.run(1)
        one = max(time.perf_counter() - t0, 1e-6)
        self.steps = max(1, math.ceil(min_seconds / one))
        return self.steps

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.length

    @property
    def flops_per_step(self) -> float:
        return counting.training_flops_per_token(self.cfg, self.length, "exact") * self.tokens_per_step


def matmul_probe(n: int) -> tuple[Callable[[], Any], float]:
    """A jitted n x n fp32 matmul (compiled and warmed up) and its FLOPs, 2 n^3."""
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (n, n), jnp.float32)
    y = jax.random.normal(ky, (n, n), jnp.float32)
    fn = jax.jit(jnp.matmul)
    jax.block_until_ready(fn(x, y))
    return (lambda: jax.block_until_ready(fn(x, y))), 2.0 * n**3


def fixed_config(family: str, shape: dict[str, int]) -> ModelConfig:
    return ModelConfig(family=family, vocab_size=shape["vocab_size"], width=shape["width"],
                       depth=shape["depth"], num_heads=shape["num_heads"], lru_width=shape["lru_width"],
                       num_gate_blocks=shape["num_gate_blocks"], local_window=shape["local_window"])


# --------------------------------------------------------------------------- figures


def _row(name: str, runner: StepRunner, seconds: list[float], faults: list[int], peak: float,
         probe_flops_per_s: list[float]) -> dict[str, Any]:
    """Figures of one model from its per-round call times (each call = runner.steps steps)."""
    step_s = [t / runner.steps for t in seconds]
    flops = runner.flops_per_step
    mfu_rounds = [flops / t / peak for t in step_s]
    x_matmul = [flops / t / p for t, p in zip(step_s, probe_flops_per_s)]
    med = median(step_s)
    return {
        "name": name, "family": runner.cfg.family, "config": runner.cfg.to_dict(),
        "params": counting.count_params(runner.cfg).total,
        "batch": runner.batch, "length": runner.length, "tokens_per_step": runner.tokens_per_step,
        "flops_per_token_exact": counting.training_flops_per_token(runner.cfg, runner.length, "exact"),
        "flops_per_step_exact": flops, "steps_per_call": runner.steps, "compile_s": runner.compile_s,
        "step_ms": 1e3 * med, "best_step_ms": 1e3 * min(step_s), "step_ms_rounds": [1e3 * t for t in step_s],
        "tokens_per_s": runner.tokens_per_step / med,
        "tokens_per_s_range": [runner.tokens_per_step / max(step_s), runner.tokens_per_step / min(step_s)],
        "gflops_per_s": flops / med / 1e9,
        "mfu": flops / med / peak, "mfu_range": [min(mfu_rounds), max(mfu_rounds)],
        "x_matmul": median(x_matmul), "x_matmul_range": [min(x_matmul), max(x_matmul)],
        "page_faults_per_step": median(faults) / runner.steps,
        "loss_first": runner.first_loss, "loss_last": runner.losses[-1],
    }


def _ratio(times: dict[str, list[float]], num: str, den: str) -> dict[str, Any]:
    per_round = [a / b for a, b in zip(times[num], times[den])]
    return {"median": median(per_round), "min": min(per_round), "max": max(per_round), "per_round": per_round}


def _time_models(runners: dict[str, StepRunner], probe: Callable[[], Any], probe_flops: float,
                 repeats: int, seed: int, peak: float) -> tuple[dict[str, dict[str, Any]], dict[str, list[float]],
                                                               list[float]]:
    """One untimed round, then `repeats` interleaved rounds of every model and the matmul probe."""
    fns: dict[str, Callable[[], Any]] = {**runners, "matmul": probe}
    time_interleaved(fns, 1, seed + 1)
    rounds = time_interleaved(fns, repeats, seed)
    probe_rate = [probe_flops / t for t in rounds.seconds["matmul"]]
    rows = {name: _row(name, r, rounds.seconds[name], rounds.page_faults[name], peak, probe_rate)
            for name, r in runners.items()}
    step_s = {name: [t / runners[name].steps for t in rounds.seconds[name]] for name in runners}
    return rows, step_s, probe_rate


def run_train_bench(shape: dict[str, int] | None = None, families: Sequence[str] = FAMILIES,
                    repeats: int = DEFAULT_REPEATS, seed: int = 0, ladder: Sequence[str] = tuple(CPU_SIZES),
                    ladder_length: int = LADDER_LENGTH, ladder_batch: int = LADDER_BATCH,
                    matmul_n: int | None = None, ladder_call_seconds: float = LADDER_CALL_SECONDS,
                    trim_off: bool = False, progress: Callable[[str], None] = lambda s: None
                    ) -> dict[str, Any]:
    """Time the fixed shape and the ladder; return the figures as a JSON-ready dict.

    trim_off: turn glibc's trimming off (`disable_trim`) for the fixed shape if the machine has
    the memory for it (see `_room_for_no_trim`)."""
    shape = {**DEFAULT_SHAPE, **(shape or {})}
    if repeats < 1 or min(shape.values()) < 1:
        raise ValueError(f"repeats and every shape value must be >= 1, got {repeats}, {shape}")
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        raise ValueError(f"families {list(families)}: expected a non-empty subset of {list(FAMILIES)}")
    peak = limits.matmul_peak()
    n = matmul_n or int(peak["shape"][0])
    probe, probe_flops = matmul_probe(n)

    runners: dict[str, StepRunner] = {}
    for family in families:
        progress(f"compiling {family} (B={shape['batch']}, T={shape['length']}, D={shape['width']})")
        runners[family] = StepRunner(fixed_config(family, shape), shape["batch"], shape["length"], seed)
    trim = "unchanged"
    if trim_off:
        need = _room_for_no_trim([r.temp_bytes for r in runners.values()])
        trim = ("off" if disable_trim() else "unchanged") if need is None else f"kept: {need}"
        progress(f"glibc trimming: {trim}")
    progress(f"timing {len(runners)} families, {repeats} rounds")
    rows, step_s, probe_rate = _time_models(runners, probe, probe_flops, repeats, seed, peak["flops_per_s"])
    ratios = {f"{f}/mqa": _ratio(step_s, f, "mqa") for f in ("griffin", "hawk") if f in runners and "mqa" in runners}
    max_rss_mb = max_rss_mib()
    runners_temp = {f: r.temp_bytes for f, r in runners.items()}
    del runners
    release_free_memory()  # with trimming off the heap still holds the big models' temporaries

    ladder_rows: list[dict[str, Any]] = []
    if ladder:
        ladder_runners: dict[str, StepRunner] = {}
        for size in ladder:
            for family in families:
                progress(f"compiling ladder {size} {family}")
                cfg = model_config(family, size, shape["vocab_size"])
                r = StepRunner(cfg, ladder_batch, ladder_length, seed)
                r.calibrate(ladder_call_seconds)
                ladder_runners[f"{size}/{family}"] = r
        progress(f"timing the ladder, {repeats} rounds")
        lrows, _, _ = _time_models(ladder_runners, probe, probe_flops, repeats, seed, peak["flops_per_s"])
        for name, row in lrows.items():
            size = name.split("/")[0]
            ladder_rows.append({"size": size, "width": CPU_SIZES[size].width, "depth": CPU_SIZES[size].depth,
                                **row})

    targets = {"mfu": TARGET_MFU, "griffin/mqa": TARGET_GRIFFIN_OVER_MQA,
               "mfu_met": {f: rows[f]["mfu"] >= TARGET_MFU for f in rows}}
    if "griffin/mqa" in ratios:
        targets["griffin/mqa_met"] = ratios["griffin/mqa"]["median"] <= TARGET_GRIFFIN_OVER_MQA
    return {
        "benchmark": "train",
        "machine": limits.machine_info(),
        "shape": shape,
        "dtype": "float32",
        "flop_convention": "exact",
        "repeats": repeats,
        "seed": seed,
        "matmul_peak": {k: peak[k] for k in ("flops_per_s", "shape", "threads", "measured_at", "source",
                                             "cache_path", "key") if k in peak},
        "matmul_in_run": {"n": n, "gflops_per_s": median(probe_rate) / 1e9,
                          "gflops_per_s_rounds": [p / 1e9 for p in probe_rate]},
        "families": [rows[f] for f in families],
        "max_rss_mib": max_rss_mb,
        "trim": trim,
        "temp_mib": {f: runners_temp[f] / 2**20 for f in families},
        "ratios": ratios,
        "ladder": {"length": ladder_length, "batch": ladder_batch, "call_seconds": ladder_call_seconds,
                   "rows": ladder_rows},
        "targets": targets,
    }


# --------------------------------------------------------------------------- malloc comparison

# The settings the children are run with: (griffin-bench --malloc mode, extra environment).
# 'reuse-notrim' is 'reuse' with glibc's trimming off, given as environment variables (read by
# glibc at start-up, before any thread), as a user would set them for `griffin-train`.
NO_TRIM_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
MALLOC_SETTINGS: dict[str, tuple[str, dict[str, str]]] = {
    "default": ("default", {}),
    "reuse": ("reuse", {}),
    "reuse-notrim": ("default", NO_TRIM_ENV),
}
_M_TRIM_THRESHOLD = -1  # glibc mallopt parameter (malloc.h)


def disable_trim() -> bool:
    """Stop glibc from returning the top of the heap to the OS (mallopt(M_TRIM_THRESHOLD, -1)).

    `configure_malloc('reuse')` trims above 1 GiB, but XLA:CPU allocates a training step's
    temporaries as one block (2.9 GB for Hawk at the fixed shape). Freed at the end of the
    step, that block is the top of the heap and is trimmed, so every step page-faults all of it
    in again (about 730K faults). Unlike the arena count, this can be changed at any time."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(_M_TRIM_THRESHOLD, -1))
    except (OSError, AttributeError):
        return False


def _mem_available() -> int | None:
    """MemAvailable from /proc/meminfo, bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _room_for_no_trim(temp_bytes: Sequence[int]) -> str | None:
    """None if there is memory to stop trimming, else the reason not to. With trimming off the
    heap keeps its high-water mark, and several models interleaved in one process fragment it:
    at the fixed shape the three families' temporaries (about 3 GB each) grew it to 9 GB. So
    ask for their sum twice over, plus 2 GiB, to be available now."""
    available = _mem_available()
    need = 2 * sum(temp_bytes) + (2 << 30)
    if available is not None and available < need:
        return f"{available / 2**30:.1f} GiB available, {need / 2**30:.1f} GiB wanted"
    return None


def release_free_memory() -> bool:
    """Return the heap's free memory to the OS now (glibc malloc_trim), whatever the threshold."""
    import ctypes
    import ctypes.util
    import gc
    import platform

    gc.collect()
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def max_rss_mib() -> float:
    """This process's peak resident memory so far, MiB: VmHWM of /proc/self/status. Not
    getrusage's ru_maxrss, which Linux carries over from the parent through fork and exec (a
    child of a big process would report the parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _package_root() -> str:
    import experiments

    return str(Path(experiments.__file__).resolve().parent.parent)


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """A child's environment: this package importable, glibc's MALLOC_* variables only those
    of its setting."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


def compare_malloc(children: int, shape: dict[str, int], families: Sequence[str], repeats: int, seed: int,
                   matmul_n: int | None, compile_cache: str | None = None,
                   settings: Sequence[str] = tuple(MALLOC_SETTINGS),
                   progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Time the fixed shape in child processes, one family per child (one model per process, as
    in training), `children` children per family and malloc setting, one child at a time. The
    order of the settings is rotated from one family and pass to the next, so that drift on a
    shared machine hits each setting alike."""
    settings = list(settings)
    order = [(family, settings[(i + k + j) % len(settings)]) for i in range(children)
             for k, family in enumerate(families) for j in range(len(settings))]
    runs: list[dict[str, Any]] = []
    for i, (family, setting) in enumerate(order):
        mode, extra_env = MALLOC_SETTINGS[setting]
        progress(f"malloc child {i + 1}/{len(order)}: {family}, {setting}")
        with tempfile.TemporaryDirectory(prefix="griffin-bench-train-") as tmp:
            out = Path(tmp) / "child.json"
            argv = [sys.executable, "-m", "experiments.bench", "train", "--malloc", mode, "--no-ladder",
                    "--malloc-children", "0", "--repeats", str(repeats), "--seed", str(seed),
                    "--families", family, "--json", str(out), "--quiet", "--keep-trim",
                    "--compile-cache", compile_cache or "none"]
            argv += [f"--{k.replace('_', '-')}={v}" for k, v in shape.items()]
            if matmul_n:
                argv += ["--matmul-n", str(matmul_n)]
            t0 = time.perf_counter()
            done = subprocess.run(argv, env=_child_env(extra_env), capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"malloc child ({family}, {setting}) failed with exit code "
                                   f"{done.returncode}:\n{done.stderr[-4000:]}")
            result = json.loads(out.read_text())
        (row,) = result["families"]
        runs.append({"family": family, "setting": setting, "wall_s": time.perf_counter() - t0,
                     "malloc": result.get("malloc"), "env": extra_env, "max_rss_mib": result["max_rss_mib"],
                     **{k: row[k] for k in ("tokens_per_s", "step_ms", "mfu", "x_matmul", "page_faults_per_step",
                                            "compile_s")},
                     "matmul_in_run_gflops_per_s": result["matmul_in_run"]["gflops_per_s"]})
    summary: dict[str, Any] = {}
    for family in families:
        per_setting: dict[str, Any] = {}
        for setting in settings:
            rows = [r for r in runs if r["family"] == family and r["setting"] == setting]
            per_setting[setting] = {"tokens_per_s": median([r["tokens_per_s"] for r in rows]),
                                    "tokens_per_s_runs": [r["tokens_per_s"] for r in rows],
                                    "step_ms": median([r["step_ms"] for r in rows]),
                                    "mfu": median([r["mfu"] for r in rows]),
                                    "x_matmul": median([r["x_matmul"] for r in rows]),
                                    "page_faults_per_step": median([r["page_faults_per_step"] for r in rows]),
                                    "max_rss_mib": max(r["max_rss_mib"] for r in rows)}
        if "default" in per_setting:
            for setting in settings:
                for key, name in (("tokens_per_s", "over_default"), ("x_matmul", "x_matmul_over_default")):
                    per_setting[setting][name] = per_setting[setting][key] / per_setting["default"][key]
        summary[family] = per_setting
    return {"children_per_setting": children, "repeats": repeats, "settings": settings,
            "order": [list(o) for o in order], "runs": runs, "families": summary}


# --------------------------------------------------------------------------- report


def _ms(v: float) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3f}"


def _num(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s, m, peak = result["shape"], result["machine"], result["matmul_peak"]
    console = Console(width=max(110, Console().width))
    table = Table(title=(f"Training step  B={s['batch']} T={s['length']} D={s['width']} depth={s['depth']} "
                         f"H={s['num_heads']} D_RNN={s['lru_width']} window={s['local_window']} "
                         f"V={s['vocab_size']} fp32, median of {result['repeats']} rounds"),
                  caption=(f"MFU: exact FLOPs / step time / cached matmul peak {peak['flops_per_s'] / 1e9:.1f} "
                           f"GFLOP/s (n={peak['shape'][0]}, {peak['threads']} threads, measured "
                           f"{peak['measured_at']}). x matmul: step FLOP/s over an n={result['matmul_in_run']['n']} "
                           f"matmul timed in the same round (median {result['matmul_in_run']['gflops_per_s']:.1f} "
                           f"GFLOP/s). {m['cpu_model']}, {m['usable_cores']} cores, jax {m['jax_version']}, "
                           f"malloc {result.get('malloc', {}).get('mode', 'default')}"
                           f"{', trim ' + result['malloc']['trim'] if 'trim' in result.get('malloc', {}) else ''}"))
    for col, right in (("family", False), ("params", True), ("GFLOP/step", True), ("step ms", True),
                       ("tokens/s", True), ("MFU", True), ("MFU range", True), ("x matmul", True),
                       ("faults/step", True), ("compile s", True)):
        table.add_column(col, justify="right" if right else "left")
    for row in result["families"]:
        ok = row["mfu"] >= TARGET_MFU
        table.add_row(row["family"], f"{row['params'] / 1e6:.2f}M", f"{row['flops_per_step_exact'] / 1e9:.1f}",
                      _ms(row["step_ms"]), _num(row["tokens_per_s"]),
                      f"[{'green' if ok else 'red'}]{100 * row['mfu']:.1f}%",
                      f"{100 * row['mfu_range'][0]:.0f}-{100 * row['mfu_range'][1]:.0f}%",
                      f"{row['x_matmul']:.2f}", f"{row['page_faults_per_step']:.0f}", f"{row['compile_s']:.1f}")
    console.print(table)
    for name, r in result["ratios"].items():
        target = f" (target <= {TARGET_GRIFFIN_OVER_MQA:.1f})" if name == "griffin/mqa" else ""
        console.print(f"step time {name}: {r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]{target}")

    rows = result["ladder"]["rows"]
    if rows:
        fams = list(dict.fromkeys(r["family"] for r in rows))
        lt = Table(title=(f"CPU ladder  T={result['ladder']['length']} batch={result['ladder']['batch']}: "
                          f"MFU (tokens/s); small widths are dispatch-bound"))
        lt.add_column("size")
        lt.add_column("D x depth", justify="right")
        for f in fams:
            lt.add_column(f, justify="right")
        by = {(r["size"], r["family"]): r for r in rows}
        for size in dict.fromkeys(r["size"] for r in rows):
            any_row = next(r for r in rows if r["size"] == size)
            lt.add_row(size, f"{any_row['width']} x {any_row['depth']}",
                       *(f"{100 * by[(size, f)]['mfu']:.1f}% ({_num(by[(size, f)]['tokens_per_s'])})"
                         for f in fams))
        console.print(lt)

    mc = result.get("malloc_comparison")
    if mc:
        mt = Table(title=(f"glibc malloc, child processes (one family each, {mc['children_per_setting']} per "
                          f"setting, {mc['repeats']} rounds each): tokens/s, x matmul, page faults per step, "
                          f"peak RSS"),
                   caption=("default: glibc as configured; reuse: --malloc reuse (one arena, no mmap, trim "
                            "above 1 GiB); reuse-notrim: MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 "
                            "MALLOC_TRIM_THRESHOLD_=2^40. vs default: ratio of tokens/s, and of x matmul "
                            "(each child's step speed over its own in-round matmul speed)"))
        mt.add_column("family")
        mt.add_column("setting")
        for col in ("tokens/s", "x matmul", "faults/step", "peak RSS GiB", "vs default", "x matmul vs default"):
            mt.add_column(col, justify="right")
        for family, r in mc["families"].items():
            for setting in mc["settings"]:
                row = r[setting]
                mt.add_row(family, setting, _num(row["tokens_per_s"]), f"{row['x_matmul']:.2f}",
                           f"{row['page_faults_per_step'] / 1e3:.0f}K", f"{row['max_rss_mib'] / 1024:.1f}",
                           f"{row.get('over_default', float('nan')):.2f}",
                           f"{row.get('x_matmul_over_default', float('nan')):.2f}")
            mt.add_section()
        console.print(mt)

    t = result["targets"]
    met = all(t["mfu_met"].values()) and t.get("griffin/mqa_met", True)
    console.print(f"target: MFU >= {100 * t['mfu']:.0f}% for every family"
                  + (f", griffin/mqa <= {t['griffin/mqa']:.1f}" if "griffin/mqa_met" in t else "")
                  + f": {'[green]met' if met else '[red]not met'}")


# --------------------------------------------------------------------------- CLI


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [t.strip() for t in text.split(",") if t.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated names from {list(allowed)}, got {text!r}")
        return list(dict.fromkeys(values))

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DEFAULT_SHAPE
    g = parser.add_argument_group("fixed shape")
    g.add_argument("--width", type=int, default=d["width"], help="D (default %(default)s)")
    g.add_argument("--depth", type=int, default=d["depth"], help="residual blocks (default %(default)s)")
    g.add_argument("--num-heads", "--heads", dest="num_heads", type=int, default=d["num_heads"],
                   help="query heads (default %(default)s)")
    g.add_argument("--lru-width", type=int, default=d["lru_width"], help="D_RNN (default %(default)s)")
    g.add_argument("--num-gate-blocks", "--gate-blocks", dest="num_gate_blocks", type=int,
                   default=d["num_gate_blocks"], help="RG-LRU gate blocks (default %(default)s)")
    g.add_argument("--local-window", "--window", dest="local_window", type=int, default=d["local_window"],
                   help="Griffin's local-attention window (default %(default)s)")
    g.add_argument("--vocab-size", "--vocab", dest="vocab_size", type=int, default=d["vocab_size"],
                   help="vocabulary (default %(default)s)")
    g.add_argument("--length", type=int, default=d["length"], help="sequence length T (default %(default)s)")
    g.add_argument("--batch", type=int, default=d["batch"], help="sequences per step (default %(default)s)")
    parser.add_argument("--families", type=_names(FAMILIES), default=list(FAMILIES),
                        help="comma-separated families (default mqa,hawk,griffin)")
    parser.add_argument("--matmul-n", type=int, default=None,
                        help="size of the matmul timed in every round (default: the cached peak's n)")
    lg = parser.add_argument_group("CPU ladder")
    lg.add_argument("--ladder-sizes", type=_names(tuple(CPU_SIZES)), default=list(CPU_SIZES),
                    help="comma-separated griffin_core.sizes.CPU_SIZES rows (default: all)")
    lg.add_argument("--no-ladder", dest="ladder", action="store_false", help="skip the ladder")
    lg.add_argument("--ladder-length", type=int, default=LADDER_LENGTH, help="T (default %(default)s)")
    lg.add_argument("--ladder-batch", type=int, default=LADDER_BATCH, help="batch (default %(default)s)")
    lg.add_argument("--ladder-call-seconds", type=float, default=LADDER_CALL_SECONDS,
                    help="each timed call runs enough steps to last this long (default %(default)s)")
    mg = parser.add_argument_group("malloc comparison (child processes)")
    mg.add_argument("--malloc-children", type=int, default=1,
                    help="child runs of the fixed shape per malloc mode, 0 to skip (default %(default)s)")
    mg.add_argument("--malloc-repeats", type=int, default=MALLOC_REPEATS,
                    help="timed rounds in each child (default %(default)s)")
    parser.add_argument("--compile-cache", default=None, metavar="DIR",
                        help="persistent JAX compilation cache (default: the one JAX is configured with, "
                             "else jax-compile/ beside the limits cache; 'none' disables it)")
    parser.add_argument("--keep-trim", action="store_true",
                        help="with --malloc reuse, keep its trim threshold (default: trimming off, "
                             "see disable_trim)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines and no table")


def use_compile_cache(choice: str | None) -> str | None:
    """Turn on JAX's persistent compilation cache (DESIGN.md: compile once), so that the malloc
    children and repeated runs load the compiled steps instead of compiling them again."""
    if choice == "none":
        return None
    folder = choice or jax.config.jax_compilation_cache_dir or str(limits.cache_path().parent / "jax-compile")
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(folder)


def run(args: argparse.Namespace) -> dict[str, Any]:
    progress = (lambda s: None) if args.quiet else (lambda s: print(f"[train] {s}", file=sys.stderr, flush=True))
    shape = {k: getattr(args, k) for k in DEFAULT_SHAPE}
    compile_cache = use_compile_cache(args.compile_cache)
    malloc = dict(getattr(args, "malloc_info", {"mode": "default", "applied": False}))
    if args.malloc_children < 0 or args.malloc_repeats < 1:
        raise SystemExit("griffin-bench train: --malloc-children must be >= 0 and --malloc-repeats >= 1")
    result = run_train_bench(shape=shape, families=args.families, repeats=args.repeats or DEFAULT_REPEATS,
                             seed=args.seed, ladder=args.ladder_sizes if args.ladder else (),
                             ladder_length=args.ladder_length, ladder_batch=args.ladder_batch,
                             matmul_n=args.matmul_n, ladder_call_seconds=args.ladder_call_seconds,
                             trim_off=bool(malloc.get("applied")) and not args.keep_trim, progress=progress)
    if result["trim"] != "unchanged":
        malloc["trim"] = result["trim"]
    result["malloc"] = malloc
    result["compile_cache"] = compile_cache
    if args.malloc_children:
        result["malloc_comparison"] = compare_malloc(args.malloc_children, shape, args.families,
                                                     args.malloc_repeats, args.seed, args.matmul_n,
                                                     compile_cache, progress=progress)
    if not args.quiet:
        render(result)
    return result
