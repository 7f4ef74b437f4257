"""`griffin-demo`: the README's main job. The CPU scaling study end to end: the `scaling_cpu`
sweep on the embedded corpus (embedded local Ray), then the fits and figures of
`griffin-figures` on its manifest. Everything lands in the run store (`results/` by default),
so a second invocation skips the runs that finished and only redraws."""

from __future__ import annotations

import sys
import time
from typing import Sequence

from experiments.cli import _guard
from run_store.cli import ArgumentParser


def _demo(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="griffin-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="results", help="run store root")
    parser.add_argument("--experiment", default="scaling_cpu", help="the sweep preset to run")
    parser.add_argument("overrides", nargs="*", help="extra overrides for the sweep")
    args = parser.parse_intermixed_args(argv)
    from analysis.cli import figures_main
    from launch.cli import sweep_main

    start = time.time()
    code = sweep_main([f"experiment={args.experiment}", f"store.root={args.root}", *args.overrides])
    if code not in (0, 1):
        return code
    figures = figures_main([f"{args.root}/sweeps/{args.experiment}.json"])
    print(f"main job finished in {(time.time() - start) / 60:.1f} min "
          f"(sweep exit {code}, figures exit {figures}); figures in {args.root}/figures/{args.experiment}")
    return code or figures


main = _guard(_demo, "griffin-demo")

if __name__ == "__main__":
    sys.exit(main())
