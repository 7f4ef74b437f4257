"""`griffin-data`: token manifests, data preparation and the embedded corpus's statistics.

    griffin-data manifest PATH --vocab-size V [--dtype uint16|uint32|int32] [--eot-token ID] [--tokenizer FILE]
    griffin-data prepare INPUT... --out DIR [--tokenizer bytes|FILE] [--address ADDR] [--workers N] ...
    griffin-data prepare --hf-dataset FOLDER|hf://NAME --out DIR [--tokenizer FILE] ...
    griffin-data stats

Also `python -m experiments.data_cli ...`. Bad input (a missing or corrupt tokenizer, a
vocabulary the dtype cannot hold, a token beyond the vocabulary, an --out that is a file, a
local dataset path that does not exist, a named split the dataset lacks) is one line, exit
code 2, and nothing is written. Only `hf://NAME` may reach the network
(griffin_core/data/hf_source.py). It lives above griffin_core because `prepare` runs on Ray.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from griffin_core.data import manifest as mf
from griffin_core.data.errors import DataError
from run_store.cli import ArgumentParser, command, fraction, output_folder, output_problem, positive_float, positive_int


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="griffin-data", description="Token manifests and data preparation")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("manifest", help="describe token files once (size, dtype, vocabulary, largest id, sha256, "
                                        "separator, mtime): fingerprints and range checks then read no tokens")
    m.add_argument("path", help="a token file, a folder with train.bin (and val.bin), or a folder of "
                                "train-*.bin / heldout-*.bin shards")
    m.add_argument("--vocab-size", type=positive_int, help="ids are below this (default: the tokenizer's)")
    m.add_argument("--dtype", choices=sorted(mf.ID_LIMITS), help="token type (default: the old manifest's, else uint16)")
    m.add_argument("--eot-token", type=int, help="the document separator's id (default: the old manifest's, else "
                                                 "none: a file is one document)")
    m.add_argument("--tokenizer", help="the SentencePiece .model or tokenizers .json file that made the tokens "
                                       "(default: the old manifest's tokenizer name)")
    p = sub.add_parser("prepare", help="text files, folders or a Hugging Face dataset -> token shards and manifest")
    p.add_argument("inputs", nargs="*", help="text files and folders (one file = one document)")
    p.add_argument("--out", required=True, type=output_folder,
                   help="output folder (a rerun skips its finished shards)")
    p.add_argument("--tokenizer", default="bytes", help="bytes, or a SentencePiece .model or tokenizers .json file")
    p.add_argument("--dtype", choices=sorted(mf.ID_LIMITS), help="token type (default: uint16 if the vocabulary fits)")
    p.add_argument("--heldout-fraction", type=fraction, default=0.03,
                   help="files held out, by a hash of their path (a Hugging Face dataset without a validation "
                        "split: its train rows, by a hash of their number)")
    p.add_argument("--shard-mb", type=positive_float, default=64.0, help="text per shard, MB (default 64)")
    p.add_argument("--address", help="Ray cluster address (default: an embedded local Ray)")
    p.add_argument("--workers", type=positive_int, help="local Ray: CPUs to use (default: all)")
    p.add_argument("--hf-dataset", help="a Hugging Face dataset instead of files: a local dataset folder or file "
                                        "(never the network), or hf://NAME, a dataset on the Hub (downloads)")
    p.add_argument("--hf-name", help="the dataset's configuration")
    p.add_argument("--hf-text-field", default="text")
    p.add_argument("--hf-split", default="train")
    p.add_argument("--hf-heldout-split", default=None,
                   help="the held-out split (default: validation if the dataset has one, else "
                        "--heldout-fraction of the train rows)")
    p.add_argument("--hf-rows-per-shard", type=positive_int, default=100_000)
    sub.add_parser("stats", help="the embedded corpus's fingerprint, split sizes and entropies")
    return parser


def _manifest(args) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from griffin_core.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    try:  # rewriting a manifest (files changed): what the old one says stays unless given again
        old = mf.read_manifest(mf.manifest_path(args.path)) if mf.manifest_path(args.path).is_file() else None
    except DataError:
        old = None
    vocab = args.vocab_size or (tokenizer.vocab_size if tokenizer else old.vocab_size if old else None)
    if vocab is None:
        raise DataError("manifest: give --vocab-size (or --tokenizer, whose vocabulary it then is)")
    dtype = args.dtype or (old.dtype if old else "uint16")
    eot = args.eot_token if args.eot_token is not None else old.eot_token if old else None
    name = tokenizer.name if tokenizer else old.tokenizer if old else None
    mf.check_dtype(dtype, vocab, "--vocab-size")
    target = mf.manifest_path(args.path)
    if not isinstance(target, str) and os.path.exists(args.path) and (why := output_problem(target)):
        raise DataError(f"manifest {target}: {why}")  # before the tokens are read
    files = [f for fs in mf.layout(args.path).values() for f in fs]
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  transient=True, disable=not sys.stdout.isatty()) as bar:
        task = bar.add_task("reading the token files", total=sum(f.stat().st_size for f in files))
        manifest = mf.describe(args.path, vocab, dtype, eot, name, progress=lambda n: bar.advance(task, n))
    mf.write_manifest(manifest)
    tokens = {s: sum(e.tokens for e in es) for s, es in manifest.splits.items()}
    print(f"wrote {manifest.path}: " + ", ".join(f"{s} {n:,} tokens" for s, n in tokens.items())
          + f" ({manifest.dtype}, vocabulary {manifest.vocab_size:,}, largest id {manifest.max_id:,})")
    return 0


def _prepare(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from experiments.data_prepare import make_settings, prepare
    from griffin_core.data.hf_source import dataset_location

    hf = None
    if args.hf_dataset:
        dataset_location(args.hf_dataset, "--hf-dataset")  # a missing local path: one line, no network
        hf = dict(path=args.hf_dataset, name=args.hf_name, text_field=args.hf_text_field,
                  train_split=args.hf_split, heldout_split=args.hf_heldout_split,
                  heldout_fraction=args.heldout_fraction)
    elif not args.inputs:
        raise DataError("prepare: give text files or folders, or --hf-dataset")
    settings = make_settings(args.tokenizer, args.dtype, hf)  # a bad tokenizer fails here, before any write
    bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    tasks = []

    def progress(done: int, total: int) -> None:  # the bar starts once the plan stands (a bad input: no bar)
        if not tasks:
            bar.start()
            tasks.append(bar.add_task("preparing shards", total=total))
        bar.update(tasks[0], completed=done, total=total)

    try:
        manifest, skipped = prepare(args.inputs, args.out, settings, heldout_fraction=args.heldout_fraction,
                                    shard_bytes=int(args.shard_mb * 2**20), rows_per_shard=args.hf_rows_per_shard,
                                    address=args.address, workers=args.workers, progress=progress)
    finally:
        if tasks:
            bar.stop()
    shards = sum(len(es) for es in manifest.splits.values())
    tokens = ", ".join(f"{s} {sum(e.tokens for e in es):,} tokens" for s, es in manifest.splits.items())
    print(f"{shards} shards ({skipped} already done), {tokens}, {manifest.dtype}, vocabulary {manifest.vocab_size:,}, "
          f"separator {manifest.eot_token} -> {manifest.path}")
    if "heldout" not in manifest.splits:
        print("note: no held-out shard (too few files to hold one out); training needs one", file=sys.stderr)
    return 0


def _main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "manifest":
        return _manifest(args)
    if args.command == "prepare":
        return _prepare(args)
    from griffin_core.data.stats import main as stats_main

    return stats_main()


main = command(_main, (DataError,), "griffin-data")

if __name__ == "__main__":
    sys.exit(main())
