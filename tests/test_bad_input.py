"""Every command answers bad input with one line on stderr naming the key or file, exit code 2,
and leaves the store as it was. The cases (tests/bad_input_cases.py) are also rows of
docs/bad_input.md's table, with what the commands really print: GRIFFIN_WRITE_DOCS=1 rewrites
those rows (other test modules add theirs: tests/doc_rows.py)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

import pytest

from bad_input_cases import CASES
from bad_input_setups import TINY, TRAIN, Case

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"


def _main(command: str):
    from analysis.cli import figures_main, fit_main
    from experiments.bench import main as bench_main
    from experiments.cli import train_main
    from experiments.data_cli import main as data_main
    from experiments.evaluate import main as eval_main
    from experiments.measure import main as measure_main
    from launch.cli import sweep_main
    from launch.demo import main as demo_main

    return {"griffin-train": train_main, "griffin-sweep": sweep_main, "griffin-figures": figures_main,
            "griffin-fit": fit_main, "griffin-bench": bench_main, "griffin-eval": eval_main,
            "griffin-measure": measure_main, "griffin-demo": demo_main, "griffin-data": data_main}[command]


def _snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.rglob("*"))}


def run_case(case: Case, folder: pathlib.Path, capsys) -> tuple[int, str]:
    if case.setup:
        case.setup(folder)
    args = [a.replace("{dir}", str(folder)) for a in case.args]
    if case.command == TRAIN:
        args = [*TINY, f"store.root={folder / 'store'}", *args]
    capsys.readouterr()
    try:
        code = _main(case.command)(args)
    except SystemExit as exit_:  # argparse's errors exit from inside parse_args
        code = exit_.code
    return code, capsys.readouterr().err


MESSAGES: dict[str, str] = {}


@pytest.mark.parametrize("name", list(CASES))
def test_one_line_exit_2_and_nothing_written(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRIFFIN_CACHE_DIR", str(tmp_path / ".cache"))
    case = CASES[name]
    folder = tmp_path / "case"
    folder.mkdir()
    port = _closed_port()
    for key, value in (case.env or {}).items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value.format(port=port, dir=folder))
    if case.setup:
        case.setup(folder)
    before = _snapshot(folder)
    code, err = run_case(dataclasses.replace(case, setup=None), folder, capsys)
    lines = [line.replace(str(folder), "DIR").replace(f"127.0.0.1:{port}", "127.0.0.1:PORT")
             for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and all(case.notes and re.search(case.notes, line) for line in lines[:-1]), err
    assert re.search(case.expect, lines[-1]), lines[-1]
    assert _snapshot(folder) == before, "the command changed files"
    MESSAGES[name] = lines[-1]


def _closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HEADER = ["# Bad input: what each command answers", "",
          "Every row is a case run by the test suite (`tests/test_bad_input.py`, and the modules that record",
          "their rows with `tests/doc_rows.py`): the command exits with code 2, prints the one line shown,",
          "and leaves every file as it was. `GRIFFIN_WRITE_DOCS=1 pytest tests/test_bad_input.py` rewrites",
          "the rows of that module's cases. `DIR` stands for the case's folder; griffin-train cases also",
          f"pass `{' '.join(TINY)} store.root=DIR/store`."]


def _row(name: str, case: Case) -> str:
    args = " ".join(a.replace("{dir}", "DIR") for a in case.args) or "(a store with the damaged file)"
    if case.env:
        unset = [k for k, v in case.env.items() if v is None]
        args += "` with `" + " ".join(f"{k}={v.format(port='PORT', dir='DIR')}" for k, v in case.env.items()
                                     if v is not None) + (f"`, unset: `{' '.join(unset)}" if unset else "")
    message = MESSAGES.get(name, "?").replace("|", "\\|")
    return f"| `{case.command}` | {name} | `{args}` | {message} |"


def _doc(text: str) -> str:
    """docs/bad_input.md with this module's rows as measured: each replaces the row of the same
    command and case, or joins the end of the table; other modules' rows are kept."""
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    mine = {f"| `{case.command}` | {name} |": _row(name, case) for name, case in CASES.items()}
    rows = [next((r for key, r in mine.items() if row.startswith(key + " ")), row) for row in rows]
    rows += [r for r in mine.values() if r not in rows]
    return "\n".join([*HEADER, "", f"{len(rows)} cases.", "", "| command | case | arguments | the one line on stderr |",
                      "|---|---|---|---|", *rows]) + "\n"


def test_the_doc_lists_every_case_with_its_message():
    if len(MESSAGES) < len(CASES):
        pytest.skip("run with the cases above (the whole module) to compare the messages")
    text = DOC.read_text()
    if os.environ.get("GRIFFIN_WRITE_DOCS"):
        DOC.write_text(_doc(text))
        text = DOC.read_text()
    assert text == _doc(text), "docs/bad_input.md is stale: GRIFFIN_WRITE_DOCS=1 pytest tests/test_bad_input.py"
