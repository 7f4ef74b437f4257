"""Token data in object stores (`gs://`, `s3://`, any fsspec URL): the few operations the token
files need, through fsspec. A URL names a prefix holding manifest.json and its shards; rows are
read as byte ranges, so a process reads its own rows and nothing else, as from local files.

Objects in a bucket are replaced whole and carry the upload's time, not the file's, so a shard
is checked against its manifest by size alone there (locally by size and mtime).
"""

from __future__ import annotations

import os

from griffin_core.data.errors import DataError

# fsspec is imported when first needed: the embedded corpus loads with NumPy alone (a test runs
# it so, without site-packages).


def is_remote(path: str | os.PathLike) -> bool:
    """True for a URL of a non-local filesystem, False for a local path."""
    if isinstance(path, os.PathLike):
        return False
    from fsspec.utils import get_protocol

    return get_protocol(os.fspath(path)) not in ("file", "local")


def join(base: str, relative: str) -> str:
    return f"{str(base).rstrip('/')}/{relative}"


def parent(url: str) -> str:
    return str(url).rstrip("/").rpartition("/")[0]


def _fs(url: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)[0]
    except (ImportError, ValueError) as err:
        raise DataError(f"token data {url}: cannot open this URL ({err})") from None


def size(url: str) -> int | None:
    """The object's size in bytes, None if there is no such object."""
    try:
        return int(_fs(url).info(url)["size"])
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DataError(f"token data {url}: {type(err).__name__}: {err}") from None


def read(url: str, start: int | None = None, end: int | None = None) -> bytes:
    """Bytes [start, end) of the object (all of it by default)."""
    try:
        return _fs(url).cat_file(url, start=start, end=end)
    except FileNotFoundError:
        raise DataError(f"token file {url} does not exist") from None
    except OSError as err:
        raise DataError(f"token file {url}: {type(err).__name__}: {err}") from None


__all__ = ["is_remote", "join", "parent", "read", "size"]
