"""Token sources: where documents come from, behind one interface.

A source gives, for a split ('train' or 'heldout'), its documents as 1-D token arrays in a
deterministic order, plus a fingerprint (content hash recorded with every run) and token counts.
Packing documents into training rows is not a source's job (see packing.py).

Sources: the embedded corpus (default), the user's text files or folders, a pre-tokenized
token file (nanoGPT `.bin`: flat uint16), and a Hugging Face dataset (only if `datasets` is
installed).
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from griffin_core.data import corpus as corpus_mod
from griffin_core.data.errors import DataError
from griffin_core.data.splits import (DEFAULT_HELDOUT_FRACTION, check_split, fingerprint_entries,
                                      heldout_keys, split_rule)
from griffin_core.data.tokenizer import ByteTokenizer, Tokenizer, encode_file_bytes, get_tokenizer


class TokenSource(abc.ABC):
    """Documents for a split, a fingerprint and token counts."""

    tokenizer_name: str
    vocab_size: int

    @abc.abstractmethod
    def documents(self, split: str) -> Sequence[np.ndarray]:
        """Documents of `split` in a fixed order: a sequence of token arrays [N_doc]."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Hex sha256 of the content, the split rule and the tokenizer: equal iff same data."""

    def num_tokens(self, split: str) -> int:
        """Total tokens in `split`."""
        return int(sum(len(d) for d in self.documents(split)))

    def num_documents(self, split: str) -> int:
        return len(self.documents(split))

    def num_bytes(self, split: str) -> int | None:
        """UTF-8 bytes of text behind `split` (for bits per byte); None if unknown."""
        return None


class _FileDocumentsSource(TokenSource):
    """Shared machinery of sources made of named text files: one file = one document."""

    def __init__(self, tokenizer: Tokenizer, heldout_fraction: float):
        self.tokenizer = tokenizer
        self.tokenizer_name = tokenizer.name
        self.vocab_size = tokenizer.vocab_size
        self.heldout_fraction = heldout_fraction
        self._docs: dict[str, list[np.ndarray]] | None = None
        self._keys: dict[str, list[str]] = {}
        self._bytes: dict[str, int] = {}
        self._fingerprint: str | None = None

    @abc.abstractmethod
    def _files(self) -> list[tuple[str, bytes]]:
        """(key, bytes) of every file, sorted by key; keys are relative paths."""

    def _build(self) -> None:
        files = self._files()
        held = heldout_keys([k for k, _ in files], self.heldout_fraction)
        docs: dict[str, list[np.ndarray]] = {"train": [], "heldout": []}
        keys: dict[str, list[str]] = {"train": [], "heldout": []}
        self._bytes = {"train": 0, "heldout": 0}
        entries = []
        for key, data in files:
            split = "heldout" if key in held else "train"
            tokens = encode_file_bytes(self.tokenizer, data)
            if len(tokens):  # an empty file is no document
                docs[split].append(tokens)
                keys[split].append(key)
            self._bytes[split] += len(data)
            entries.append((key, len(data), hashlib.sha256(data).hexdigest()))
        self._docs, self._keys = docs, keys
        if self._fingerprint is None:  # the corpus has its own, from the manifest
            self._fingerprint = fingerprint_entries(entries, split_rule(self.heldout_fraction),
                                                    self.tokenizer_name, kind=type(self).__name__)

    def documents(self, split: str) -> list[np.ndarray]:
        check_split(split)
        if self._docs is None:
            self._build()
        if not self._docs[split]:
            raise DataError(f"{self.describe()}: the {split} split is empty (splits are by file, "
                            f"{self.heldout_fraction:.0%} of files held out; each split needs a "
                            f"non-empty file)")
        return self._docs[split]

    def keys(self, split: str) -> list[str]:
        """Relative paths of the documents of `split`, aligned with `documents(split)`."""
        self.documents(split)
        return self._keys[split]

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._build()
        return self._fingerprint

    def num_bytes(self, split: str) -> int:
        check_split(split)
        if self._docs is None:
            self._build()
        return self._bytes[split]

    def describe(self) -> str:
        return type(self).__name__


class CorpusSource(_FileDocumentsSource):
    """The embedded default corpus (see corpus.py), verified against its manifest on first use."""

    def __init__(self, tokenizer: Tokenizer | None = None,
                 heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
                 manifest: str | Path | None = None):
        super().__init__(tokenizer or ByteTokenizer(), heldout_fraction)
        self.manifest = manifest

    def fingerprint(self) -> str:
        # From the manifest alone: cheap, and the files are checked against it before any use.
        if self._fingerprint is None:
            entries = corpus_mod.manifest_entries(corpus_mod.load_manifest(self.manifest))
            self._fingerprint = fingerprint_entries(entries, split_rule(self.heldout_fraction),
                                                    self.tokenizer_name, kind="embedded-corpus")
        return self._fingerprint

    def _build(self) -> None:
        self.fingerprint()
        super()._build()

    def _files(self) -> list[tuple[str, bytes]]:
        return [(f.path, f.data) for f in corpus_mod.load_corpus(self.manifest)]

    def describe(self) -> str:
        return "embedded corpus"


