"""Figures: one figure = one pure function of DataFrames (and fit results) returning a
matplotlib Figure, plus a registry so `griffin-figures` draws every registered figure.

This module is the figures' public API; the code lives in
- `analysis.figure_registry`: FigureInputs, SkipFigure, register_figure, FIGURES, render,
  discover;
- `analysis.figure_style`: family colours and order, colours by model size;
- `analysis.scaling_figures`: loss against FLOPs with the fitted laws, IsoFLOP profiles, the
  compute-optimal frontier;
- `analysis.curve_figures`: training curves (smoothed, with the held-out evaluations) and
  held-out loss by position.
Importing it registers the built-in figures. The plotting functions build
`matplotlib.figure.Figure` objects directly (no pyplot, no global state, the Agg canvas), so
they are safe to call anywhere and their artists can be inspected in tests.

To add a figure (decode throughput, copy-task accuracy, ...) to the same command, register
it in a module named `analysis/<something>_figures.py` (`griffin-figures` imports those,
see `discover`)::

    from analysis.figures import FigureInputs, SkipFigure, register_figure

    @register_figure("copy_accuracy", "accuracy against evaluation length")
    def _copy_accuracy(inputs: FigureInputs) -> Figure:
        if not len(inputs.lengths):
            raise SkipFigure("no runs with accuracy_by_length")
        return plot_something(inputs.lengths)
"""

from __future__ import annotations

from analysis.curve_figures import plot_loss_by_position, plot_training_curves, smooth, smoothing_window
from analysis.figure_registry import (FIGURES, FORMATS, FigureInputs, FigureSpec, SkipFigure, discover,
                                      register_figure, render)
from analysis.figure_style import FAMILY_COLORS, family_color, size_palette
from analysis.scaling_figures import plot_frontier, plot_isoflop, plot_loss_vs_flops

__all__ = [
    "FAMILY_COLORS", "FIGURES", "FORMATS", "FigureInputs", "FigureSpec", "SkipFigure", "discover", "family_color",
    "plot_frontier", "plot_isoflop", "plot_loss_by_position", "plot_loss_vs_flops", "plot_training_curves",
    "register_figure", "render", "size_palette", "smooth", "smoothing_window",
]
