"""Small JSON (and YAML-safe) files: plain values, atomic writes, one-line errors on read.

Nothing is ever loaded with pickle; what is written is plain JSON a person can read.
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import json
import os
from pathlib import PurePath
from typing import Any, Callable, Mapping

from run_store.backends import resolve
from run_store.errors import StoreError, one_line


def plain(value: Any, where: str = "config") -> Any:
    """A YAML/JSON-safe copy: dicts, lists, str, int, float, bool, None (order kept)."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value, where)
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, where)
    if isinstance(value, (PurePath, decimal.Decimal)):
        return str(value) if isinstance(value, PurePath) else float(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()
    raise TypeError(f"{where}: cannot store a {type(value).__name__} ({value!r})")


def dumps(obj: Any) -> bytes:
    """Indented, key-sorted JSON with a final newline (NaN allowed: a diverged loss is one)."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode("utf-8")


def read_mapping_at(backend: Any, path: str, what: str, loads: Callable[[str], Any] = json.loads,
                    errors: tuple[type[Exception], ...] = (json.JSONDecodeError,)) -> dict | None:
    """The mapping `loads` parses from the file at `path` (JSON by default; config.yaml passes
    YAML's), None if the file does not exist, StoreError naming the file if it is corrupt."""
    try:
        raw = backend.read(path)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise StoreError(f"{path}: corrupt {what} (a folder, not a file)") from None
    try:
        value = loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, *errors) as e:
        raise StoreError(f"{path}: corrupt {what} ({one_line(e)})") from None
    if not isinstance(value, dict):
        raise StoreError(f"{path}: corrupt {what} (a mapping was expected, got {type(value).__name__})")
    return value


def read_json_at(backend: Any, path: str, what: str) -> dict | None:
    """The JSON object in `path`, None if the file does not exist, StoreError if corrupt."""
    return read_mapping_at(backend, path, what)


def read_json(location: str | os.PathLike, what: str = "JSON file") -> dict | None:
    """The JSON object at a local path or fsspec URL; None if absent; StoreError (one line,
    naming the file) if corrupt. For small sidecar files next to the store's own."""
    backend, path = resolve(location)
    return read_json_at(backend, path, what)


def write_json(location: str | os.PathLike, obj: Mapping[str, Any], durable: bool = True) -> None:
    """Write a JSON object atomically to a local path or fsspec URL (durable=False: without
    fsync, for sidecars rewritten every step; see LocalBackend.write_atomic)."""
    backend, path = resolve(location)
    backend.write_atomic(path, dumps(plain(dict(obj), "json")), durable=durable)
