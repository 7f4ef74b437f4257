"""Command-line entry points. Every user error is one line on stderr with exit code 2."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from experiments.configuration import USER_ERRORS, compose, to_dict
from run_store.cli import ArgumentParser, command


def _guard(main: Callable[[Sequence[str]], int], prog: str) -> Callable[[Sequence[str] | None], int]:
    """A command of this package, with the project's one-line user errors (`prog: error: ...`)."""
    return command(main, USER_ERRORS, prog)


def overrides_parser(prog: str, description: str, switches: dict[str, str], overrides_help: str
                     ) -> ArgumentParser:
    """The parser of a command taking Hydra overrides: on/off `switches` ({"--flag": help}),
    then the overrides as positionals (parse with `parse_intermixed_args`, so flags may come
    anywhere)."""
    parser = ArgumentParser(prog=prog, description=description)
    for flag, text in switches.items():
        parser.add_argument(flag, action="store_true", help=text)
    parser.add_argument("overrides", nargs="*", help=overrides_help)
    return parser


def _train(argv: Sequence[str]) -> int:
    parser = overrides_parser("griffin-train", "Train one model: griffin-train family=hawk size=cpu-50k [key=value ...]",
                              {"--quiet": "no progress bar"}, "Hydra overrides, e.g. optim.lr=3e-3")
    parser.add_argument("--cfg", choices=["job"], help="print the resolved config and exit")
    args = parser.parse_intermixed_args(argv)
    cfg = compose(args.overrides)
    if args.cfg:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        return 0
    from experiments.benchmarks import configure_malloc
    from experiments.runner import execute, resolve, store_for

    ref = resolve(to_dict(cfg))
    if ref.spec.config["launcher"]["malloc"] == "no_trim" and not ref.spec.config["launcher"]["gpus_per_run"]:
        configure_malloc("no_trim")  # as sweep workers run: before JAX starts its threads
    store = store_for(ref.spec.config)
    sched = ref.spec.schedule
    params = ref.spec.params()
    print(f"run {ref.run_id}: {params.total:,} params, {sched.tokens:,} tokens, {sched.steps} steps of "
          f"{sched.batch_size} x {sched.seq_len}, lr {sched.lr:.3g} -> {store.run_dir(ref.run_id)}")
    report = execute(ref, store, progress=not args.quiet)
    if report.status == "SKIPPED":
        print(f"run {ref.run_id} already succeeded; nothing to do")
        return 0
    if report.status == "BUSY":
        print(f"error: {report.reason}", file=sys.stderr)
        return 1
    res = report.result
    loss, bpb = (res.heldout_loss_nats, res.heldout_bits_per_byte) if res else (None, None)
    print(f"{report.status}: held-out loss {loss} nats" + (f" ({bpb:.4f} bits/byte)" if bpb else "")
          + (f"; {report.reason}" if report.reason else ""))
    return 0 if report.status == "SUCCESS" else 1


train_main = _guard(_train, "griffin-train")


if __name__ == "__main__":
    sys.exit(train_main())
