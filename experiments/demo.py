"""`griffin-demo`: the README's main job at its current stage.

Runs, on the embedded corpus: the scan benchmark, then MQA, Hawk and Griffin at the two
smallest CPU sizes with the paper's budget rule (20 tokens per parameter of the row's Hawk,
shared by the families), and prints the held-out losses. Runs land in the run store
(`results/` by default), so a second invocation skips what finished. The full scaling study
with fitted laws and figures replaces this once the sweep and analysis commands exist.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from experiments.cli import _guard
from experiments.configuration import compose, to_dict

FAMILIES = ("mqa", "hawk", "griffin")
SIZES = ("cpu-30k", "cpu-50k")


def _demo(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="griffin-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="results", help="run store root")
    parser.add_argument("--skip-bench", action="store_true")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from experiments.runner import execute, resolve, store_for

    console = Console()
    if not args.skip_bench:
        from experiments.bench import main as bench_main

        console.rule("RG-LRU scan benchmark")
        bench_main(["scan", "--repeats", "3"])
    table = Table(title="held-out loss after 20 tokens per parameter (embedded corpus)")
    for col in ("family", "size", "params", "tokens", "steps", "held-out nats", "bits/byte", "tokens/s"):
        table.add_column(col)
    for size in SIZES:
        for family in FAMILIES:
            ref = resolve(to_dict(compose([f"family={family}", f"size={size}", f"store.root={args.root}",
                                           "model.local_window=128"])))
            console.rule(f"{family} {size}: {ref.spec.params().total:,} parameters, {ref.spec.schedule.tokens:,} tokens")
            report = execute(ref, store_for(ref.spec.config))
            res = report.result or {}
            table.add_row(family, size, f"{ref.spec.params().total:,}", f"{ref.spec.schedule.tokens:,}",
                          str(ref.spec.schedule.steps), f"{res.get('heldout_loss_nats') or float('nan'):.4f}",
                          f"{res.get('heldout_bits_per_byte') or float('nan'):.4f}", f"{res.get('tokens_per_s') or 0:,.0f}")
    console.print(table)
    console.print(f"runs are in {args.root}/runs (metrics.jsonl, result.json, W&B offline folders)")
    return 0


main = _guard(_demo)

if __name__ == "__main__":
    sys.exit(main())
