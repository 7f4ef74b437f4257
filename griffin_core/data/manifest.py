"""Token manifests: a small JSON file that describes token files once, so nothing has to read them
to fingerprint, range-check or plan.

A manifest lists, for each split ('train', 'heldout'), its shards in order: file name (relative
to the manifest's folder), size in bytes, tokens, sha256 of the content, largest token id and
the file's modification time (ns). With them: the dtype, the vocabulary, the largest id
overall, the document separator (`eot_token`, or null: a shard is one document) and the
tokenizer that made the tokens (name, which carries its file's sha256, or null).

Where it lives: `<folder>/manifest.json` for a folder of shards (or nanoGPT's train.bin and
val.bin), `<file>.manifest.json` for one token file. A shard whose size or modification time
disagrees with its manifest is refused (DataError naming the file): the manifest would vouch
for content it never saw. Written by `griffin-data prepare` and `griffin-data manifest`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from griffin_core.data import remote
from griffin_core.data.errors import DataError
from griffin_core.data.splits import SPLITS

FORMAT = "griffin-tokens/1"
MANIFEST_NAME = "manifest.json"
FILE_SUFFIX = ".manifest.json"
ID_LIMITS = {"uint16": 1 << 16, "uint32": 1 << 32, "int32": 1 << 31}
"""Token dtypes of token files and how many ids each can hold."""
_CHUNK_BYTES = 1 << 24  # scanned 16 MB at a time: bounded memory on any file


@dataclasses.dataclass(frozen=True)
class ShardEntry:
    """One token file as the manifest records it."""

    file: str
    """Path relative to the manifest's folder (POSIX separators)."""
    bytes: int
    tokens: int
    sha256: str
    max_id: int
    mtime_ns: int


@dataclasses.dataclass(frozen=True)
class TokenManifest:
    path: Path | str
    """Where the manifest file is (or will be written): a local path, or a URL (remote.py)."""
    dtype: str
    vocab_size: int
    eot_token: int | None
    tokenizer: str | None
    """The tokenizer's name, e.g. 'sentencepiece:<sha256 of its file>'; None if unknown."""
    splits: dict[str, list[ShardEntry]]

    @property
    def max_id(self) -> int:
        return max(e.max_id for shards in self.splits.values() for e in shards)

    def shard_path(self, entry: ShardEntry) -> Path | str:
        if isinstance(self.path, str):
            return remote.join(remote.parent(self.path), entry.file)
        return self.path.parent / entry.file

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "dtype": self.dtype, "vocab_size": self.vocab_size, "max_id": self.max_id,
                "eot_token": self.eot_token, "tokenizer": self.tokenizer,
                "bytes": sum(e.bytes for shards in self.splits.values() for e in shards),
                "splits": {s: [dataclasses.asdict(e) for e in shards] for s, shards in self.splits.items()}}


def check_dtype(dtype: str, vocab_size: int, what: str = "vocab_size") -> None:
    """DataError unless `dtype` is a token dtype that can hold ids [0, vocab_size)."""
    if dtype not in ID_LIMITS:
        raise DataError(f"token dtype {dtype!r}: use one of {sorted(ID_LIMITS)}")
    if not 0 < int(vocab_size) <= ID_LIMITS[dtype]:
        raise DataError(f"{what} {vocab_size} does not fit {dtype} tokens (at most {ID_LIMITS[dtype]:,} ids); "
                        f"use uint32")


def dtype_for(vocab_size: int) -> str:
    """The smaller token dtype for ids [0, vocab_size): uint16 up to 65,536, else uint32."""
    return "uint16" if vocab_size <= ID_LIMITS["uint16"] else "uint32"


def manifest_path(data_path: str | os.PathLike) -> Path | str:
    """Where the manifest of a folder or token file is (a bucket prefix: its manifest.json)."""
    if remote.is_remote(data_path):
        return remote.join(str(data_path), MANIFEST_NAME)
    p = Path(data_path)
    return p / MANIFEST_NAME if p.is_dir() else p.with_name(p.name + FILE_SUFFIX)


def find_manifest(data_path: str | os.PathLike) -> TokenManifest | None:
    """The manifest of `data_path` if it has one."""
    path = manifest_path(data_path)
    if isinstance(path, str):
        return read_manifest(path) if remote.size(path) is not None else None
    return read_manifest(path) if path.is_file() else None


def read_manifest(path: str | os.PathLike) -> TokenManifest:
    path = path if remote.is_remote(path) else Path(path)
    try:
        raw = json.loads(remote.read(path) if isinstance(path, str) else path.read_text())
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r} is not {FORMAT!r}")
        splits = {s: [ShardEntry(**e) for e in shards] for s, shards in raw["splits"].items()}
        if not splits or set(splits) - set(SPLITS) or not all(splits.values()):
            raise ValueError(f"splits must be non-empty lists under {SPLITS}")
        manifest = TokenManifest(path, str(raw["dtype"]), int(raw["vocab_size"]), raw["eot_token"],
                                 raw["tokenizer"], splits)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DataError(f"token manifest {path}: corrupt ({err})") from None
    check_dtype(manifest.dtype, manifest.vocab_size, f"token manifest {path}: vocab_size")
    return manifest


