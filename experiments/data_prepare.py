"""`griffin-data prepare`: text files, folders or a Hugging Face dataset -> sharded token files
with their manifest, in parallel on Ray, resumable shard by shard.

The plan lists the inputs (nothing is read), splits them by file with the text source's rule
(splits.heldout_keys), and groups each split's files, in key order, into shards of about
`shard_bytes` of text (a Hugging Face dataset: `rows_per_shard` rows of its train and held-out
splits, the held-out one being rows of train held out by the same rule when the dataset has
no validation split: hf_source.py). Each shard is one Ray task: it reads its files, tokenizes each (one file = one
document), appends the separator after every document and writes `<split>-<i>.bin`
atomically, then its record `.prepare/<name>.json` (what it was made from, and its manifest
entry). A rerun skips every shard whose record matches the plan and whose file is as recorded;
the manifest is written last, from the records.

The separator is the tokenizer's end-of-document token (SentencePiece's `</s>`, a tokenizers
file's `<|endoftext|>` or similar); a tokenizer without one (bytes) gets a new id after its
vocabulary, so the vocabulary grows by one. Tokens are uint16 up to 65,536 ids, else uint32.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from griffin_core.data import manifest as mf
from griffin_core.data.errors import DataError
from griffin_core.data.hf_source import HFDatasetSource
from griffin_core.data.sources import check_text, list_text_files
from griffin_core.data.splits import DEFAULT_HELDOUT_FRACTION, heldout_keys
from griffin_core.data.tokenizer import (ByteTokenizer, HFTokenizersTokenizer, SentencePieceTokenizer, Tokenizer,
                                         encode_file_bytes, load_tokenizer)

RECORDS = ".prepare"
"""Folder of the output holding one record per finished shard."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every shard task needs besides its inputs (small: shipped with each task)."""

    tokenizer_file: str | None
    """Name of the tokenizer file (None: bytes); its content travels in `tokenizer_data`."""
    tokenizer_data: bytes
    tokenizer_name: str
    eot: int
    vocab_size: int
    dtype: str
    hf: dict[str, Any] | None = None
    """HFDatasetSource's arguments for a Hugging Face dataset."""
    session: str = ""
    """Which `prepare` call the tasks belong to: a worker reuses a loaded dataset within one call only."""


@dataclasses.dataclass(frozen=True)
class ShardJob:
    name: str
    """File name, `<split>-<index>.bin`."""
    split: str
    inputs: tuple
    """((key, path, size, mtime_ns), ...) of text files, or (('hf', split, start, stop),)."""

    def signature(self, settings: Settings) -> dict[str, Any]:
        """What the shard is made from: a record with another signature is stale."""
        # Text files by key, size and mtime (not their paths: the folder may move); rows as they are.
        inputs = [list(i) if i[0] == "hf" else [i[0], i[2], i[3]] for i in self.inputs]
        return {"name": self.name, "inputs": inputs, "tokenizer": settings.tokenizer_name, "eot": settings.eot,
                "dtype": settings.dtype, "hf": settings.hf}


def make_settings(tokenizer: str, dtype: str | None = None, hf: dict[str, Any] | None = None) -> Settings:
    """Load the tokenizer (DataError naming a missing or corrupt file) and choose the separator,
    vocabulary and dtype (DataError if `dtype` cannot hold the vocabulary)."""
    tokenizer = tokenizer or "bytes"
    tok = load_tokenizer(tokenizer)
    eot = getattr(tok, "eot_id", None)
    vocab = tok.vocab_size if eot is not None else tok.vocab_size + 1
    eot = eot if eot is not None else tok.vocab_size
    dtype = dtype or mf.dtype_for(vocab)
    mf.check_dtype(dtype, vocab, f"tokenizer {tokenizer}: its vocabulary with the separator,")
    is_file = not isinstance(tok, ByteTokenizer)
    name = tok.name if eot < tok.vocab_size else f"{tok.name}+eot"  # the new separator makes another vocabulary
    return Settings(str(Path(tokenizer).name) if is_file else None, Path(tokenizer).read_bytes() if is_file else b"",
                    name, int(eot), int(vocab), dtype, hf)


