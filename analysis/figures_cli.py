"""`griffin-figures` as a module: `python -m analysis.figures_cli RUNS ...` runs the same
command as the console script (analysis/cli.py holds both analysis commands, and
`python -m analysis.cli` is `griffin-fit`)."""

from __future__ import annotations

import sys

from analysis.cli import figures_main

__all__ = ["figures_main"]

if __name__ == "__main__":
    sys.exit(figures_main())
