"""Storage backends: a local folder (os) or any fsspec filesystem (buckets, `memory://`).

Local roots: every file is written to a temporary file in the same folder, fsynced and
`os.replace`d over the target, so a reader sees the old or the new file, never a mix.
Exclusive creates (the lease, config.yaml) write a complete temporary file and hard-link it
to the target name (`link` fails if the name exists), falling back to O_CREAT|O_EXCL where
hard links are not supported.

fsspec roots: there is no atomic rename, so every write puts a whole new object (object
stores make a PUT visible all at once). Exclusive creates use `pipe_file(..., mode="create")`,
which backends with preconditions implement as a write-once create (S3 If-None-Match, GCS
ifGenerationMatch=0); others fall back to exists-then-write, which is best effort. An append
rewrites the whole object there, so callers append in batches (run_store.metrics_writer).
Object stores have no folders: `makedirs` does nothing there, and listings and existence
checks drop the client's cached listings first (other processes write the store too).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import tempfile
from typing import Any

from run_store.endpoints import storage_options
from run_store.locations import is_url, protocol, store_root


class LocalBackend:
    """Plain files with atomic replace, hard-link exclusive create and fsync."""

    local = True

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def basename(self, path: str) -> str:
        return os.path.basename(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def mtime(self, path: str) -> float | None:
        try:
            return os.path.getmtime(path)
        except OSError:
            return None

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    @staticmethod
    def _fsync_dir(path: str) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _write_temp(self, path: str, data: bytes, durable: bool = True) -> str:
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    def write_atomic(self, path: str, data: bytes, durable: bool = True) -> None:
        """Replace `path` with `data` all at once. durable=False skips the fsyncs (a reader
        still sees the old or the new file; after a power cut the old one may come back): for
        files rewritten every step, whose loss costs a repeat, not a result."""
        tmp = self._write_temp(path, data, durable)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if durable:
            self._fsync_dir(os.path.dirname(path) or ".")

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` holding `data` if it does not exist; False if it does. Readers never
        see a partial file: the complete temp file is hard-linked to the name."""
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)
            self._fsync_dir(os.path.dirname(path) or ".")
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        # No hard links here (some network or FUSE filesystems): O_EXCL. A reader may see
        # the file empty for an instant; lease readers treat an unreadable lease by its mtime.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    def move_aside(self, path: str, new_path: str) -> bool:
        """Atomically rename; False if `path` no longer exists (someone else moved it)."""
        try:
            os.rename(path, new_path)
            return True
        except FileNotFoundError:
            return False

    def append(self, path: str, data: bytes, fsync: bool = False) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())

    def ends_with_newline_or_empty(self, path: str) -> bool:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return True
                f.seek(-1, os.SEEK_END)
                return f.read(1) == b"\n"
        except FileNotFoundError:
            return True


class FsspecBackend:
    """Any fsspec filesystem. Every write puts a whole new object (see the module doc)."""

    local = False

    def __init__(self, fs: Any):
        self.fs = fs
        # Object stores (s3fs, gcsfs: they name a bucket first) have no folders, only key
        # prefixes: creating one would cost a request (a bucket lookup) and change nothing.
        self.folders = not hasattr(fs, "split_path")

    def join(self, *parts: str) -> str:
        return posixpath.join(*parts)

    def basename(self, path: str) -> str:
        return posixpath.basename(path.rstrip("/"))

    def makedirs(self, path: str) -> None:
        if not self.folders:
            return
        with contextlib.suppress(Exception):
            self.fs.makedirs(path, exist_ok=True)

    def _fresh(self, path: str) -> str:
        """`path`, with the filesystem's cached listings of it dropped: other processes write
        the store too, and s3fs and gcsfs answer listings and existence from a cache."""
        self.fs.invalidate_cache(path)
        return path

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._fresh(path)))

    def isdir(self, path: str) -> bool:
        return bool(self.fs.isdir(self._fresh(path)))

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def listdir(self, path: str) -> list[str]:
        try:
            entries = self.fs.ls(self._fresh(path), detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        here = path.rstrip("/")
        return sorted(self.basename(e) for e in entries if self.basename(e) and e.rstrip("/") != here)

    def mtime(self, path: str) -> float | None:
        try:
            return self.fs.modified(path).timestamp()
        except Exception:  # not every fsspec backend implements modified()
            return None

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def _parent(self, path: str) -> None:
        self.makedirs(posixpath.dirname(path))

    def write_atomic(self, path: str, data: bytes, durable: bool = True) -> None:
        self._parent(path)
        self.fs.pipe_file(path, data)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        self._parent(path)
        try:
            self.fs.pipe_file(path, data, mode="create")
            return True
        except FileExistsError:
            return False
        except TypeError:  # an implementation without the `mode` argument: best effort
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
            return True

    def move_aside(self, path: str, new_path: str) -> bool:
        try:
            self.fs.mv(path, new_path)
            return True
        except FileNotFoundError:
            return False

    def append(self, path: str, data: bytes, fsync: bool = False) -> None:
        try:
            old = self.fs.cat_file(path)
        except FileNotFoundError:
            old = b""
        self.write_atomic(path, old + data)

    def ends_with_newline_or_empty(self, path: str) -> bool:
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:
            return True
        return not data or data.endswith(b"\n")


LOCAL = LocalBackend()


def resolve(location: str | os.PathLike) -> tuple[Any, str]:
    """(backend, backend-native path) for a local path or a URL the store supports (file://
    as a local path; another scheme is a one-line StoreError: run_store.locations.store_root)."""
    location = store_root(location, key=None)
    if not is_url(location):
        return LOCAL, os.fspath(location)
    import fsspec  # imported lazily: local stores never need it
    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(str(location), **storage_options(protocol(location)))
    if isinstance(fs, LocalFileSystem):
        return LOCAL, path
    return FsspecBackend(fs), path