def plan_files(inputs: Sequence[str | os.PathLike], heldout_fraction: float, shard_bytes: int) -> list[ShardJob]:
    """Shards of text files and folders: by split, in key order, about shard_bytes of text each."""
    found = list_text_files([Path(p) for p in inputs])
    held = heldout_keys(found, heldout_fraction)
    jobs = []
    for split in ("train", "heldout"):
        group, size = [], 0
        for key in sorted(k for k in found if (k in held) == (split == "heldout")):
            st = found[key].stat()
            if st.st_size == 0:
                continue  # an empty file is no document
            group.append((key, str(found[key].resolve()), st.st_size, st.st_mtime_ns))
            size += st.st_size
            if size >= shard_bytes:
                jobs.append(ShardJob(f"{split}-{len([j for j in jobs if j.split == split]):05d}.bin", split, tuple(group)))
                group, size = [], 0
        if group:
            jobs.append(ShardJob(f"{split}-{len([j for j in jobs if j.split == split]):05d}.bin", split, tuple(group)))
    if not any(j.split == "train" for j in jobs):
        raise DataError(f"prepare: {', '.join(map(str, inputs))} contain no text (all files empty)")
    return jobs


def plan_hf(settings: Settings, rows_per_shard: int) -> list[ShardJob]:
    """Shards of a Hugging Face dataset's train and held-out splits by rows (loads the dataset)."""
    source = HFDatasetSource(**settings.hf)
    jobs = []
    for split in ("train", "heldout"):
        rows = source.num_rows(split)
        for i, start in enumerate(range(0, rows, rows_per_shard)):
            jobs.append(ShardJob(f"{split}-{i:05d}.bin", split, (("hf", split, start, min(rows, start + rows_per_shard)),)))
    return jobs


_WORKER_TOKENIZERS: dict[str, Tokenizer] = {}
_WORKER_DATASET: dict[str, HFDatasetSource] = {}


def _tokenizer(settings: Settings) -> Tokenizer:
    """The tokenizer in a worker, built from the bytes the task carries (no shared filesystem
    needed for it), once per worker process."""
    if settings.tokenizer_file is None:
        return ByteTokenizer()
    key = hashlib.sha256(settings.tokenizer_data).hexdigest()
    if key not in _WORKER_TOKENIZERS:
        kind = HFTokenizersTokenizer if settings.tokenizer_file.endswith(".json") else SentencePieceTokenizer
        _WORKER_TOKENIZERS[key] = kind(Path(settings.tokenizer_file), settings.tokenizer_data)
    return _WORKER_TOKENIZERS[key]


def _hf_source(settings: Settings) -> HFDatasetSource:
    """The Hugging Face dataset in a worker, loaded (and its held-out rows chosen) once per
    worker process and `prepare` call, not once per shard."""
    key = settings.session + json.dumps(settings.hf, sort_keys=True)
    if key not in _WORKER_DATASET:
        _WORKER_DATASET.clear()
        _WORKER_DATASET[key] = HFDatasetSource(**settings.hf)
    return _WORKER_DATASET[key]


def _documents(job: ShardJob, settings: Settings, tok: Tokenizer):
    """Token arrays [n] of the shard's documents, in order."""
    if job.inputs and job.inputs[0][0] == "hf":
        _, split, start, stop = job.inputs[0]
        for text in _hf_source(settings).texts(split, start, stop):
            yield tok.encode(text)
        return
    for key, path, size, mtime_ns in job.inputs:
        data = Path(path).read_bytes()
        check_text(Path(path), data)
        yield encode_file_bytes(tok, data)


