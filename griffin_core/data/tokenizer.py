"""Tokenizers: a tiny protocol, the default byte-level tokenizer, and tokenizers read from files:
SentencePiece models (`.model`) and Hugging Face `tokenizers` files (`.json`).

A token array is a 1-D NumPy array of non-negative integers below `vocab_size`; uint16 when the
vocabulary fits (it halves the memory of a packed stream), int32 otherwise. A file tokenizer's
name is `<kind>:<sha256 of the file>`, so the file's content enters every fingerprint.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from griffin_core.data.errors import DataError


@runtime_checkable
class Tokenizer(Protocol):
    """What the data package needs from a tokenizer."""

    name: str
    """Stable identifier; it enters the corpus fingerprint, so two tokenizers must differ here."""
    vocab_size: int
    """Number of token ids V; ids are in [0, V)."""

    def encode(self, text: str) -> np.ndarray:
        """str -> tokens [N] (uint16 or int32)."""
        ...

    def decode(self, tokens: np.ndarray) -> str:
        """tokens [N] -> str."""
        ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, no special tokens, lossless on any text."""

    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        """str -> tokens [N_bytes] uint16."""
        return self.encode_bytes(text.encode("utf-8")).astype(np.uint16)

    def encode_bytes(self, data: bytes) -> np.ndarray:
        """Raw file bytes -> tokens [N] uint8, a zero-copy view (valid tokens: all ids < 256)."""
        return np.frombuffer(data, dtype=np.uint8)

    def decode(self, tokens: np.ndarray) -> str:
        """tokens [N] -> str; bytes cut mid-character decode to U+FFFD rather than failing."""
        arr = np.asarray(tokens)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(f"byte tokenizer: token ids must be in [0, 256), got range "
                            f"[{arr.min()}, {arr.max()}]")
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


def encode_file_bytes(tokenizer: Tokenizer, data: bytes) -> np.ndarray:
    """Tokenize the content of a text file. Byte-level tokenizers skip the UTF-8 round trip."""
    encode_bytes = getattr(tokenizer, "encode_bytes", None)
    if encode_bytes is not None:
        return encode_bytes(data)
    return tokenizer.encode(data.decode("utf-8"))


EOT_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")
"""Special tokens taken as the end-of-document separator of a `tokenizers` file, in this order."""


class SentencePieceTokenizer:
    """A SentencePiece model file; its end-of-sentence id (if it has one) separates documents."""

    def __init__(self, path: Path, data: bytes):
        spm = _package("sentencepiece", path)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(data)
        except Exception:  # RuntimeError or OSError, whose C++ text says no more than this
            raise DataError(f"tokenizer file {path}: not a SentencePiece model (its bytes do not parse as one)") from None
        self.name = f"sentencepiece:{hashlib.sha256(data).hexdigest()}"
        self.vocab_size = int(self._sp.vocab_size())
        self.eot_id = int(self._sp.eos_id()) if self._sp.eos_id() >= 0 else None

    def encode(self, text: str) -> np.ndarray:
        """str -> tokens [N] (uint16 or int32)."""
        return np.asarray(self._sp.encode(text), dtype=token_dtype(self.vocab_size))

    def decode(self, tokens: np.ndarray) -> str:
        return self._sp.decode(np.asarray(tokens).astype(int).tolist())


class HFTokenizersTokenizer:
    """A Hugging Face `tokenizers` JSON file (no special tokens added when encoding)."""

    def __init__(self, path: Path, data: bytes):
        tokenizers = _package("tokenizers", path)
        try:
            self._tok = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
        except Exception as err:  # the library raises plain Exception from its Rust parser
            raise DataError(f"tokenizer file {path}: not a tokenizers JSON file ({str(err).strip()[:80]})") from None
        self.name = f"tokenizers:{hashlib.sha256(data).hexdigest()}"
        self.vocab_size = int(self._tok.get_vocab_size(with_added_tokens=True))
        ids = [self._tok.token_to_id(t) for t in EOT_NAMES]
        self.eot_id = next((int(i) for i in ids if i is not None), None)

    def encode(self, text: str) -> np.ndarray:
        """str -> tokens [N] (uint16 or int32)."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=token_dtype(self.vocab_size))

    def decode(self, tokens: np.ndarray) -> str:
        return self._tok.decode(np.asarray(tokens).astype(int).tolist(), skip_special_tokens=False)


def _package(name: str, path: Path):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise DataError(f"tokenizer file {path} needs the `{name}` package, which is not installed") from None


_TOKENIZERS = {"bytes": ByteTokenizer}
_LOADED: dict[tuple, Tokenizer] = {}
"""File tokenizers by (path, size, mtime): planners name one per grid point, loaded once."""


def get_tokenizer(name: str) -> Tokenizer:
    """Tokenizer by name. Only 'bytes' ships; register others in `_TOKENIZERS`."""
    try:
        return _TOKENIZERS[name]()
    except KeyError:
        raise DataError(f"unknown tokenizer {name!r}; known: {sorted(_TOKENIZERS)}, or the path of a "
                        f"SentencePiece .model or tokenizers .json file") from None


def load_tokenizer(spec: str | os.PathLike | None) -> Tokenizer:
    """A tokenizer by name ('bytes', the default for None) or by the path of its file: a
    `.json` file is a Hugging Face `tokenizers` file, anything else a SentencePiece model.
    DataError naming the file if it is missing or not a tokenizer."""
    if spec is None:
        return ByteTokenizer()
    text = os.fspath(spec)
    if text in _TOKENIZERS:
        return _TOKENIZERS[text]()
    path = Path(text).expanduser()
    if not (os.sep in text or "/" in text or path.suffix in (".model", ".json") or path.is_file()):
        return get_tokenizer(text)
    if not path.is_file():
        raise DataError(f"tokenizer file {path} does not exist")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _LOADED:
        kind = HFTokenizersTokenizer if path.suffix == ".json" else SentencePieceTokenizer
        _LOADED[key] = kind(path, path.read_bytes())
    return _LOADED[key]


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest storage dtype for ids in [0, vocab_size): uint16 up to 65536, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)
