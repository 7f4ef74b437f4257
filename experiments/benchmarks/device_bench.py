"""`griffin-bench device`: one command that measures what a GPU or TPU does for this project,
within a time budget (about 10 minutes on one device):

1. the device's copy bandwidth (a jitted copy of a large fp32 array, bytes read + written /
   time, best of several): the limit the scan is judged against;
2. the scan variants (sequential lax.scan, associative, chunked, the Pallas kernel) at Fig 8a's
   shape (batch 8, width 1024, length 2048) and at lengths 4K, 8K and 16K, in GB/s and as a
   fraction of the copy bandwidth, with the Pallas kernel's speedup over lax.scan and over the
   associative scan;
3. one training step of the paper's 100M and 400M rows per family (MQA, Hawk, Griffin) in bf16
   at batch 8 x 2048 (remat 'full', then a smaller batch, where the memory estimate needs it),
   with MFU against the chip's nominal bf16 peak, and Griffin's step time over MQA's at lengths
   2K, 4K and 8K at the 400M row with the tokens per step fixed (Fig 3); and Griffin's step
   with the RG-LRU's gates fused into the scan kernel over the unfused one, at that row;
4. a JSON file (`--json`) and a Markdown table (`--markdown`), and progress on the way.

Work runs in that order (the scans are cheap on an accelerator). Before each item its time is
estimated; an item that would overrun the budget, or whose training memory estimate does not
fit the device, is recorded as skipped with the reason. `--quick` runs the same path at tiny
sizes (width 64, lengths 128 and 256, CPU-ladder models standing in for the paper rows) so that
a test exercises it on a CPU in seconds; there the Pallas kernel runs in interpret mode and is
reported as a correctness check only, and MFU is the fraction of a measured matmul peak.
Measuring: device_measure; the Markdown and the targets: device_report.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from experiments.benchmarks import limits, write_text_atomic
from experiments.benchmarks import device_measure as measure
from experiments.benchmarks.device_report import markdown, targets
from griffin_core.config import ModelConfig
from griffin_core.sizes import model_config
from run_store.cli import output_file, positive_float, positive_int

FAMILIES = ("mqa", "hawk", "griffin")
DTYPES = ("bfloat16", "float32")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one run measures: `FULL` on a GPU or TPU, `QUICK` for a smoke run on any machine."""

    copy_bytes: int
    """Size of the array whose copy gives the device's bandwidth."""
    scan_batch: int
    scan_width: int
    scan_lengths: tuple[int, ...]
    """Scan lengths; the first is Fig 8a's, where the targets are read."""
    rows: tuple[tuple[str, str], ...]
    """(paper row reported, size row measured): the same in full, CPU-ladder stand-ins in quick."""
    step_batch: int
    step_length: int
    fig3_row: str
    """The paper row whose Griffin/MQA step-time ratio is taken at `fig3_lengths` (Fig 3)."""
    fig3_lengths: tuple[int, ...]
    """Lengths at step_batch x step_length tokens per step; the first must be step_length."""
    vocab: int
    scan_layers: bool
    """Run the models' blocks as a scan over layers: one compiled body (deep models compile in
    seconds, which the time budget needs)."""
    scan_repeats: int
    step_repeats: int
    call_seconds: float
    """Each timed training call runs enough steps to last this long."""
    budget_s: float


FULL = Settings(copy_bytes=1 << 30, scan_batch=8, scan_width=1024, scan_lengths=(2048, 4096, 8192, 16384),
                rows=(("100M", "100M"), ("400M", "400M")), step_batch=8, step_length=2048, fig3_row="400M",
                fig3_lengths=(2048, 4096, 8192), vocab=32_000, scan_layers=True, scan_repeats=5,
                step_repeats=3, call_seconds=0.5, budget_s=540.0)
"""The paper's shapes. The vocabulary is 32K: the paper's 256K would need about 50 GB of fp32
logits and their gradient at 8 x 2048 tokens (`--vocab 256000` tries it, at a smaller batch)."""
QUICK = Settings(copy_bytes=8 << 20, scan_batch=4, scan_width=64, scan_lengths=(128, 256),
                 rows=(("400M", "cpu-80k"),), step_batch=4, step_length=128,
                 fig3_row="400M", fig3_lengths=(128, 256), vocab=256, scan_layers=False,
                 scan_repeats=2, step_repeats=2, call_seconds=0.0, budget_s=300.0)
"""Tiny sizes and one row (the Fig 3 row): the whole path on a CPU in about half a minute."""
QUICK_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
"""Quick runs on CPU compile their training steps at XLA's lowest optimisation level: half the
compile time, and their timings mean nothing anyway."""


