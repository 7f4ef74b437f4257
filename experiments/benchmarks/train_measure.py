"""The measurement of `griffin-bench train`: the fixed shape and the CPU ladder timed in
interleaved rounds, and each model's figures (tokens/s, MFU, x matmul, page faults).

"mfu" = (training FLOPs per token under the 'exact' convention of griffin_core.counting x
tokens per step / step time) / a peak that `mfu_basis` chooses (experiments/mfu.py): on a chip
of the accelerator table, its nominal dense bf16 peak x the one device a step runs on (the
step is not sharded), kind "exact_over_nominal_bf16_peak"; on CPU the fraction of the
dense-matmul peak of this machine, which `limits.matmul_peak()` measures once and caches with
its provenance, kind "fraction_of_measured_matmul_peak". The FLOPs are what an ideal
implementation must compute (causal attention counted once per kept logit), so the figure
charges the implementation for everything it spends beyond that.

On a shared machine the speed a process gets drifts by 2-3x within seconds, and the cached peak
was measured at another moment. So a square fp32 matmul of the peak's size is also timed in
every round, and "x matmul" is the step's FLOP/s over that matmul's FLOP/s in the same round
(median over rounds): it says how close the step comes to the matmul speed the process had at
that moment. Step-time ratios between families are likewise taken inside each round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from statistics import median

from experiments.benchmarks import limits, time_interleaved
from experiments.benchmarks.heap import disable_trim, max_rss_mib, release_free_memory, room_for_no_trim
from experiments.benchmarks.step_runner import StepRunner, matmul_probe
from experiments.mfu import LABELS, devices, utilisation
from griffin_core import counting
from griffin_core.config import ModelConfig
from griffin_core.sizes import CPU_SIZES, model_config

FAMILIES = ("mqa", "hawk", "griffin")
# The fixed shape. D_RNN = 4D/3 = 341 is rounded to 352 so that 16 gate blocks divide it.
DEFAULT_SHAPE = dict(width=256, depth=6, num_heads=4, lru_width=352, num_gate_blocks=16,
                     local_window=256, vocab_size=256, length=512, batch=16)
DEFAULT_REPEATS = 5
LADDER_LENGTH, LADDER_BATCH = 256, 16
LADDER_CALL_SECONDS = 0.25  # each timed ladder call runs this long at least (dispatch-bound sizes)
TARGET_MFU, TARGET_GRIFFIN_OVER_MQA = 0.40, 1.0


def fixed_config(family: str, shape: dict[str, int]) -> ModelConfig:
    """`family` at the fixed shape (`DEFAULT_SHAPE` keys but length and batch), fp32."""
    return ModelConfig(family=family, vocab_size=shape["vocab_size"], width=shape["width"],
                       depth=shape["depth"], num_heads=shape["num_heads"], lru_width=shape["lru_width"],
                       num_gate_blocks=shape["num_gate_blocks"], local_window=shape["local_window"])


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


def mfu_basis(measured_peak: float) -> dict[str, Any]:
    """What the benchmark's "mfu" divides by on this machine's default device: its kind, the
    report's label for it, the chip and count, and the peak FLOP/s (one device: a step runs
    on one, so never the peak of all the host's devices)."""
    platform, kind, _, _ = devices()
    basis = utilisation(1.0, platform, kind, 1, measured_peak)
    return {"kind": basis.kind, "label": LABELS[basis.kind], "chip": basis.chip, "chips": basis.chips,
            "device_kind": kind, "flops_per_s": basis.peak_flops_per_s}


def _ratio(times: dict[str, list[float]], num: str, den: str) -> dict[str, Any]:
    """Step time of `num` over `den`, round by round, and the median and range of that."""
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

    - the fixed shape (`DEFAULT_SHAPE` updated by `shape`): one `StepRunner` per family, each
      compiled and warmed up, then one untimed round and `repeats` interleaved rounds of every
      family and the matmul probe. The Griffin/MQA and Hawk/MQA step-time ratios are taken
      inside each round.
    - the CPU ladder (`ladder`, rows of `griffin_core.sizes.CPU_SIZES`) at `ladder_length` x
      `ladder_batch`: each size and family runs enough steps per timed call to last
      `ladder_call_seconds`, because the small widths are bound by per-operation dispatch, not
      by arithmetic.

    trim_off: turn glibc's trimming off (`heap.disable_trim`) for the fixed shape if the
    machine has the memory for it (see `heap.room_for_no_trim`)."""
    shape = {**DEFAULT_SHAPE, **(shape or {})}
    if repeats < 1 or min(shape.values()) < 1:
        raise ValueError(f"repeats and every shape value must be >= 1, got {repeats}, {shape}")
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        raise ValueError(f"families {list(families)}: expected a non-empty subset of {list(FAMILIES)}")
    peak = limits.matmul_peak()
    basis = mfu_basis(peak["flops_per_s"])
    n = matmul_n or int(peak["shape"][0])
    probe, probe_flops = matmul_probe(n)

    runners: dict[str, StepRunner] = {}
    for family in families:
        progress(f"compiling {family} (B={shape['batch']}, T={shape['length']}, D={shape['width']})")
        runners[family] = StepRunner(fixed_config(family, shape), shape["batch"], shape["length"], seed)
    trim = "unchanged"
    if trim_off:
        need = room_for_no_trim([r.temp_bytes for r in runners.values()])
        trim = ("off" if disable_trim() else "unchanged") if need is None else f"kept: {need}"
        progress(f"glibc trimming: {trim}")
    progress(f"timing {len(runners)} families, {repeats} rounds")
    rows, step_s, probe_rate = _time_models(runners, probe, probe_flops, repeats, seed, basis["flops_per_s"])
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
        lrows, _, _ = _time_models(ladder_runners, probe, probe_flops, repeats, seed, basis["flops_per_s"])
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
        "mfu_basis": basis,
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

