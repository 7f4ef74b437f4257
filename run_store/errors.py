"""The store's errors, and the one way every command turns an exception into one line."""

from __future__ import annotations


class StoreError(ValueError):
    """A store file is corrupt or invalid. The message is one line naming the file."""


class CorruptStoreFile(StoreError):
    """A stored file a run needs reads wrong the same way on every try (a corrupt checkpoint):
    the scheduler does not retry the run (launch.errors)."""


class LeaseLostError(RuntimeError):
    """The lease this process held is no longer ours (taken over or released)."""


def one_line(err: BaseException | str, *, with_type: bool = False, limit: int | None = None) -> str:
    """`err`'s message on one line (whitespace runs collapsed), its type name if it has no
    message; with_type prefixes 'TypeName: '; limit cuts the text to that many characters.
    Used wherever an error reaches a user, a status file or a log line."""
    if isinstance(err, BaseException):
        text = " ".join(str(err).split()) or type(err).__name__
        if with_type and text != type(err).__name__:
            text = f"{type(err).__name__}: {text}"
    else:
        text = " ".join(str(err).split())
    return text[:limit] if limit is not None else text
