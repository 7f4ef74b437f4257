"""analysis: runs -> pandas DataFrames -> scaling-law fits (scipy) -> figures (matplotlib).

Never imports JAX: it reads the run store (run_store is plain Python) or the
W&B API, so it runs in light processes. matplotlib is imported only by the figure modules
(`analysis.figures` and the modules it gathers, `analysis.*_figures`).

Entry points (see docs/analysis.md):
- load:    load_runs, load_store, load_wandb, fit_frame, corpus_entropies
- fits:    fit_powerlaw, fit_saturating, fit_chinchilla, fit_isoflop (each returns a Fit)
- tables:  fit_form (any table, per family, with extrapolation and seed-noise checks)
- derived: frontier, exponents, compare_at_compute, compare_families, parabola_bias
- report:  analyse (everything griffin-figures computes), write_tables
- figures: analysis.figures (plot_* functions, FIGURES registry, register_figure, render; the code
           in figure_registry, figure_style, scaling_figures, curve_figures)
"""

from analysis.chinchilla import DEFAULT_GRID, fit_chinchilla, grid_points
from analysis.compare import compare_at_compute, compare_families
from analysis.core import Fit, FitError, bootstrap_counts, percentile_interval
from analysis.fitting import FORMS, Columns, TableError, extrapolation_check, fit_form, prepare_table, seed_noise
from analysis.frontier import exponents, frontier
from analysis.isoflop import IsoFlopFit, fit_isoflop, parabola_bias
from analysis.load import (ExcludedRunsWarning, Runs, corpus_entropies, fit_frame, load_runs, load_store,
                           load_wandb)
from analysis.powerlaw import fit_powerlaw
from analysis.report import Report, analyse, convention_sweep, write_tables
from analysis.saturating import fit_saturating

__all__ = [
    "Columns", "DEFAULT_GRID", "ExcludedRunsWarning", "FORMS", "Fit", "FitError", "IsoFlopFit", "Report", "Runs",
    "TableError", "analyse", "bootstrap_counts", "compare_at_compute", "compare_families", "convention_sweep",
    "corpus_entropies", "exponents", "extrapolation_check", "fit_chinchilla", "fit_form", "fit_frame",
    "fit_isoflop", "fit_powerlaw", "fit_saturating", "frontier", "grid_points", "load_runs", "load_store",
    "load_wandb", "parabola_bias", "percentile_interval", "prepare_table", "seed_noise", "write_tables",
]
