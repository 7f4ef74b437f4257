"""The train / held-out split: by file (document), decided by a hash of its name.

A file's split depends only on its relative path, so adding or removing other files never
moves it, and every machine agrees. Splitting by file (not by cutting a stream) keeps held-out
text unseen: no document is half in training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from griffin_core.data.errors import DataError

SPLITS = ("train", "heldout")
DEFAULT_HELDOUT_FRACTION = 0.03
_BUCKETS = 10_000


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def _bucket(key: str) -> int:
    # First 8 bytes of sha256: uniform, stable across Python builds (unlike hash()).
    digest = hashlib.sha256(b"heldout:" + key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def split_rule(heldout_fraction: float) -> str:
    """A text description of the rule; it is part of every fingerprint."""
    return (f"heldout iff int(sha256('heldout:'+path)[:8]) % {_BUCKETS} < "
            f"{_threshold(heldout_fraction)}; if none and >=2 files, the smallest bucket")


def _threshold(heldout_fraction: float) -> int:
    if not 0.0 < heldout_fraction < 1.0:
        raise DataError(f"heldout_fraction={heldout_fraction} must be in (0, 1)")
    return round(heldout_fraction * _BUCKETS)


def heldout_keys(keys: Iterable[str], heldout_fraction: float = DEFAULT_HELDOUT_FRACTION) -> set[str]:
    """The keys (relative paths) that belong to the held-out split.

    A small folder may have no file under the threshold; then the file with the smallest bucket
    is held out (if there are at least two files), so a held-out split exists whenever it can.
    """
    keys = sorted(set(keys))
    threshold = _threshold(heldout_fraction)
    buckets = {k: _bucket(k) for k in keys}
    held = {k for k, b in buckets.items() if b < threshold}
    if not held and len(keys) >= 2:
        held = {min(keys, key=lambda k: (buckets[k], k))}
    return held


def fingerprint_entries(entries: Iterable[tuple[str, int, str]], rule: str, tokenizer_name: str,
                        kind: str = "files") -> str:
    """sha256 over sorted (path, size, sha256) entries, the split rule and the tokenizer name."""
    h = hashlib.sha256()
    h.update(f"{kind}\n{rule}\n{tokenizer_name}\n".encode())
    for path, size, digest in sorted(entries):
        h.update(f"{path}\t{size}\t{digest}\n".encode())
    return h.hexdigest()
