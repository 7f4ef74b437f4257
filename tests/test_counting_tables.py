"""The tables of docs/counting.md (griffin_core/counting/tables.py): the doc holds the output
of `python -m griffin_core.counting` verbatim."""

from __future__ import annotations

from counting_helpers import ROOT
from griffin_core.counting import tables


def test_tables_in_docs_are_current():
    doc = (ROOT / "docs" / "counting.md").read_text()
    assert tables.format_param_table() in doc, "regenerate with: python -m griffin_core.counting"
    assert tables.format_flops_table() in doc, "regenerate with: python -m griffin_core.counting"
    for size, seq_len, vocab in tables.BREAKDOWN_EXAMPLES:
        assert tables.format_breakdown_table(size, seq_len, vocab) in doc, \
            "regenerate with: python -m griffin_core.counting"
