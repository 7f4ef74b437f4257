"""Pre-tokenized token files as a source: one file, nanoGPT's train.bin / val.bin, or a folder of
shards, described by a manifest (manifest.py) so that nothing reads the tokens but training.

With a manifest, the fingerprint, token counts and the range check (largest id < vocab_size)
come from it, after a stat of each shard (size and mtime must agree). Without one (a bare
nanoGPT file), each file is read once per process to compute the same figures (the fingerprint
is the same either way); `griffin-data manifest` writes one. Rows are read on demand by
token_stream.ShardedStream, and the training order of rows is an index shuffle (shuffle.py):
neither materialises anything per row.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from griffin_core.data import manifest as mf
from griffin_core.data import remote, shuffle
from griffin_core.data.errors import DataError
from griffin_core.data.source_base import TokenSource
from griffin_core.data.splits import check_split
from griffin_core.data.token_stream import ShardedStream

_SCANNED: dict[tuple, mf.ShardEntry] = {}
"""Entries of files without a manifest, by (path, size, mtime, dtype): read once per process."""
_WARN_BYTES = 1 << 30  # reading a file this large for want of a manifest is worth a warning


class TokenFileSource(TokenSource):
    """Token files: `train` is a file, a folder holding train.bin and val.bin (nanoGPT's
    names), or a folder with a manifest.json listing shards per split; or a bucket prefix
    (`gs://...`, `s3://...`) holding a manifest.json and its shards.

    A manifest, when there is one, says the dtype, the separator and the tokenizer; `dtype`
    and `eot_token` apply to files without one. Without `eot_token` each shard (file) is one
    document; with it, a document ends after each `eot_token`.
    """

    row_order = "index"
    """TrainBatches orders rows by an index shuffle (shuffle.py): splits may have ~1e8 rows."""

    def __init__(self, train: str | os.PathLike, vocab_size: int,
                 heldout: str | os.PathLike | None = None, eot_token: int | None = None,
                 dtype: str = "uint16", tokenizer_name: str = "pretokenized"):
        self.path = str(train) if remote.is_remote(train) else Path(train)
        self.heldout_path = Path(heldout) if heldout is not None else None
        self.vocab_size = int(vocab_size)
        self._tokenizer_name = tokenizer_name
        self._eot = eot_token
        self._dtype = np.dtype(dtype)
        self._shards: dict[str, list[tuple[Path | str, mf.ShardEntry]]] | None = None
        self._streams: dict[str, ShardedStream] = {}

    # A manifest, once read, says these three: reading them resolves the files first.
    @property
    def dtype(self) -> np.dtype:
        self._resolve()
        return self._dtype

    @property
    def eot_token(self) -> int | None:
        self._resolve()
        return self._eot

    @property
    def tokenizer_name(self) -> str:
        self._resolve()
        return self._tokenizer_name

    # -- what the files are

    def _resolve(self) -> dict[str, list[tuple[Path | str, mf.ShardEntry]]]:
        if self._shards is not None:
            return self._shards
        if isinstance(self.path, str):
            manifest = mf.find_manifest(self.path)
            if manifest is None:
                raise DataError(f"token data {self.path}: no {mf.MANIFEST_NAME} under this prefix (shards in a bucket "
                                f"need one: write it with griffin-data manifest before uploading them)")
        else:
            manifest = mf.find_manifest(self.path) if self.path.exists() else None
        if manifest is not None:
            mf.verify(manifest)
            self._dtype = np.dtype(manifest.dtype)
            if self._eot is not None and self._eot != manifest.eot_token:
                raise DataError(f"eot_token {self._eot} given, but {manifest.path} says {manifest.eot_token}")
            self._eot = manifest.eot_token
            self._tokenizer_name = manifest.tokenizer or self._tokenizer_name
            shards = {s: [(manifest.shard_path(e), e) for e in es] for s, es in manifest.splits.items()}
            where = manifest.path
        else:
            if self._dtype.name not in mf.ID_LIMITS:
                raise DataError(f"token file dtype {self._dtype.name!r}: use uint16 (nanoGPT), uint32 or int32")
            files = mf.layout(self.path)
            shards = {s: [(f, self._entry(f)) for f in fs] for s, fs in files.items()}
            where = None
        if self.heldout_path is not None:
            shards["heldout"] = [(self.heldout_path, self._entry(self.heldout_path))]
        mf.check_dtype(self._dtype.name, self.vocab_size, f"token data {self.path}: vocab_size")
        for split, entries in shards.items():
            for path, entry in entries:
                if entry.max_id < self.vocab_size:
                    continue
                if where is not None:
                    raise DataError(f"token file {path}: largest token {entry.max_id} (from {where}) is >= "
                                    f"vocab_size {self.vocab_size}")
                index, token = mf.first_token_at_least(path, self._dtype.name, self.vocab_size)
                raise DataError(f"token file {path}: token {token} at index {index} is >= vocab_size {self.vocab_size}")
        self._shards = shards
        return shards

    def _entry(self, path: Path) -> mf.ShardEntry:
        """A file's entry: from its own manifest (`<file>.manifest.json`) or read once."""
        own = mf.find_manifest(path) if path.is_file() else None
        if own is not None:
            if own.dtype != self._dtype.name:
                raise DataError(f"token file {path}: its manifest says {own.dtype}, not {self._dtype.name}")
            entries = own.splits.get("train", [])
            if len(entries) != 1 or entries[0].file != path.name:
                raise DataError(f"token manifest {own.path}: does not describe {path.name} alone")
            mf.check_entry(path, entries[0], own.path)
            return entries[0]
        if not path.is_file():
            raise DataError(f"token file {path} does not exist")
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns, self._dtype.name)
        if key not in _SCANNED:
            if st.st_size >= _WARN_BYTES:
                print(f"token file {path} has no manifest: reading all {st.st_size:,} bytes to fingerprint it "
                      f"(write one once: griffin-data manifest {self.path} --vocab-size V)", file=sys.stderr)
            _SCANNED[key] = mf.scan_file(path, self._dtype.name)
        return _SCANNED[key]

    def _split(self, split: str) -> list[tuple[Path | str, mf.ShardEntry]]:
        check_split(split)
        shards = self._resolve()
        if split not in shards:
            raise DataError(f"token data {self.path}: no file given for the {split} split")
        return shards[split]

    # -- the source interface

    def row_stream(self, split: str) -> ShardedStream:
        """The split as one stream read on demand (packing.packed_stream uses it as it is)."""
        if split not in self._streams:
            entries = self._split(split)
            self._streams[split] = ShardedStream([p for p, _ in entries], [e.tokens for _, e in entries],
                                                 self.dtype.name, self.eot_token)
        return self._streams[split]

    def tokens(self, split: str) -> np.ndarray:
        """The split's tokens [N]: the file itself as a read-only memmap when it is one file
        (a copy when it is several: small data only)."""
        entries = self._split(split)
        if any(isinstance(p, str) for p, _ in entries):
            return self.row_stream(split).read(0, sum(e.tokens for _, e in entries))
        arrays = [np.memmap(p, dtype=self.dtype, mode="r", shape=(e.tokens,)) for p, e in entries]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    def documents(self, split: str) -> list[np.ndarray]:
        """Every document of the split (reads the split: statistics and small data)."""
        return list(self.row_stream(split).documents())

    def iter_documents(self, split: str):
        """Documents of the split in order, lazily: a caller that stops early reads no further."""
        return self.row_stream(split).documents()

    def num_tokens(self, split: str) -> int:
        return sum(e.tokens for _, e in self._split(split))

    def num_documents(self, split: str) -> int:
        return len(self.documents(split))

    def num_bytes(self, split: str) -> None:
        return None

    def fingerprint(self) -> str:
        """From the files' sha256 (manifest or one read), the vocabulary, separator, dtype,
        tokenizer and the row order: equal iff the same batches."""
        shards = self._resolve()
        parts = [f"token-file\n{self.tokenizer_name}\n{self.vocab_size}\n{self.eot_token}\n{self.dtype.name}\n"
                 f"row order {shuffle.VERSION}"]
        for split in ("train", "heldout"):
            if split in shards:
                digests = [e.sha256 for _, e in shards[split]]
                digest = digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()
                parts.append(f"{split}\t{digest}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()
