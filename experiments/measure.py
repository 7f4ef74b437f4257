"""`griffin-measure experiment=train_speed|inference [overrides] [--dry-run] [--quiet]`.

Composes the Hydra configuration, runs the measurement the preset names
(`experiment.measure.kind`: experiments/paper/train_speed.py or experiments/paper/inference.py)
and writes `<store.root>/measurements/<experiment.name>.json` atomically: the machine, the
settings, and the table of results. `griffin-figures` draws Figs 3, 1b and 4 from that file
(analysis/paper_speed_figures.py). `--dry-run` prints what would be measured (batches, memory
estimates, eq. 5 bytes) without compiling anything. Every user error is one line, exit code 2.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Mapping, Sequence

from experiments.cli import _guard, overrides_parser
from experiments.configuration import UsageError
from run_store.locations import is_url, measurement_path

KINDS = ("train_speed", "inference")
SCHEMA_VERSION = 1


def _settings(cfg: Mapping[str, Any]):
    """(kind, settings) of the composed config, or UsageError if it names no measurement."""
    exp = cfg["experiment"]
    kind = exp["measure"]["kind"]
    if kind not in KINDS:
        raise UsageError(f"experiment={exp['name']} is not a measurement preset (experiment.measure.kind={kind!r}); "
                         f"use experiment=train_speed or experiment=inference")
    from experiments.benchmarks import MALLOC_MODES

    if exp["measure"]["malloc"] not in MALLOC_MODES:
        raise UsageError(f"experiment.measure.malloc={exp['measure']['malloc']!r}: "
                         f"expected one of {list(MALLOC_MODES)}")
    if kind == "train_speed":
        from experiments.paper.train_speed import TrainSpeedSettings

        return kind, TrainSpeedSettings.from_config(cfg)
    from experiments.paper.inference import InferenceSettings

    return kind, InferenceSettings.from_config(cfg)


def _compile_cache(cfg: Mapping[str, Any]) -> str | None:
    """The persistent JAX compilation cache: the one JAX already has, else launcher.compile_cache,
    else <store root>/jax-cache for a local store (none for a remote one)."""
    import jax

    from experiments.benchmarks.compile_cache import use_compile_cache

    if jax.config.jax_compilation_cache_dir:
        return str(jax.config.jax_compilation_cache_dir)
    root = str(cfg["store"]["root"])
    folder = cfg["launcher"].get("compile_cache") or (
        None if is_url(root) else os.path.join(root, "jax-cache"))
    return use_compile_cache(folder) if folder else None


def _print_plan(kind: str, planned: Mapping[str, Any], out_path: str) -> None:
    if kind == "train_speed":
        print("| size | family | T | batch | params | est. memory GB | GFLOP/step exact | FLOP ratio as-executed |")
        print("|---|---|---|---|---|---|---|---|")
        for r in planned["rows"] + planned["skipped"]:
            ratio = r["flop_ratio_as_executed"]
            print(f"| {r['size']} | {r['family']} | {r['length']} | {r['batch']} | {r['params']:,} | "
                  f"{r['memory_estimate_gb']:.2f} | {r['flops_per_step_exact'] / 1e9:.1f} | "
                  f"{'-' if ratio is None else f'{ratio:.2f}'} |"
                  + (f" skipped: {r['reason']}" if "reason" in r else ""))
    else:
        print(f"latency: {len(planned['latency'])} points")
        for r in planned["latency"]:
            print(f"  {r['size']} {r['family']}: prefill {r['prefill']}, decode {r['decoded']}, batch {r['batch']}, "
                  f"eq. 5 {r['eq5_bytes'] / 1e6:.1f} MB")
        print(f"throughput: {len(planned['throughput'])} points")
        for r in planned["throughput"] + planned["skipped"]:
            print(f"  {r['size']} {r['family']}: sample {r['sample_length']}, batch {r['batch']} "
                  f"(budget allows {r['batch_by_budget']:,}), eq. 5 {r['eq5_bytes'] / 1e6:.1f} MB"
                  + (f" skipped: {r['reason']}" if "reason" in r else ""))
    print(f"would write {out_path}")


def _measure(argv: Sequence[str]) -> int:
    parser = overrides_parser(
        "griffin-measure",
        "Run a speed measurement preset: griffin-measure experiment=train_speed|inference [key=value ...]",
        {"--dry-run": "print what would be measured and exit", "--quiet": "no progress lines"},
        "Hydra overrides, e.g. experiment.measure.repeats=5")
    args = parser.parse_intermixed_args(argv)
    from experiments.paper.families import compose_measure

    cfg, families_note = compose_measure(args.overrides)  # family=a,b: the families measured
    kind, settings = _settings(cfg)
    if families_note:
        print(families_note)
    name = cfg["experiment"]["name"]
    out_path = measurement_path(cfg["store"]["root"], name)
    module = _module(kind)
    if args.dry_run:
        _print_plan(kind, module.plan(settings), out_path)
        return 0

    from experiments.benchmarks import configure_malloc

    malloc = configure_malloc(cfg["experiment"]["measure"]["malloc"])  # before JAX starts its threads
    from experiments.benchmarks.limits import machine_info, now_iso
    from run_store import write_json

    compile_cache = _compile_cache(cfg)
    progress = (lambda s: None) if args.quiet else (lambda s: print(f"[{name}] {s}", file=sys.stderr, flush=True))
    started, t0 = now_iso(), time.perf_counter()
    results = module.run_train_speed(settings, progress) if kind == "train_speed" \
        else module.run_inference(settings, progress)
    doc = {
        "schema_version": SCHEMA_VERSION, "kind": kind, "experiment": name,
        "description": cfg["experiment"]["description"], "command": "griffin-measure " + " ".join(args.overrides),
        "machine": machine_info(), "malloc": malloc, "compile_cache": compile_cache,
        "started_at": started, "elapsed_s": time.perf_counter() - t0,
        "settings": settings.to_dict(), "results": results,
    }
    write_json(out_path, doc)
    print(module.format_table(results) if kind == "train_speed" else module.format_tables(results))
    print(f"{kind}: {doc['elapsed_s']:.0f} s -> {out_path}")
    return 0


def _module(kind: str):
    if kind == "train_speed":
        from experiments.paper import train_speed

        return train_speed
    from experiments.paper import inference

    return inference


main = _guard(_measure, "griffin-measure")

if __name__ == "__main__":
    sys.exit(main())