def _check_text(path: Path, data: bytes) -> None:
    # NUL bytes never occur in text and almost always in binary formats; UTF-8 is required
    # because every tokenizer here consumes UTF-8 text.
    if b"\x00" in data:
        raise DataError(f"text source: {path} is binary (contains NUL bytes), not text")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"text source: {path} is not UTF-8 text (invalid byte at offset {e.start})") from None


class TextFilesSource(_FileDocumentsSource):
    """The user's text files and folders (recursive). One file = one document.

    Hidden files and folders (name starting with '.') are skipped. Every other file must be
    UTF-8 text, else DataError names it. A document's key is its path relative to the folder
    given, prefixed by that folder's name, so the split and fingerprint ignore where it lives.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
                 tokenizer: Tokenizer | None = None,
                 heldout_fraction: float = DEFAULT_HELDOUT_FRACTION):
        super().__init__(tokenizer or ByteTokenizer(), heldout_fraction)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DataError("text source: no paths given")
        for p in self.paths:
            if not p.exists():
                raise DataError(f"text source: {p} does not exist")

    def _files(self) -> list[tuple[str, bytes]]:
        found: dict[str, Path] = {}
        for root in self.paths:
            if root.is_file():
                pairs = [(root.name, root)]
            else:
                pairs = []
                for dirpath, dirnames, filenames in os.walk(root):
                    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                    for name in sorted(filenames):
                        if not name.startswith("."):
                            f = Path(dirpath) / name
                            pairs.append(((Path(root.name) / f.relative_to(root)).as_posix(), f))
                if not pairs:
                    raise DataError(f"text source: folder {root} contains no files")
            for key, f in pairs:
                if key in found:
                    raise DataError(f"text source: {f} and {found[key]} have the same key {key!r}")
                found[key] = f
        out = []
        for key in sorted(found):
            data = found[key].read_bytes()
            _check_text(found[key], data)
            out.append((key, data))
        if not any(data for _, data in out):
            raise DataError(f"text source: {', '.join(map(str, self.paths))} contain no text (all files empty)")
        return out

    def describe(self) -> str:
        return f"text source {', '.join(map(str, self.paths))}"


class TokenFileSource(TokenSource):
    """Pre-tokenized flat token files read by np.memmap (nanoGPT `.bin`: raw uint16, no header).

    `train` is a file, or a folder holding `train.bin` and `val.bin` (nanoGPT's names).
    Without `eot_token` each file is one document; with it, a document ends after each
    `eot_token` (nanoGPT appends one after every document).
    """

    def __init__(self, train: str | os.PathLike, vocab_size: int,
                 heldout: str | os.PathLike | None = None, eot_token: int | None = None,
                 dtype: str = "uint16", tokenizer_name: str = "pretokenized"):
        train = Path(train)
        if train.is_dir():
            heldout = train / "val.bin" if heldout is None else heldout
            train = train / "train.bin"
        self.paths = {"train": train, "heldout": Path(heldout) if heldout is not None else None}
        self.vocab_size = int(vocab_size)
        self.tokenizer_name = tokenizer_name
        self.eot_token = eot_token
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.int32)):
            raise DataError(f"token file dtype {dtype!r}: use uint16 (nanoGPT), uint32 or int32")
        self._arrays: dict[str, np.ndarray] = {}
        self._digests: dict[str, str] = {}
        self._starts: dict[str, np.ndarray] = {}

    def tokens(self, split: str) -> np.ndarray:
        """The whole file of `split` as a read-only memmap [N], checked once."""
        check_split(split)
        if split in self._arrays:
            return self._arrays[split]
        path = self.paths[split]
        if path is None:
            raise DataError(f"token file source: no file given for the {split} split")
        if not path.is_file():
            raise DataError(f"token file {path} does not exist")
        size = path.stat().st_size
        if size == 0 or size % self.dtype.itemsize:
            raise DataError(f"token file {path}: {size} bytes is not a positive multiple of "
                            f"{self.dtype.itemsize} ({self.dtype.name} tokens)")
        arr = np.memmap(path, dtype=self.dtype, mode="r")
        h = hashlib.sha256()
        chunk = 1 << 24  # check and hash in 16M-token chunks: bounded memory on huge files
        for lo in range(0, len(arr), chunk):
            part = np.asarray(arr[lo:lo + chunk])
            bad = np.flatnonzero((part >= self.vocab_size) | (part < 0))
            if bad.size:
                i = lo + int(bad[0])
                raise DataError(f"token file {path}: token {int(arr[i])} at index {i} is >= "
                                f"vocab_size {self.vocab_size}")
            h.update(part.tobytes())
        self._arrays[split] = arr
        self._digests[split] = h.hexdigest()
        return arr

    def doc_starts(self, split: str) -> np.ndarray:
        """Start index of each document [D] int64 (0 first)."""
        arr = self.tokens(split)
        if self.eot_token is None:
            return np.zeros(1, np.int64)
        if split not in self._starts:
            chunk = 1 << 24  # scan in chunks: a full-size boolean temporary could be GBs
            ends = [lo + np.flatnonzero(np.asarray(arr[lo:lo + chunk]) == self.eot_token) + 1
                    for lo in range(0, len(arr), chunk)]
            ends = np.concatenate(ends)
            self._starts[split] = np.concatenate([[0], ends[ends < len(arr)]]).astype(np.int64)
        return self._starts[split]

    def documents(self, split: str) -> list[np.ndarray]:
        arr = self.tokens(split)
        starts = self.doc_starts(split)
        ends = np.append(starts[1:], len(arr))
        return [arr[a:b] for a, b in zip(starts, ends)]

    def num_tokens(self, split: str) -> int:
        return len(self.tokens(split))

    def flat_stream(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(tokens [N], doc_starts [D]) without copying: packing uses the file as it is."""
        return self.tokens(split), self.doc_starts(split)

    def num_documents(self, split: str) -> int:
        return len(self.doc_starts(split))

    def fingerprint(self) -> str:
        parts = [f"token-file\n{self.tokenizer_name}\n{self.vocab_size}\n{self.eot_token}\n{self.dtype.name}"]
        for split in ("train", "heldout"):
            if self.paths[split] is not None:
                self.tokens(split)
                parts.append(f"{split}\t{self._digests[split]}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class HFDatasetSource(TokenSource):
    """A Hugging Face `datasets` dataset (only if the package is installed; nothing is bundled).

    Each row's `text_field` is one document, tokenized with `tokenizer`. Loading may download,
    which is the user's choice when they pick this source.
    """

    def __init__(self, path: str, name: str | None = None, text_field: str = "text",
                 train_split: str = "train", heldout_split: str = "validation",
                 tokenizer: Tokenizer | None = None, revision: str | None = None):
        try:
            self._datasets = importlib.import_module("datasets")
        except ImportError:
            raise DataError("Hugging Face source needs the `datasets` package, which is not "
                            "installed (pip install datasets)") from None
        self.args = dict(path=path, name=name, revision=revision)
        self.text_field = text_field
        self.splits = {"train": train_split, "heldout": heldout_split}
        self.tokenizer = tokenizer or ByteTokenizer()
        self.tokenizer_name = self.tokenizer.name
        self.vocab_size = self.tokenizer.vocab_size
        self._loaded: dict[str, object] = {}
        self._docs: dict[str, list[np.ndarray]] = {}

    def _dataset(self, split: str):
        check_split(split)
        if split not in self._loaded:
            self._loaded[split] = self._datasets.load_dataset(split=self.splits[split], **self.args)
        return self._loaded[split]

    def documents(self, split: str) -> list[np.ndarray]:
        if split not in self._docs:
            ds = self._dataset(split)
            if self.text_field not in ds.column_names:
                raise DataError(f"Hugging Face dataset {self.args['path']}: no column "
                                f"{self.text_field!r} (columns: {ds.column_names})")
            docs = [self.tokenizer.encode(row[self.text_field]) for row in ds]
            self._docs[split] = [d for d in docs if len(d)]
        return self._docs[split]

    def fingerprint(self) -> str:
        # `datasets` fingerprints each split by content and processing history.
        fps = [getattr(self._dataset(s), "_fingerprint", "") for s in ("train", "heldout")]
        desc = f"hf\n{self.args}\n{self.splits}\n{self.text_field}\n{self.tokenizer_name}\n{fps}"
        return hashlib.sha256(desc.encode()).hexdigest()


SOURCES = {"corpus": CorpusSource, "text": TextFilesSource, "tokens": TokenFileSource,
           "hf": HFDatasetSource}


def make_source(kind: str = "corpus", **kwargs) -> TokenSource:
    """Build a source by kind: 'corpus' (default), 'text', 'tokens' or 'hf'."""
    try:
        cls = SOURCES[kind]
    except KeyError:
        raise DataError(f"unknown data source {kind!r}; known: {sorted(SOURCES)}") from None
    if isinstance(kwargs.get("tokenizer"), str):  # configs name the tokenizer
        kwargs["tokenizer"] = get_tokenizer(kwargs["tokenizer"])
    return cls(**kwargs)