class Budget:
    """Seconds left of the run's budget, and whether an item estimated to take `seconds` fits."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds, self.clock, self.start = seconds, clock, clock()

    def used(self) -> float:
        return self.clock() - self.start

    def refuses(self, seconds: float) -> str | None:
        """None if an item of about `seconds` fits what is left, else the reason it does not."""
        left = self.seconds - self.used()
        return None if seconds <= left else f"time budget: needs about {seconds:.0f} s, {max(left, 0):.0f} s left"


class Tracker:
    """Progress: a rich bar over the run's items on stderr, one line per finished item."""

    def __init__(self, total: int, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.bar = Progress(TextColumn("[device] {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), disable=quiet)
        self.task = self.bar.add_task("starting", total=total)

    def __enter__(self) -> "Tracker":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def start(self, what: str) -> None:
        self.bar.update(self.task, description=what)

    def done(self, line: str) -> None:
        if not self.quiet:
            self.bar.console.print(f"[device] {line}")
        self.bar.advance(self.task)


def _scans(s: Settings, copy_gbps: float, platform: str, budget: Budget, track: Tracker, skipped: list,
           seed: int) -> dict[str, Any]:
    """The scan variants at every length of `s` (device_measure.measure_scans), or skipped rows
    where the budget does not allow a length; with the Pallas kernel's speedups per length."""
    rows, per_length, compile_s = [], [], 1.0 if platform == "cpu" else 5.0
    for length in s.scan_lengths:
        track.start(f"scans at B={s.scan_batch} T={length} D={s.scan_width}")
        estimate = measure.scan_seconds_estimate(s.scan_batch, length, s.scan_width, s.scan_repeats, copy_gbps,
                                                 compile_s)
        reason = budget.refuses(estimate)
        if reason:
            found = [{"variant": v, "length": length, "status": "skipped", "reason": reason}
                     for v in measure.SCAN_VARIANTS]
            skipped.append({"item": f"scans at length {length}", "reason": reason})
        else:
            found = measure.measure_scans(s.scan_batch, length, s.scan_width, s.scan_repeats, copy_gbps, platform, seed)
            compile_s = max([compile_s] + [r["compile_s"] for r in found if "compile_s" in r])
        rows += found
        per_length.append({"length": length, **measure.speedups(found)})
        track.done(f"scans T={length}: " + ", ".join(
            f"{r['variant']} {r['gbps']:.1f} GB/s" if r["status"] == "timed" else f"{r['variant']} {r['status']}"
            for r in found))
    return {"batch": s.scan_batch, "width": s.scan_width, "lengths": list(s.scan_lengths), "dtype": "float32",
            "bytes_per_element": measure.BYTES_PER_ELEMENT, "rows": rows, "speedups": per_length}


class Steps:
    """Training steps measured once per (model, batch, length) and reused: the Fig 3 point at
    the rows' length is the 400M row's own measurement when the plans agree."""

    def __init__(self, s: Settings, dtype: str, basis: dict[str, Any], memory: int, budget: Budget,
                 compiler_options: dict[str, Any] | None, seed: int) -> None:
        self.s, self.dtype, self.basis, self.memory, self.budget = s, dtype, basis, memory, budget
        self.compiler_options, self.seed = compiler_options, seed
        self.compile_s = 10.0 if basis["jax_platform"] == "cpu" else 30.0
        self.done: dict[tuple, dict[str, Any]] = {}

    def config(self, family: str, size: str) -> ModelConfig:
        return model_config(family, size, self.s.vocab, dtype=self.dtype, scan_layers=self.s.scan_layers)

    def time(self, cfg: ModelConfig, batch: int, length: int) -> dict[str, Any]:
        """The step's row: measured now, reused, or skipped (with the reason) for the budget."""
        key = (cfg, batch, length)
        if key not in self.done:
            estimate = measure.step_seconds_estimate(cfg, batch, length, self.basis["flops_per_s"],
                                                     self.s.step_repeats, self.s.call_seconds, self.compile_s)
            reason = self.budget.refuses(estimate)
            if reason:
                return {"status": "skipped", "reason": reason, "batch": batch, "length": length, "remat": cfg.remat}
            row = measure.time_step(cfg, batch, length, self.s.step_repeats, self.s.call_seconds, self.basis,
                                    self.seed, self.compiler_options)
            if row["status"] == "timed":
                self.compile_s = max(self.compile_s, row["compile_s"])
            self.done[key] = row  # a failure too: not tried twice
        return dict(self.done[key])


def _rows(s: Settings, steps: Steps, track: Tracker, skipped: list) -> list[dict[str, Any]]:
    """One training-step row per paper row and family, at the batch and remat the memory plan
    chose (device_measure.plan_step), or skipped with the reason."""
    rows = []
    for row, size in s.rows:
        for family in FAMILIES:
            track.start(f"step {row} ({size}) {family}")
            plan = measure.plan_step(steps.config(family, size), s.step_batch, s.step_length, steps.memory, True)
            if isinstance(plan, str):
                found = {"status": "skipped", "reason": plan, "batch": s.step_batch, "length": s.step_length}
            else:
                found = steps.time(*plan[:2], s.step_length) | {"memory_estimate_bytes": plan[2]}
            if found["status"] == "skipped":
                skipped.append({"item": f"step {row} {family}", "reason": found["reason"]})
            rows.append({"row": row, "size": size, "family": family, **found})
            track.done(f"step {row} {family}: " + (f"{found['step_ms']:.1f} ms, {found['mfu_label']} "
                                                   f"{100 * (found['mfu'] or 0):.1f}%" if found["status"] == "timed"
                                                   else f"skipped ({found['reason']})"))
    return rows


def _fig3(s: Settings, steps: Steps, track: Tracker, skipped: list) -> dict[str, Any]:
    """Griffin's step time over MQA's at `s.fig3_row` for each of `s.fig3_lengths`, the tokens
    per step fixed at step_batch x step_length (Fig 3), or skipped with the reason."""
    size = dict(s.rows)[s.fig3_row]
    tokens = s.step_batch * s.step_length
    points = []
    for length in s.fig3_lengths:
        track.start(f"Fig 3 {s.fig3_row} T={length}")
        batch = tokens // length
        point: dict[str, Any] = {"length": length, "batch": batch}
        cfgs = {f: steps.config(f, size) for f in ("mqa", "griffin")}
        # The same remat for both families, so the ratio compares the architectures only.
        remat = next((r for r in ("none", "full") if all(
            measure.fits(c.replace(remat=r), batch, length, steps.memory)[0] for c in cfgs.values())), None)
        if batch < 1 or tokens % length:
            point.update(status="skipped", reason=f"{tokens} tokens per step are not whole sequences of {length}")
        elif remat is None:
            point.update(status="skipped", reason=f"memory: MQA and Griffin at batch {batch} x {length} do not "
                                                  f"fit {measure.MEMORY_FRACTION:.0%} of the device (estimate)")
        else:
            point["remat"] = remat
            timed: dict[str, dict[str, Any]] = {}
            for family, cfg in cfgs.items():
                timed[family] = steps.time(cfg.replace(remat=remat), batch, length)
                if timed[family]["status"] != "timed":
                    break
            late = [t["reason"] for t in timed.values() if t["status"] != "timed"]
            if late:
                point.update(status="skipped", reason=late[0])
            else:
                point.update(status="timed", mqa_step_ms=timed["mqa"]["step_ms"],
                             griffin_step_ms=timed["griffin"]["step_ms"],
                             griffin_over_mqa=timed["griffin"]["step_ms"] / timed["mqa"]["step_ms"])
        if point["status"] == "skipped":
            skipped.append({"item": f"Fig 3 length {length}", "reason": point["reason"]})
        points.append(point)
        track.done(f"Fig 3 T={length}: " + (f"griffin/mqa {point['griffin_over_mqa']:.3f}"
                                            if point["status"] == "timed" else f"skipped ({point['reason']})"))
    return {"row": s.fig3_row, "size": size, "tokens_per_step": tokens, "lengths": list(s.fig3_lengths),
            "points": points}


def _fused(s: Settings, steps: Steps, platform: str, track: Tracker, skipped: list) -> dict[str, Any]:
    """Griffin's training step at `s.fig3_row` with the RG-LRU's gates fused into the scan
    kernel (`scan_impl=pallas_fused`) over the same step with `auto` (the bare scan kernel),
    at step_batch x step_length. On CPU both kernels run in interpret mode: not timed."""
    size = dict(s.rows)[s.fig3_row]
    out: dict[str, Any] = {"row": s.fig3_row, "size": size, "batch": s.step_batch, "length": s.step_length}
    track.start(f"fused RG-LRU kernel {s.fig3_row}")
    if platform == "cpu":  # like the scan's kernel there: a correctness path, not a budget skip
        out.update(status="not_timed", reason="the Pallas kernels run in interpret mode on CPU (correctness only)")
    else:
        plan = measure.plan_step(steps.config("griffin", size), s.step_batch, s.step_length, steps.memory, True)
        timed = {} if isinstance(plan, str) else {
            impl: steps.time(plan[0].replace(scan_impl=impl), plan[1], s.step_length) for impl in ("auto", "pallas_fused")}
        late = [plan] if isinstance(plan, str) else [t["reason"] for t in timed.values() if t["status"] != "timed"]
        if late:
            out.update(status="skipped", reason=late[0])
        else:
            out.update(status="timed", batch=plan[1], auto_step_ms=timed["auto"]["step_ms"],
                       fused_step_ms=timed["pallas_fused"]["step_ms"],
                       fused_over_auto=timed["pallas_fused"]["step_ms"] / timed["auto"]["step_ms"])
    if out["status"] == "skipped":
        skipped.append({"item": "fused RG-LRU kernel", "reason": out["reason"]})
    track.done("fused RG-LRU kernel: " + (f"fused/unfused step {out['fused_over_auto']:.3f}"
                                          if out["status"] == "timed" else f"{out['status']} ({out['reason']})"))
    return out


def run_device_bench(s: Settings, quick: bool, dtype: str | None = None, seed: int = 0, quiet: bool = False
                     ) -> dict[str, Any]:
    """Measure everything `s` asks for within `s.budget_s` seconds; return the JSON-ready dict
    (what `--json` writes and device_report renders)."""
    from griffin_core.scan import current_platform

    budget = Budget(s.budget_s)
    platform = current_platform()
    dtype = dtype or ("float32" if quick and platform == "cpu" else "bfloat16")
    options = QUICK_CPU_COMPILER_OPTIONS if quick and platform == "cpu" else None
    memory, memory_source = measure.device_memory()
    skipped: list[dict[str, str]] = []
    items = 2 + len(s.scan_lengths) + 3 * len(s.rows) + len(s.fig3_lengths)
    with Tracker(items, quiet) as track:
        track.start(f"copy bandwidth ({s.copy_bytes / 2**20:.0f} MiB)")
        bandwidth = measure.copy_bandwidth(s.copy_bytes, max(s.scan_repeats, 5), seed)
        track.done(f"copy bandwidth {bandwidth['gbps']:.1f} GB/s")
        scans = _scans(s, bandwidth["gbps"], platform, budget, track, skipped, seed)
        basis = measure.mfu_basis(dtype, quick)
        steps = Steps(s, dtype, basis, memory, budget, options, seed)
        step_rows = _rows(s, steps, track, skipped)
        fig3 = _fig3(s, steps, track, skipped)
        fused = _fused(s, steps, platform, track, skipped)
    result = {
        "benchmark": "device", "mode": "quick" if quick else "full", "machine": limits.machine_info(),
        "device": {"platform": platform, "device_kind": basis["device_kind"], "chip": basis["chip"],
                   "memory_bytes": memory, "memory_source": memory_source},
        "settings": dataclasses.asdict(s), "seed": seed,
        "bandwidth": bandwidth, "scan": scans,
        "steps": {"batch": s.step_batch, "length": s.step_length, "dtype": dtype, "vocab": s.vocab,
                  "mfu_basis": basis, "rows": step_rows},
        "fig3": fig3, "fused": fused, "skipped": skipped,
        "budget": {"seconds": s.budget_s, "used_s": budget.used()},
    }
    result["targets"] = targets(result)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options (experiments/bench.py adds --repeats, --seed, --json, --malloc)."""
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (width 64, lengths 128/256, CPU-ladder models): the whole path in "
                             "seconds on a CPU, for tests")
    parser.add_argument("--markdown", metavar="PATH", type=output_file, default=None,
                        help="also write the Markdown report to PATH")
    parser.add_argument("--budget", type=positive_float, default=None,
                        help="seconds for the measurements; what does not fit is skipped and listed "
                             f"(default {FULL.budget_s:.0f}, quick {QUICK.budget_s:.0f})")
    parser.add_argument("--vocab", type=positive_int, default=None,
                        help=f"vocabulary of the models (default {FULL.vocab}, quick {QUICK.vocab})")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="compute dtype of the training steps (default bfloat16; quick on CPU float32)")
    parser.add_argument("--compile-cache", default=None, metavar="DIR",
                        help="persistent JAX compilation cache (default: the one JAX is configured with, "
                             "else jax-compile/ beside the limits cache; 'none' disables it)")
    parser.add_argument("--quiet", action="store_true", help="no progress and no report on the terminal")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure, print the Markdown report (unless --quiet) and write it to --markdown."""
    from experiments.benchmarks.compile_cache import use_compile_cache

    s = QUICK if args.quick else FULL
    changes = {k: v for k, v in (("budget_s", args.budget), ("vocab", args.vocab)) if v is not None}
    if args.repeats:
        changes.update(scan_repeats=args.repeats, step_repeats=args.repeats)
    compile_cache = use_compile_cache(args.compile_cache)
    result = run_device_bench(dataclasses.replace(s, **changes), args.quick, args.dtype, args.seed, args.quiet)
    result["compile_cache"] = compile_cache
    result["malloc"] = getattr(args, "malloc_info", {"mode": "default", "applied": False})
    text = markdown(result)
    if not args.quiet:
        print(text)
    if args.markdown:
        print(f"markdown written to {write_text_atomic(args.markdown, text)}")
    return result
