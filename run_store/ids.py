"""Run ids: a run is named by the hash of what determines its result.

`<family>-<size>-<budget>-<hash>`: the hash covers the caller's *semantic* config (model,
data, optimiser, budget, seed), the corpus fingerprint and `NUMERICS_VERSION`; never paths,
logging or launcher settings. So a grid point shared by two sweeps is trained once and a
rerun finds its folder, checkpoints and W&B run again.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import hashlib
import json
import math
import re
from pathlib import PurePath
from typing import Any, Mapping

NUMERICS_VERSION = "2"
"""Bump whenever a code change alters training results (the model's numerics, the data
pipeline's token stream, the optimiser): runs hashed under the old version are then not
mistaken for runs of the new code. tests/test_numerics_golden.py fails when results move
without a bump."""

HASH_LENGTH = 12
"""Hex digits of sha256 kept in a run id (48 bits: collisions are negligible per study)."""

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")
"""Family, size and budget labels, and run ids: no '/' or spaces."""
SWEEP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=,-]*$")


def _canonical(value: Any, where: str) -> Any:
    """Plain JSON value with one spelling per meaning (see `canonical_json`)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return _canonical(value.value, where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (float, decimal.Decimal)):
        x = float(value)
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        if x == int(x) and abs(x) < 2**53:
            return int(x)  # 1.0 and 1 mean the same setting; -0.0 becomes 0
        return x  # json writes repr(x): the shortest round trip, so 1e-3 -> 0.001
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, enum.Enum):
                key = key.value
            if not isinstance(key, str):
                raise TypeError(f"{where}: mapping key {key!r} is not a string")
            out[key] = _canonical(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [_canonical(item, f"{where}{{}}") for item in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, where)
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return _canonical(value.item(), where)  # a NumPy/JAX scalar, without importing them
    raise TypeError(f"{where}: cannot canonicalise a {type(value).__name__} ({value!r})")


def canonical_json(value: Any) -> str:
    """One JSON spelling per meaning: sorted keys, no spaces, tuples as lists, integral floats
    as ints (1.0 == 1), other floats by their shortest repr (1e-3 == 0.001), NaN/inf as
    strings, enums by value, dataclasses as dicts. Raises TypeError for anything else."""
    return json.dumps(_canonical(value, "config"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)


def config_hash(payload: Any, length: int = HASH_LENGTH) -> str:
    """First `length` hex digits of sha256 over `canonical_json(payload)`."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()[:length]


def check_label(kind: str, value: str) -> str:
    if not isinstance(value, str) or not LABEL_RE.match(value):
        raise ValueError(f"{kind} label {value!r} must match {LABEL_RE.pattern} (no '/' or spaces)")
    return value


def compute_run_id(family: str, size: str, budget: str, semantic: Mapping[str, Any],
                   corpus_fingerprint: str, numerics_version: str = NUMERICS_VERSION) -> str:
    """`<family>-<size>-<budget>-<hash>`.

    `semantic` is what determines the result (model, data, optimiser, budget, seed); the
    caller leaves out paths, logging and launcher settings. `budget` is a short label
    ('20tpp', '1e15F'). The labels are hashed too, with the corpus fingerprint and the
    numerics version.
    """
    check_label("family", family)
    check_label("size", size)
    check_label("budget", budget)
    if not isinstance(semantic, Mapping):
        raise TypeError(f"semantic config must be a mapping, got {type(semantic).__name__}")
    digest = config_hash({
        "family": family, "size": size, "budget": budget, "semantic": semantic,
        "corpus_fingerprint": str(corpus_fingerprint), "numerics_version": str(numerics_version),
    })
    return f"{family}-{size}-{budget}-{digest}"



def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not LABEL_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} must match {LABEL_RE.pattern}")
    return run_id


def check_sweep_name(name: str) -> str:
    if not isinstance(name, str) or not SWEEP_NAME_RE.match(name):
        raise ValueError(f"sweep name {name!r} must match {SWEEP_NAME_RE.pattern}")
    return name