def write_manifest(manifest: TokenManifest) -> Path:
    """Write atomically (a reader never sees half a manifest)."""
    tmp = manifest.path.with_name(f".{manifest.path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=1) + "\n")
    os.replace(tmp, manifest.path)
    return manifest.path


def verify(manifest: TokenManifest) -> None:
    """DataError naming the first shard that is missing or whose size or mtime disagrees (stat only)."""
    for shards in manifest.splits.values():
        for entry in shards:
            check_entry(manifest.shard_path(entry), entry, manifest.path)


def check_entry(path: Path | str, entry: ShardEntry, where: Path | str) -> None:
    if isinstance(path, str):  # an object: its size (its time is the upload's; remote.py)
        found = remote.size(path)
        if found is None:
            raise DataError(f"token file {path} does not exist (listed in {where})")
        if found != entry.bytes:
            raise DataError(f"token file {path}: {found:,} bytes, but its manifest {where} says {entry.bytes:,} "
                            f"(rewrite it: griffin-data manifest)")
        return
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"token file {path} does not exist (listed in {where})") from None
    if st.st_size != entry.bytes:
        raise DataError(f"token file {path}: {st.st_size:,} bytes, but its manifest {where} says {entry.bytes:,} "
                        f"(rewrite it: griffin-data manifest)")
    if st.st_mtime_ns != entry.mtime_ns:
        raise DataError(f"token file {path}: modified after its manifest {where} was written "
                        f"(rewrite it: griffin-data manifest)")


def scan_file(path: str | os.PathLike, dtype: str, name: str | None = None, sha256: str | None = None,
              max_id: int | None = None, progress: Callable[[int], None] | None = None) -> ShardEntry:
    """A token file's entry, reading it once in chunks (sha256 and largest id), unless both
    `sha256` and `max_id` are given (already known, e.g. computed while writing it).
    `progress(bytes)` is called after each chunk."""
    path = Path(path)
    itemsize = np.dtype(dtype).itemsize
    if not path.is_file():
        raise DataError(f"token file {path} does not exist")
    before = path.stat()
    if before.st_size == 0 or before.st_size % itemsize:
        raise DataError(f"token file {path}: {before.st_size} bytes is not a positive multiple of "
                        f"{itemsize} ({dtype} tokens)")
    if sha256 is None or max_id is None:
        h, top = hashlib.sha256(), 0
        buf = bytearray(_CHUNK_BYTES)
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(memoryview(buf)[:n])
                top = max(top, int(np.frombuffer(buf, dtype=dtype, count=n // itemsize).max()))
                if progress:
                    progress(n)
        sha256, max_id = h.hexdigest(), top
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise DataError(f"token file {path} changed while it was read")
    return ShardEntry(file=name or path.name, bytes=before.st_size, tokens=before.st_size // itemsize,
                      sha256=sha256, max_id=int(max_id), mtime_ns=before.st_mtime_ns)


def first_token_at_least(path: Path, dtype: str, limit: int) -> tuple[int, int] | None:
    """(index, token) of the first token >= limit in a file (for the error message), or None."""
    arr = np.memmap(path, dtype=dtype, mode="r")
    step = _CHUNK_BYTES // arr.itemsize
    for lo in range(0, len(arr), step):
        bad = np.flatnonzero(np.asarray(arr[lo:lo + step]) >= limit)
        if bad.size:
            return lo + int(bad[0]), int(arr[lo + int(bad[0])])
    return None


def layout(data_path: str | os.PathLike) -> dict[str, list[Path]]:
    """The token files of a data path by split: a file (train only), a folder with nanoGPT's
    train.bin and val.bin, or a folder of shards named train-*.bin and heldout-*.bin."""
    p = Path(data_path)
    if p.is_file():
        return {"train": [p]}
    if not p.is_dir():
        raise DataError(f"token data {p} does not exist")
    if (p / "train.bin").is_file():
        return {"train": [p / "train.bin"], **({"heldout": [p / "val.bin"]} if (p / "val.bin").is_file() else {})}
    out = {s: sorted(p.glob(f"{s}-*.bin")) for s in SPLITS}
    out = {s: files for s, files in out.items() if files}
    if "train" not in out:
        raise DataError(f"token data {p}: no train.bin and no train-*.bin shards")
    return out


def describe(data_path: str | os.PathLike, vocab_size: int, dtype: str = "uint16", eot_token: int | None = None,
             tokenizer: str | None = None, progress: Callable[[int], None] | None = None) -> TokenManifest:
    """Scan the token files of `data_path` (see `layout`) into a manifest (not yet written).
    DataError naming the file if a token is >= vocab_size."""
    check_dtype(dtype, vocab_size, "vocab_size")
    target = manifest_path(data_path)
    splits = {}
    for split, files in layout(data_path).items():
        entries = [scan_file(f, dtype, f.relative_to(target.parent).as_posix(), progress=progress) for f in files]
        for f, e in zip(files, entries):
            if e.max_id >= vocab_size:
                index, token = first_token_at_least(f, dtype, vocab_size)
                raise DataError(f"token file {f}: token {token} at index {index} is >= vocab_size {vocab_size}")
        splits[split] = entries
    if eot_token is not None and not 0 <= eot_token < vocab_size:
        raise DataError(f"eot_token {eot_token} is not an id below vocab_size {vocab_size}")
    return TokenManifest(target, dtype, int(vocab_size), eot_token, tokenizer, splits)
