"""Token sources: where documents come from, behind one interface.

A source gives, for a split ('train' or 'heldout'), its documents as 1-D token arrays in a
deterministic order, plus a fingerprint (content hash recorded with every run) and token counts.
Packing documents into training rows is not a source's job (see packing.py).

Sources: the embedded corpus (default), the user's text files or folders, pre-tokenized
token files (token_files.py: nanoGPT `.bin` or shards with a manifest), and a Hugging Face
dataset (hf_source.py; only if `datasets` is installed). Text sources take any tokenizer (tokenizer.py).
"""

from __future__ import annotations

import abc
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from griffin_core.data import corpus as corpus_mod
from griffin_core.data.errors import DataError
from griffin_core.data.hf_source import HFDatasetSource
from griffin_core.data.source_base import TokenSource
from griffin_core.data.splits import (DEFAULT_HELDOUT_FRACTION, check_split, fingerprint_entries,
                                      heldout_keys, split_rule)
from griffin_core.data.token_files import TokenFileSource
from griffin_core.data.tokenizer import ByteTokenizer, Tokenizer, encode_file_bytes, load_tokenizer


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


def list_text_files(paths: Sequence[Path]) -> dict[str, Path]:
    """Key (path relative to the folder given, prefixed by its name) -> file, for files and
    folders (recursive; hidden names skipped). Lists only: nothing is read."""
    found: dict[str, Path] = {}
    for root in paths:
        if not root.exists():
            raise DataError(f"text source: {root} does not exist")
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
    return found


def check_text(path: Path, data: bytes) -> None:
    """DataError naming `path` unless `data` is UTF-8 text."""
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
        found = list_text_files(self.paths)
        out = []
        for key in sorted(found):
            data = found[key].read_bytes()
            check_text(found[key], data)
            out.append((key, data))
        if not any(data for _, data in out):
            raise DataError(f"text source: {', '.join(map(str, self.paths))} contain no text (all files empty)")
        return out

    def describe(self) -> str:
        return f"text source {', '.join(map(str, self.paths))}"


SOURCES = {"corpus": CorpusSource, "text": TextFilesSource, "tokens": TokenFileSource,
           "hf": HFDatasetSource}


def make_source(kind: str = "corpus", **kwargs) -> TokenSource:
    """Build a source by kind: 'corpus' (default), 'text', 'tokens' or 'hf'."""
    try:
        cls = SOURCES[kind]
    except KeyError:
        raise DataError(f"unknown data source {kind!r}; known: {sorted(SOURCES)}") from None
    if isinstance(kwargs.get("tokenizer"), str):  # configs name the tokenizer, or give its file
        kwargs["tokenizer"] = load_tokenizer(kwargs["tokenizer"])
    return cls(**kwargs)
