"""`griffin-bench`: speed benchmarks, each reported as a ratio to a machine limit measured in the
same process (see docs/benchmarks.md).

    griffin-bench scan [--batch 8 --length 2048 --width 1024 --repeats 7 --json out.json]
    griffin-bench ssd [--batch 16 --length 256 --heads 16 --head-dim 8 --state 16 --chunks 8,16,32,64]
    griffin-bench limits [--force]
    griffin-bench train [--batch 16 --length 512 --width 256 --no-ladder --malloc-children 1]
    griffin-bench device [--quick --budget 540 --json device.json --markdown device.md]
    griffin-bench sweep [--runs 8 --steps 300 --sweeps seeds,learning_rates]

A subcommand is a pair of functions, `add_arguments(parser)` and `run(args) -> dict`, given to
`register`; the dict is what `--json PATH` writes. Options every subcommand takes (`--repeats`,
`--seed`, `--json`, `--malloc`) are added here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.benchmarks import MALLOC_MODES, configure_malloc, write_json_atomic
from experiments.configuration import USER_ERRORS
from run_store import one_line
from run_store.cli import EXIT_USAGE, ArgumentParser, command, non_negative_int, output_file, positive_int


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict[str, Any]]


SUBCOMMANDS: dict[str, Subcommand] = {}


def register(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             run: Callable[[argparse.Namespace], dict[str, Any]]) -> None:
    """Add a subcommand `griffin-bench NAME`."""
    if name in SUBCOMMANDS:
        raise ValueError(f"griffin-bench subcommand {name!r} is already registered")
    SUBCOMMANDS[name] = Subcommand(name, help, add_arguments, run)


# --------------------------------------------------------------------------- subcommands

ENTRY_POINT_GROUP = "griffin_scaling.bench"
"""Benchmarks of other packages join `griffin-bench` through this entry-point group (a module
with HELP, add_arguments and run; launch's sweep benchmark is one), so this package never
imports the packages above it."""


def _module(name: str) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict]]:
    """`add_arguments` and `run` of a benchmark module, imported only when used (so
    `griffin-bench --help` does not start JAX or Ray)."""
    import importlib

    def load():
        return importlib.import_module(name)

    return (lambda parser: load().add_arguments(parser)), (lambda args: load().run(args))


def _plugins() -> None:
    """Register the benchmarks other installed packages declare in ENTRY_POINT_GROUP. Their
    modules keep heavy imports inside `run`, so loading them here costs nothing."""
    from importlib.metadata import entry_points

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name not in SUBCOMMANDS:
            module = ep.load()
            register(ep.name, module.HELP, module.add_arguments, module.run)


def _limits_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="re-measure the matmul peak even if the cache has it")
    parser.add_argument("--matmul-n", type=positive_int, default=2048, help="matmul size n (default %(default)s)")
    parser.add_argument("--elements", type=positive_int, default=8 * 2048 * 1024,
                        help="fp32 elements per triad array (default %(default)s, 64 MiB)")


def _limits_run(args: argparse.Namespace) -> dict[str, Any]:
    from experiments.benchmarks import limits

    bandwidth = limits.measure_bandwidth((args.elements,), repeats=args.repeats or 9, seed=args.seed)
    peak = limits.matmul_peak(force=args.force, n=args.matmul_n)
    for name, row in bandwidth["triads"].items():
        print(f"{name:24s} {row['gbps']:8.2f} GB/s (median of {bandwidth['repeats']}; "
              f"{row['page_faults']:.0f} page faults per call)")
    print(f"{'streaming limit':24s} {bandwidth['gbps']:8.2f} GB/s ({bandwidth['limit']})")
    print(f"{'matmul peak fp32':24s} {peak['flops_per_s'] / 1e9:8.1f} GFLOP/s "
          f"(n={peak['shape'][0]}, {peak['threads']} threads, {peak['source']}, "
          f"measured {peak['measured_at']}; cache {peak['cache_path']})")
    return {"benchmark": "limits", "machine": limits.machine_info(), "bandwidth": bandwidth,
            "matmul_peak": peak}


register("scan", "RG-LRU scan implementations in GB/s against a streaming triad",
         *_module("experiments.benchmarks.scan_bench"))
register("ssd", "Mamba-2's chunked SSD, forward + backward, by chunk size, against the matmul peak",
         *_module("experiments.benchmarks.ssd_bench"))
register("limits", "streaming bandwidth and the (cached) dense-matmul peak",
         _limits_arguments, _limits_run)
register("train", "training-step tokens/s and MFU of each family (on CPU: fraction of the cached matmul peak)",
         *_module("experiments.benchmarks.train_bench"))
register("device", "a GPU or TPU in one command: copy bandwidth, scan variants against it, paper-row "
         "training steps with MFU, Griffin/MQA at 2K-8K (--quick: tiny sizes, any machine)",
         *_module("experiments.benchmarks.device_bench"))


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    _plugins()
    common = ArgumentParser(add_help=False)
    common.add_argument("--repeats", type=positive_int, default=None,
                        help="timed rounds per measurement (default: the benchmark's own)")
    common.add_argument("--seed", type=non_negative_int, default=0, help="inputs and round order (default %(default)s)")
    common.add_argument("--json", metavar="PATH", type=output_file, default=None,
                        help="also write the results to PATH (checked before the benchmark runs)")
    common.add_argument("--malloc", choices=MALLOC_MODES, default="reuse",
                        help="'reuse': keep freed large buffers mapped, so that timings do not count "
                             "the page faults of fresh outputs; 'default': glibc as configured "
                             "(default %(default)s; see experiments.benchmarks.configure_malloc)")
    parser = ArgumentParser(prog="griffin-bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in SUBCOMMANDS.values():
        cmd.add_arguments(sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, parents=[common]))
    return parser


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse `argv`, run the subcommand (it prints its report) and return its results."""
    return _run(build_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> dict[str, Any]:
    args.malloc_info = configure_malloc(args.malloc)  # before the subcommand starts JAX's threads
    result = {"command": args.command, "malloc": args.malloc_info, **SUBCOMMANDS[args.command].run(args)}
    if args.json:
        path = write_json_atomic(args.json, result)
        print(f"results written to {path}")
    return result


def _main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except USER_ERRORS as err:  # named after the subcommand, as argparse names its errors
        print(f"griffin-bench {args.command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    return 0


main = command(_main, USER_ERRORS, prog="griffin-bench")


if __name__ == "__main__":
    sys.exit(main())
