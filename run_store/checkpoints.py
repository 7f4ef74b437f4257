"""Where Orbax writes a run's checkpoints: the store's `ckpt/` folder itself, or a local folder
staged to it.

Orbax writes a local folder and a `gs://` URL itself (its arrays through TensorStore's `gcs`
driver, its small files through etils.epath and gcsfs). Any other URL, `s3://` among them, it
cannot write: TensorStore would take the URL for a relative local path. For those the
checkpoints are staged: Orbax writes a fresh local folder (under the system's temporary folder,
`TMPDIR`), and every step folder it finishes is uploaded to `<run>/ckpt/<step>/` file by file,
then marked complete with an empty `<step>/.complete` object written last. A resume or
`griffin-eval` downloads the newest complete step first; a step whose upload was cut off has
no mark and is never read (it is replaced or removed by the next upload). After an upload, the
bucket keeps the steps Orbax keeps locally (`max_to_keep`), nothing older.

Staged checkpoints need the local disk to hold the steps Orbax keeps, and belong to one
process: a run of several `jax.distributed` processes needs `gs://` or a shared folder.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from typing import Any

from run_store.backends import resolve
from run_store.locations import is_url, protocol

ORBAX_WRITES = ("gs",)
"""URL schemes Orbax writes directly (besides local paths)."""
COMPLETE = ".complete"
"""The object that marks a staged step's upload as complete (written last)."""


def orbax_writes(location: str | os.PathLike) -> bool:
    """Whether Orbax can write checkpoints at `location` itself (a local path or gs://)."""
    return not is_url(location) or protocol(location) in ORBAX_WRITES


class CheckpointFolder:
    """The folder to give Orbax for a run's checkpoints at `location` (the store's
    `ckpt_dir`), staging it locally when Orbax cannot write there (see the module doc). Use as
    a context manager: the staging folder is removed on exit."""

    def __init__(self, location: str | os.PathLike):
        self.location = os.fspath(location)
        self.staged = not orbax_writes(self.location)
        self.pushed: set[int] = set()
        if self.staged:
            self._backend, self._remote = resolve(self.location)
            self.path = tempfile.mkdtemp(prefix="griffin-ckpt-")
        else:
            self.path = self.location if is_url(self.location) else os.path.abspath(self.location)

    def __repr__(self) -> str:
        return f"CheckpointFolder({self.location!r}{', staged in ' + self.path if self.staged else ''})"

    def __enter__(self) -> "CheckpointFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.staged:
            shutil.rmtree(self.path, ignore_errors=True)

    # -- the bucket side
    def _remote_steps(self) -> list[int]:
        return sorted(int(n) for n in self._backend.listdir(self._remote) if n.isdigit())

    def _complete(self, step: int) -> bool:
        return self._backend.exists(self._backend.join(self._remote, str(step), COMPLETE))

    def pull(self) -> int | None:
        """Download the newest complete step into the staging folder; its step (None if there
        is none, or if Orbax writes the location itself and nothing needs fetching)."""
        if not self.staged:
            return None
        fs = self._backend.fs
        for step in reversed(self._remote_steps()):
            if not self._complete(step):
                continue
            remote = self._backend.join(self._remote, str(step))
            for key in fs.find(remote):
                rel = posixpath.relpath(key, remote)
                if rel == COMPLETE:
                    continue
                target = os.path.join(self.path, str(step), *rel.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                fs.get_file(key, target)
            self.pushed.add(step)
            return step
        return None

    def push(self) -> list[int]:
        """Upload the step folders Orbax has finished and not uploaded yet, mark each complete,
        then remove the bucket's steps Orbax no longer keeps. The steps uploaded (none when
        Orbax writes the location itself). Cheap when there is nothing new: one local listing."""
        if not self.staged:
            return []
        local = sorted(int(n) for n in os.listdir(self.path) if n.isdigit())  # finished: renamed into place
        new = [s for s in local if s not in self.pushed]
        if not new:
            return []
        fs = self._backend.fs
        for step in new:
            folder = os.path.join(self.path, str(step))
            remote = self._backend.join(self._remote, str(step))
            for here, _, files in os.walk(folder):
                rel = os.path.relpath(here, folder)
                for name in files:
                    parts = [] if rel == "." else rel.split(os.sep)
                    fs.put_file(os.path.join(here, name), posixpath.join(remote, *parts, name))
            self._backend.write_atomic(self._backend.join(remote, COMPLETE), b"")
            self.pushed.add(step)
        for step in self._remote_steps():
            if step not in local:
                fs.rm(self._backend.join(self._remote, str(step)), recursive=True)
                self.pushed.discard(step)
        return new
