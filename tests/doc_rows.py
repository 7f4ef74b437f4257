"""Rows of docs/bad_input.md recorded by test modules other than tests/test_bad_input.py (which
writes the table): each module records the line its cases print, then checks its rows are in
the table, in the table's format."""

from __future__ import annotations

import pathlib

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bad_input.md"


class Rows:
    """The table rows of one module's cases: `record` from each case, `missing` at the end."""

    def __init__(self, expected: int):
        self.expected = expected
        self.rows: dict[str, str] = {}

    def record(self, command: str, name: str, args: str, line: str, folder: pathlib.Path) -> None:
        """`args`: the arguments as the table shows them (griffin-train's common ones left out),
        `line`: the one stderr line; the case's folder shows as DIR in both."""
        message = line.replace(str(folder), "DIR").replace("|", "\\|")
        self.rows[name] = f"| `{command}` | {name} | `{args.replace(str(folder), 'DIR')}` | {message} |"

    def complete(self) -> bool:
        return len(self.rows) >= self.expected

    def missing(self) -> list[str]:
        text = DOC.read_text()
        return [row for row in self.rows.values() if row not in text]