def prepare_shard(job: ShardJob, settings: Settings, out: str) -> dict[str, Any]:
    """Tokenize one shard and write it and its record; returns its manifest entry (as a dict)."""
    tok = _tokenizer(settings)
    eot = np.array([settings.eot], dtype=settings.dtype)
    pieces = []
    for tokens in _documents(job, settings, tok):
        if len(tokens):
            pieces += [np.asarray(tokens).astype(settings.dtype), eot]
    if not pieces:
        raise DataError(f"prepare: shard {job.name} has no tokens (its inputs hold no text)")
    arr = np.concatenate(pieces)
    folder = Path(out)
    tmp = folder / f".{job.name}.{os.getpid()}.tmp"
    arr.tofile(tmp)
    os.replace(tmp, folder / job.name)  # a shard is there whole or not at all
    entry = mf.scan_file(folder / job.name, settings.dtype, sha256=hashlib.sha256(arr.tobytes()).hexdigest(),
                         max_id=int(arr.max()))
    record = {"plan": job.signature(settings), "entry": dataclasses.asdict(entry)}
    _write_json(folder / RECORDS / f"{job.name}.json", record)
    return record["entry"]


def finished(job: ShardJob, settings: Settings, out: Path) -> mf.ShardEntry | None:
    """The shard's entry if an earlier run finished it from the same inputs, else None."""
    try:
        record = json.loads((out / RECORDS / f"{job.name}.json").read_text())
        entry = mf.ShardEntry(**record["entry"])
        mf.check_entry(out / job.name, entry, out / RECORDS)
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return None
    return entry if record["plan"] == json.loads(json.dumps(job.signature(settings))) else None


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def run_shards(jobs: Sequence[ShardJob], settings: Settings, out: Path, address: str | None, workers: int | None,
               on_done: Callable[[ShardJob, mf.ShardEntry], None]) -> None:
    """Run the shard tasks on Ray: the cluster at `address`, else an embedded local Ray (started
    and shut down here, unless this process already has one)."""
    import ray

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
        common = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address:
            ray.init(address=address, **common)
        else:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            # "local": a new instance even if a `ray start` cluster runs on this machine (ray.init would join it).
            ray.init(address="local", num_cpus=workers or cores, _node_ip_address="127.0.0.1", **common)
    try:
        task = ray.remote(num_cpus=1, max_retries=2)(prepare_shard)
        shared = ray.put(settings)  # the tokenizer's bytes once, not once per task
        pending = {task.remote(job, shared, str(out)): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    entry = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    if isinstance(err.cause, DataError):  # the user's data: one line, not a traceback
                        raise err.cause from None
                    raise
                on_done(job, mf.ShardEntry(**entry))
    finally:
        if started:
            ray.shutdown()


def prepare(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, settings: Settings, *,
            heldout_fraction: float = DEFAULT_HELDOUT_FRACTION, shard_bytes: int = 64 << 20,
            rows_per_shard: int = 100_000, address: str | None = None, workers: int | None = None,
            progress: Callable[[int, int], None] = lambda done, total: None) -> tuple[mf.TokenManifest, int]:
    """Prepare the shards still missing and write the manifest. Returns (manifest, shards skipped
    because an earlier run finished them). `progress(done, total)` after each shard."""
    out = Path(out)
    settings = dataclasses.replace(settings, session=os.urandom(8).hex())
    if out.exists() and not out.is_dir():
        raise DataError(f"prepare: output {out} is a file, not a folder")
    jobs = plan_hf(settings, rows_per_shard) if settings.hf else plan_files(inputs, heldout_fraction, shard_bytes)
    (out / RECORDS).mkdir(parents=True, exist_ok=True)
    entries = {j.name: e for j in jobs if (e := finished(j, settings, out)) is not None}
    skipped = len(entries)
    progress(len(entries), len(jobs))

    def done(job: ShardJob, entry: mf.ShardEntry) -> None:
        entries[job.name] = entry
        progress(len(entries), len(jobs))

    todo = [j for j in jobs if j.name not in entries]
    if todo:
        run_shards(todo, settings, out, address, workers, done)
    splits = {s: [entries[j.name] for j in jobs if j.split == s] for s in ("train", "heldout")}
    manifest = mf.TokenManifest(out / mf.MANIFEST_NAME, settings.dtype, settings.vocab_size, settings.eot,
                                settings.tokenizer_name, {s: es for s, es in splits.items() if es})
    mf.write_manifest(manifest)
    return manifest, skipped
