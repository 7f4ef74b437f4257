"""What every command of the project shares, whichever package it lives in: argparse whose
errors are one line, numeric argument types that refuse out-of-range values at parse time,
output-path types that refuse a file or folder the command could not write (before the work),
and the guard that turns a user error into one line on stderr and exit code 2.

It sits in the bottom package because `experiments/`, `launch/` and `analysis/` all have
commands and none may import another for this.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import Callable, NoReturn, Sequence

from run_store.errors import one_line

EXIT_USAGE = 2
"""Exit code of every user error (a bad argument, config, data or store file)."""
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line, `prog: error: message`, exit code 2
    (argparse's own prints the whole usage first). Subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _number(kind: type, minimum: float, inclusive: bool, what: str) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum or (value == minimum and not inclusive) or value != value:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what  # argparse names the type in its message
    return parse


positive_int = _number(int, 0, False, "a positive integer")
non_negative_int = _number(int, 0, True, "a non-negative integer")
positive_float = _number(float, 0.0, False, "a positive number")


def positive_int_list(text: str) -> list[int]:
    """Comma-separated positive integers, e.g. '1,2,4' (unrolls, chunk sizes)."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a level, a held-out fraction)."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _cannot_create_in(folder: str) -> str | None:
    """None if a file can be created in the existing `folder`, else why not. A probe file is
    made and removed at once: permissions alone do not tell (root may write anywhere by its
    mode bits, yet not create a file in /proc or on a read-only mount)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".griffin-write-check-", dir=folder)
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    os.close(fd)
    os.unlink(probe)
    return None


def output_problem(path: str | os.PathLike, folder: bool = False) -> str | None:
    """Why a command could not write `path`, an output file (or, `folder=True`, an output
    folder it creates if needed), or None if it can: checked before the work, and nothing is
    left behind. A file must not be a folder or a special file and its folder must let one
    create files; missing parent folders are fine when the nearest existing one allows that
    (the writers create them)."""
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isdir(p):
        if not folder:
            return "is a folder, not a file"
        why = _cannot_create_in(p)
        return why and f"cannot write in this folder ({why})"
    if os.path.lexists(p):
        if folder:
            return "is a file, not a folder"
        if not os.path.isfile(p):
            return "is not a regular file"
        try:
            os.close(os.open(p, os.O_WRONLY))  # no truncation: the file stays as it is
        except OSError as err:
            return f"cannot write this file ({type(err).__name__}: {err.strerror or err})"
        why = _cannot_create_in(os.path.dirname(p))
        return why and f"cannot write in its folder ({why})"
    ancestor = os.path.dirname(p)
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return f"{ancestor} is a file, not a folder"
    why = _cannot_create_in(ancestor)
    return why and f"cannot create it in {ancestor} ({why})"


def output_file(text: str) -> str:
    """An argparse type for an option naming a file the command writes (--out, --json,
    --markdown, --plan-json): refused at parse time, before any work (see output_problem)."""
    why = output_problem(text)
    if why:
        raise argparse.ArgumentTypeError(f"{text}: {why}")
    return text


def output_folder(text: str) -> str:
    """An argparse type for an option naming a folder the command writes into (created if
    missing): refused at parse time, before any work (see output_problem)."""
    why = output_problem(text, folder=True)
    if why:
        raise argparse.ArgumentTypeError(f"{text}: {why}")
    return text


def command(main: Callable[[Sequence[str]], int], user_errors: tuple[type[BaseException], ...],
            prog: str | None = None) -> Callable[[Sequence[str] | None], int]:
    """`main(argv)` as a console-script entry point: the user errors it raises become one line
    on stderr and exit code 2, Ctrl-C exit code 130. Anything else is a bug and keeps its
    traceback."""
    def wrapped(argv: Sequence[str] | None = None) -> int:
        try:
            return main(list(sys.argv[1:] if argv is None else argv))
        except user_errors as err:
            print(f"{prog + ': ' if prog else ''}error: {one_line(err)}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
    wrapped.__doc__ = main.__doc__
    return wrapped
