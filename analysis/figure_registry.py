"""The figure registry: what a figure builder receives (`FigureInputs`), how it says its data
are absent (`SkipFigure`), `register_figure`, and `render`, which draws every registered
figure to files for `griffin-figures`.

Figures live in modules named `analysis/<topic>_figures.py` (`discover` imports them all);
the built-in ones are `scaling_figures` and `curve_figures`. `analysis.figures` gathers the
whole public API.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping

import pandas as pd
from matplotlib.figure import Figure

from run_store import one_line

FORMATS = ("png", "pdf")


class SkipFigure(Exception):
    """Raised by a figure builder whose data is absent; the message says what is missing."""


@dataclasses.dataclass
class FigureInputs:
    """What figure builders may draw from (any of it may be empty)."""

    frame: pd.DataFrame
    """The runs as a fit table (family, size, budget, seed, N, D, C, L; see load.fit_frame)."""
    curves: pd.DataFrame
    """Per-step metrics, long (load.Runs.curves)."""
    positions: pd.DataFrame
    """Held-out loss by position, long (load.Runs.positions)."""
    lengths: pd.DataFrame
    """Accuracy by evaluation length, long (load.Runs.lengths)."""
    report: object | None = None
    """analysis.report.Report: fits, frontiers, comparisons."""
    convention: str = "exact"
    entropies: Mapping[str, float] | None = None
    """Corpus reference entropies (unigram_nats, bigram_nats, ...), or None."""
    runs: pd.DataFrame | None = None
    """The flattened result rows (load.Runs.runs), for figures that need other fields."""
    root: str | None = None
    """The run store's root (None for W&B), for figures that read files kept beside the runs."""
    sweep: str | None = None
    """The sweep's name, when the runs came from a sweep."""


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    name: str
    build: Callable[[FigureInputs], Figure]
    description: str


FIGURES: dict[str, FigureSpec] = {}


def discover() -> list[str]:
    """Import every `analysis.*_figures` module (each registers its figures when imported)
    so `griffin-figures` draws them too. Returns notes on modules that failed to import."""
    import importlib
    import pkgutil

    import analysis

    notes = []
    for mod in pkgutil.iter_modules(analysis.__path__):
        if mod.name.endswith("_figures"):
            try:
                importlib.import_module(f"analysis.{mod.name}")
            except Exception as e:
                notes.append(f"analysis.{mod.name}: not loaded ({one_line(e, with_type=True)})")
    return notes


def register_figure(name: str, description: str = "") -> Callable:
    """Decorator: register `build(inputs) -> Figure` under `name` (the output file stem)."""

    def deco(fn: Callable[[FigureInputs], Figure]) -> Callable[[FigureInputs], Figure]:
        FIGURES[name] = FigureSpec(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def render(inputs: FigureInputs, out_dir: str, names=None, formats=FORMATS,
           strict: bool = False) -> tuple[list[str], list[str]]:
    """Build every registered figure (or `names`) and save it as each format. Returns
    (files written, notes): a note per figure skipped for want of data ('<name>: skipped
    (...)') and, unless `strict` (then the error propagates), per figure whose builder
    failed ('<name>: FAILED (...)'), so one broken figure does not stop the others."""
    os.makedirs(out_dir, exist_ok=True)
    written, skipped = [], []
    for name in names or list(FIGURES):
        spec = FIGURES[name]
        try:
            fig = spec.build(inputs)
        except SkipFigure as e:
            skipped.append(f"{name}: skipped ({e})")
            continue
        except Exception as e:
            if strict:
                raise
            skipped.append(f"{name}: FAILED ({one_line(e, with_type=True)})")
            continue
        for fmt in formats:
            path = os.path.join(out_dir, f"{name}.{fmt}")
            fig.savefig(path, dpi=150 if fmt == "png" else None)
            written.append(path)
    return written, skipped


def fits_of(inputs: FigureInputs, form: str) -> dict:
    """The report's fits of `form` by family ({} without a report)."""
    rep = inputs.report
    return {} if rep is None else rep.fits.get(form, {})


def refusal(inputs: FigureInputs, form: str) -> str:
    """': <why the report refused to fit form>' or ''."""
    rep = inputs.report
    msg = getattr(rep, "refused", {}).get(form) if rep is not None else None
    return f": {msg}" if msg else ""
