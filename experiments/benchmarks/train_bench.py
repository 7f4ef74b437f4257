"""`griffin-bench train`: speed of the whole training step (forward, backward, AdamW update) of
each family, as tokens/s and as MFU: against the chip's nominal bf16 peak on an accelerator
of griffin_core.accelerators, else (CPU) as the fraction of the cached dense-matmul peak
(experiments/mfu.py). This module is the subcommand's command line (`add_arguments`, `run`,
registered in experiments/bench.py); the work is done by one module per job:

- `step_runner`: the compiled programs that are timed, one model's train step and the matmul
  probe;
- `train_measure`: the fixed shape of the issue (D 256, depth 6, T 512, batch 16, heads 4,
  D_RNN 352 in 16 gate blocks, local window 256 = T/2 as in the paper, byte vocabulary, fp32)
  and the CPU ladder (`griffin_core.sizes.CPU_SIZES` at T 256, batch 16), timed in
  interleaved rounds, and their figures (MFU, "x matmul", step-time ratios);
- `heap`: glibc's trimming of this process's heap, and its peak RSS;
- `malloc_children`: with its default settings glibc gives every large buffer XLA allocates a
  fresh mmap, page-faulted in on first touch (see `configure_malloc`), and a step's
  temporaries are one block of gigabytes. The setting is process-wide and must precede JAX's
  threads, so the comparison runs child processes of this benchmark, one setting after
  another in rotating order (`MALLOC_SETTINGS`), each timing the fixed shape;
- `train_report`: the tables printed at the end;
- `compile_cache`: JAX's persistent compilation cache, which the children share.

This process itself runs with `--malloc reuse` and, unless `--keep-trim` is given or the
machine lacks the memory for it, with trimming off (`heap.disable_trim`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from experiments.benchmarks.compile_cache import use_compile_cache
from experiments.benchmarks.malloc_children import MALLOC_REPEATS, compare_malloc
from experiments.benchmarks.train_measure import (
    DEFAULT_REPEATS,
    DEFAULT_SHAPE,
    FAMILIES,
    LADDER_BATCH,
    LADDER_CALL_SECONDS,
    LADDER_LENGTH,
    fixed_config,
    run_train_bench,
)
from experiments.benchmarks.train_report import render
from griffin_core.sizes import CPU_SIZES
from run_store.cli import non_negative_int, positive_float, positive_int


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names from `allowed`, duplicates dropped."""

    def parse(text: str) -> list[str]:
        values = [t.strip() for t in text.split(",") if t.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated names from {list(allowed)}, got {text!r}")
        return list(dict.fromkeys(values))

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommand's options (experiments/bench.py adds --repeats, --seed, --json, --malloc)."""
    d = DEFAULT_SHAPE
    g = parser.add_argument_group("fixed shape")
    g.add_argument("--width", type=positive_int, default=d["width"], help="D (default %(default)s)")
    g.add_argument("--depth", type=positive_int, default=d["depth"], help="residual blocks (default %(default)s)")
    g.add_argument("--num-heads", "--heads", dest="num_heads", type=positive_int, default=d["num_heads"],
                   help="query heads (default %(default)s)")
    g.add_argument("--lru-width", type=positive_int, default=d["lru_width"], help="D_RNN (default %(default)s)")
    g.add_argument("--num-gate-blocks", "--gate-blocks", dest="num_gate_blocks", type=positive_int,
                   default=d["num_gate_blocks"], help="RG-LRU gate blocks (default %(default)s)")
    g.add_argument("--local-window", "--window", dest="local_window", type=positive_int, default=d["local_window"],
                   help="Griffin's local-attention window (default %(default)s)")
    g.add_argument("--vocab-size", "--vocab", dest="vocab_size", type=positive_int, default=d["vocab_size"],
                   help="vocabulary (default %(default)s)")
    g.add_argument("--length", type=positive_int, default=d["length"], help="sequence length T (default %(default)s)")
    g.add_argument("--batch", type=positive_int, default=d["batch"], help="sequences per step (default %(default)s)")
    parser.add_argument("--families", type=_names(FAMILIES), default=list(FAMILIES),
                        help="comma-separated families (default mqa,hawk,griffin)")
    parser.add_argument("--matmul-n", type=positive_int, default=None,
                        help="size of the matmul timed in every round (default: the cached peak's n)")
    lg = parser.add_argument_group("CPU ladder")
    lg.add_argument("--ladder-sizes", type=_names(tuple(CPU_SIZES)), default=list(CPU_SIZES),
                    help="comma-separated griffin_core.sizes.CPU_SIZES rows (default: all)")
    lg.add_argument("--no-ladder", dest="ladder", action="store_false", help="skip the ladder")
    lg.add_argument("--ladder-length", type=positive_int, default=LADDER_LENGTH, help="T (default %(default)s)")
    lg.add_argument("--ladder-batch", type=positive_int, default=LADDER_BATCH, help="batch (default %(default)s)")
    lg.add_argument("--ladder-call-seconds", type=positive_float, default=LADDER_CALL_SECONDS,
                    help="each timed call runs enough steps to last this long (default %(default)s)")
    mg = parser.add_argument_group("malloc comparison (child processes)")
    mg.add_argument("--malloc-children", type=non_negative_int, default=1,
                    help="child runs of the fixed shape per family and malloc setting, 0 to skip "
                         "(default %(default)s)")
    mg.add_argument("--malloc-repeats", type=positive_int, default=MALLOC_REPEATS,
                    help="timed rounds in each child (default %(default)s)")
    parser.add_argument("--compile-cache", default=None, metavar="DIR",
                        help="persistent JAX compilation cache (default: the one JAX is configured with, "
                             "else jax-compile/ beside the limits cache; 'none' disables it)")
    parser.add_argument("--keep-trim", action="store_true",
                        help="with --malloc reuse, keep its trim threshold (default: trimming off, "
                             "see heap.disable_trim)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines and no table")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure (and, unless --quiet, print) the fixed shape, the ladder and the malloc comparison."""
    shape = {k: getattr(args, k) for k in DEFAULT_SHAPE}
    for family in args.families:  # a shape no family can take (heads not dividing D): one line, before any output
        fixed_config(family, shape)
    progress = (lambda s: None) if args.quiet else (lambda s: print(f"[train] {s}", file=sys.stderr, flush=True))
    compile_cache = use_compile_cache(args.compile_cache)
    malloc = dict(getattr(args, "malloc_info", {"mode": "default", "applied": False}))
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
