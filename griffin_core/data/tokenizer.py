"""Tokenizers: a tiny protocol and the default byte-level tokenizer.

A token array is a 1-D NumPy array of non-negative integers below `vocab_size`; uint16 when the
vocabulary fits (it halves the memory of a packed stream), int32 otherwise.
"""

from __future__ import annotations

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


_TOKENIZERS = {"bytes": ByteTokenizer}


def get_tokenizer(name: str) -> Tokenizer:
    """Tokenizer by name. Only 'bytes' ships; register others in `_TOKENIZERS`."""
    try:
        return _TOKENIZERS[name]()
    except KeyError:
        raise DataError(f"unknown tokenizer {name!r}; known: {sorted(_TOKENIZERS)}") from None


def token_dtype(vocab_size: int) -> np.dtype:
    """Smallest storage dtype for ids in [0, vocab_size): uint16 up to 65536, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)
