"""run_store.cli and run_store.errors: what every command shares."""

from __future__ import annotations

import argparse

import pytest

from run_store.cli import ArgumentParser, command, fraction, non_negative_int, positive_float, positive_int
from run_store.errors import StoreError, one_line


@pytest.mark.parametrize("kind, good, bad", [
    (positive_int, ["1", "12"], ["0", "-3", "1.5", "x", ""]),
    (non_negative_int, ["0", "7"], ["-1", "nan", "2e3x"]),
    (positive_float, ["0.5", "3"], ["0", "-1e-9", "nan", "inf-"]),
    (fraction, ["0.5", "0.999"], ["0", "1", "1.5", "-0.1"]),
])
def test_argument_types_refuse_out_of_range_values(kind, good, bad):
    for text in good:
        kind(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


def test_parser_errors_are_one_line_with_exit_2(capsys):
    parser = ArgumentParser(prog="griffin-x")
    parser.add_argument("--n", type=positive_int, default=1)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--n", "0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith("griffin-x: error: argument --n: '0' is not a positive integer")


def test_command_turns_user_errors_into_one_line_and_keeps_bugs(capsys):
    def main(argv):
        if argv == ["bad"]:
            raise StoreError("runs/x/status.json: corrupt status file\n(details)")
        if argv == ["bug"]:
            raise KeyError("a bug")
        return 0

    wrapped = command(main, (StoreError,), prog="griffin-x")
    assert wrapped(["ok"]) == 0
    assert wrapped(["bad"]) == 2
    assert capsys.readouterr().err == "griffin-x: error: runs/x/status.json: corrupt status file (details)\n"
    with pytest.raises(KeyError):  # not a user error: the traceback is the report
        wrapped(["bug"])


def test_one_line():
    assert one_line(ValueError("a\n  b\tc")) == "a b c"
    assert one_line(ValueError()) == "ValueError"
    assert one_line(KeyError("k"), with_type=True) == "KeyError: 'k'"
    assert one_line("x" * 10, limit=4) == "xxxx"
