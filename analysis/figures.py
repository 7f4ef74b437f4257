"""Figures: one figure = one pure function of DataFrames (and fit results) returning a
matplotlib Figure, plus a registry so `griffin-figures` draws every registered figure.

The plotting functions build `matplotlib.figure.Figure` objects directly (no pyplot, no
global state, the Agg canvas), so they are safe to call anywhere and their artists can be
inspected in tests. Artists that carry data have a gid: 'points:<family>', 'fit:<family>',
'band:<family>', 'entropy:unigram', 'parabola:<family>:<budget>', 'minimum:<family>:<budget>',
'frontier:<quantity>:<method>:<family>', 'curve:<run_id>', 'position:<run_id>'.

To add a figure (decode throughput, copy-task accuracy, ...) to the same command, register
it in a module named `analysis/<something>_figures.py` (`griffin-figures` imports those,
see `discover`)::

    @register_figure("copy_accuracy", "accuracy against evaluation length")
    def _copy_accuracy(inputs: FigureInputs) -> Figure:
        if not len(inputs.lengths):
            raise SkipFigure("no runs with accuracy_by_length")
        return plot_something(inputs.lengths)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping

import numpy as np
import pandas as pd
from matplotlib import cm, colors
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.core import Fit
from analysis.isoflop import IsoFlopFit
from run_store import one_line

FAMILY_COLORS = {"mqa": "#4C72B0", "hawk": "#DD8452", "griffin": "#55A868"}
FORMATS = ("png", "pdf")


def family_color(family: str, i: int = 0) -> str:
    return FAMILY_COLORS.get(family, f"C{(i + 3) % 10}")


# --------------------------------------------------------------------------------------
# Registry


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


# --------------------------------------------------------------------------------------
# Pure plotting functions


def plot_loss_vs_flops(frame: pd.DataFrame, fits: Mapping[str, Fit] | None = None, *,
                       entropies: Mapping[str, float] | None = None, convention: str = "exact",
                       level: float | None = None, band: str = "ci", n_grid: int = 100) -> Figure:
    """Fig 1a style: held-out loss against training FLOPs per family (log-log), each family's
    fitted law with its band ('ci': confidence, 'pi': prediction), and the corpus's unigram
    and bigram entropies (nats) as horizontal lines. frame: family, C, L."""
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    fams = list(pd.unique(frame["family"]))
    for i, fam in enumerate(fams):
        g = frame[frame["family"] == fam]
        color = family_color(fam, i)
        ax.scatter(g["C"], g["L"], color=color, s=22, zorder=3, gid=f"points:{fam}", label=None)
        fit = (fits or {}).get(fam)
        label = fam
        if fit is not None:
            xs = np.geomspace(g["C"].min() / 1.5, g["C"].max() * 1.5, n_grid)
            X = {"C": xs}
            if len(fit.families) > 1:
                X["family"] = np.full(xs.size, fam)
            b = fit.bands(X, level)
            ax.plot(xs, b["center"], color=color, lw=1.6, gid=f"fit:{fam}")
            lo, hi = (b["ci_lo"], b["ci_hi"]) if band == "ci" else (b["pi_lo"], b["pi_hi"])
            if np.all(np.isfinite(lo)):
                ax.fill_between(xs, lo, hi, color=color, alpha=0.18, lw=0, gid=f"band:{fam}")
            label = f"{fam}: {_law_label(fit, fam)}"
        ax.plot([], [], color=color, marker="o", label=label)
    for key, style in (("unigram", ":"), ("bigram", "--")):
        v = (entropies or {}).get(f"{key}_nats")
        if v is not None:
            ax.axhline(v, color="0.35", ls=style, lw=1.0, gid=f"entropy:{key}")
            ax.annotate(f"{key} entropy {v:.3f} nats", xy=(0.01, v), xycoords=("axes fraction", "data"),
                        xytext=(0, 2), textcoords="offset points", fontsize=7, color="0.3", va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"training FLOPs ({convention})")
    ax.set_ylabel("held-out loss (nats/token)")
    _plain_y(ax)
    ax.set_title("Held-out loss against training compute")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def _law_label(fit: Fit, fam: str) -> str:
    p = fit.params()
    if fit.form == "powerlaw":
        return f"L = {p['a']:.3g} C^{p['b']:.3f}"
    if fit.form == "saturating":
        sfx = f"[{fam}]" if len(fit.families) > 1 else ""
        return f"L = {p['E']:.3g} + {p['A' + sfx]:.3g} C^-{p['alpha' + sfx]:.3f}"
    return fit.form


def plot_isoflop(frame: pd.DataFrame, fits: Mapping[str, IsoFlopFit]) -> Figure:
    """IsoFLOP profiles: loss against N per budget (one panel per family), the fitted
    parabolas and their minima. frame: family, budget, N, L (the runs of the fits)."""
    fams = [f for f in pd.unique(frame["family"]) if f in fits]
    fig = Figure(figsize=(4.8 * max(1, len(fams)), 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(fams)), squeeze=False)[0]
    for ax, fam in zip(axes, fams):
        fit = fits[fam]
        budgets = fit.budgets
        cmap = _cmap("viridis")
        norm = colors.LogNorm(vmin=budgets["C"].min(), vmax=max(budgets["C"].max(), budgets["C"].min() * 1.01))
        g = frame[frame["family"] == fam]
        for row in budgets.itertuples():
            color = cmap(0.85 * norm(row.C))
            pts = g[g["budget"].astype(str) == str(row.budget)] if "budget" in g and g["budget"].notna().all() \
                else g[np.abs(np.log(g["C"]) - np.log(row.C)) < np.log1p(0.05)]
            ax.scatter(pts["N"], pts["L"], color=color, s=18, gid=f"points:{fam}:{row.budget}")
            if np.isfinite(row.p2):
                xs = np.geomspace(row.N_lo / 1.3, row.N_hi * 1.3, 80)
                ax.plot(xs, fit.parabola(budgets.loc[row.Index], xs), color=color, lw=1.2,
                        gid=f"parabola:{fam}:{row.budget}", label=f"C={row.C:.2g}")
            if row.used:
                ax.plot([row.N_opt], [row.L_opt], marker="*", ms=11, color=color, mec="k", mew=0.5, ls="none",
                        gid=f"minimum:{fam}:{row.budget}")
        ax.set_xscale("log")
        ax.set_xlabel("parameters N")
        ax.set_ylabel("final held-out loss (nats/token)")
        p = fit.params()
        ax.set_title(f"{fam}: N_opt ∝ C^{p['a']:.2f}", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    return fig


def plot_frontier(frontiers: pd.DataFrame, minima: pd.DataFrame | None = None) -> Figure:
    """The compute-optimal frontier: N_opt, D_opt and tokens per parameter against C, per
    method (approach3, approach2) and family, with interval bands; IsoFLOP minima as points.
    frontiers: method, family, C, N_opt(+_lo,_hi), D_opt(...), tokens_per_param(...)."""
    fig = Figure(figsize=(13, 4.0), layout="constrained")
    axes = fig.subplots(1, 3)
    styles = {"approach3": "-", "approach2": "--"}
    for (method, fam), g in frontiers.groupby(["method", "family"], sort=False):
        color = family_color(fam)
        for ax, q in zip(axes, ("N_opt", "D_opt", "tokens_per_param")):
            ax.plot(g["C"], g[q], color=color, ls=styles.get(method, "-"), gid=f"frontier:{q}:{method}:{fam}",
                    label=f"{fam} ({method})")
            if f"{q}_lo" in g and np.all(np.isfinite(g[f"{q}_lo"])):
                ax.fill_between(g["C"], g[f"{q}_lo"], g[f"{q}_hi"], color=color, alpha=0.12, lw=0,
                                gid=f"frontierband:{q}:{method}:{fam}")
    if minima is not None and len(minima):
        for fam, g in minima.groupby("family", sort=False):
            color = family_color(fam)
            axes[0].scatter(g["C"], g["N_opt"], color=color, marker="*", s=60, edgecolor="k", lw=0.4,
                            gid=f"minima:N_opt:{fam}", zorder=3)
            axes[1].scatter(g["C"], g["D_opt"], color=color, marker="*", s=60, edgecolor="k", lw=0.4,
                            gid=f"minima:D_opt:{fam}", zorder=3)
            axes[2].scatter(g["C"], g["D_opt"] / g["N_opt"], color=color, marker="*", s=60, edgecolor="k",
                            lw=0.4, gid=f"minima:tokens_per_param:{fam}", zorder=3)
    for ax, title in zip(axes, ("N_opt(C)", "D_opt(C)", "tokens per parameter")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training FLOPs C")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].legend(fontsize=7)
    return fig


def plot_training_curves(curves: pd.DataFrame, x: str = "tokens", y: str = "loss",
                         size_col: str = "params_total") -> Figure:
    """Training loss against tokens (or FLOPs) per run, one panel per family, coloured by
    model size (log colour scale of `size_col`); held-out evaluations as markers."""
    fams = list(pd.unique(curves["family"]))
    fig = Figure(figsize=(4.6 * max(1, len(fams)), 4.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(fams)), squeeze=False, sharey=True)[0]
    sizes = curves[size_col].astype(float)
    norm = colors.LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.01))
    cmap = _cmap("plasma")
    for ax, fam in zip(axes, fams):
        g = curves[curves["family"] == fam]
        for run_id, r in g.groupby("run_id", sort=False):
            r = r.sort_values("step")
            color = cmap(norm(float(r[size_col].iloc[0])) * 0.85)
            ok = r[y].notna() & r[x].notna()
            ax.plot(r.loc[ok, x], r.loc[ok, y], color=color, lw=0.9, gid=f"curve:{run_id}")
            if "heldout_loss" in r:
                ev = r[r["heldout_loss"].notna()]
                if len(ev):
                    ax.plot(ev[x], ev["heldout_loss"], ls="none", marker="o", ms=2.5, color=color,
                            gid=f"heldout:{run_id}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_title(fam, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        _plain_y(ax)
    axes[0].set_ylabel(f"training {y} (nats/token)")
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=list(axes), label=f"{size_col}")
    return fig


def plot_loss_by_position(positions: pd.DataFrame, size_col: str = "params_total") -> Figure:
    """Held-out loss against token position (long-context evaluation), one panel per family,
    one line per run coloured by size."""
    fams = list(pd.unique(positions["family"]))
    fig = Figure(figsize=(4.6 * max(1, len(fams)), 4.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(fams)), squeeze=False, sharey=True)[0]
    sizes = positions[size_col].astype(float)
    norm = colors.LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.01))
    cmap = _cmap("plasma")
    for ax, fam in zip(axes, fams):
        for run_id, r in positions[positions["family"] == fam].groupby("run_id", sort=False):
            ax.plot(r["position"] + 1, r["loss"], color=cmap(norm(float(r[size_col].iloc[0])) * 0.85), lw=0.9,
                    gid=f"position:{run_id}")
        ax.set_xscale("log")
        ax.set_xlabel("token position")
        ax.set_title(fam, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel("held-out loss (nats/token)")
    return fig


def _plain_y(ax) -> None:
    """Loss axes on a log scale span less than a decade: label ticks as plain numbers."""
    f = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(f)
    ax.yaxis.set_minor_formatter(f)
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _cmap(name: str):
    try:
        from matplotlib import colormaps

        return colormaps[name]
    except ImportError:  # older matplotlib
        return cm.get_cmap(name)


# --------------------------------------------------------------------------------------
# The registered figures


def _fits(inputs: FigureInputs, form: str) -> dict:
    rep = inputs.report
    return {} if rep is None else rep.fits.get(form, {})


@register_figure("loss_vs_flops", "Fig 1a: held-out loss against training FLOPs, fitted power laws")
def _loss_vs_flops(inputs: FigureInputs) -> Figure:
    if not len(inputs.frame):
        raise SkipFigure("no runs")
    from analysis.report import compute_law_rows

    fits = _fits(inputs, "powerlaw")
    return plot_loss_vs_flops(compute_law_rows(inputs.frame), fits, entropies=inputs.entropies,
                              convention=inputs.convention)


@register_figure("loss_vs_flops_saturating", "held-out loss against FLOPs, saturating law with a shared E")
def _loss_vs_flops_saturating(inputs: FigureInputs) -> Figure:
    fits = _fits(inputs, "saturating")
    if not fits:
        raise SkipFigure("no saturating fit" + _why(inputs, "saturating"))
    from analysis.report import compute_law_rows

    return plot_loss_vs_flops(compute_law_rows(inputs.frame), fits, entropies=inputs.entropies,
                              convention=inputs.convention)


@register_figure("isoflop", "IsoFLOP profiles with their parabolas and minima")
def _isoflop(inputs: FigureInputs) -> Figure:
    fits = _fits(inputs, "isoflop")
    if not fits:
        raise SkipFigure("no IsoFLOP fit" + _why(inputs, "isoflop"))
    frame = inputs.frame[inputs.frame["budget_rule"] == "flops"] if "budget_rule" in inputs.frame else inputs.frame
    return plot_isoflop(frame, fits)


@register_figure("frontier", "compute-optimal N_opt, D_opt and tokens per parameter")
def _frontier(inputs: FigureInputs) -> Figure:
    rep = inputs.report
    if rep is None or not len(rep.frontiers):
        raise SkipFigure("no Approach 2 or 3 fit" + _why(inputs, "chinchilla"))
    minima = []
    for fam, fit in _fits(inputs, "isoflop").items():
        b = fit.budgets[fit.budgets["used"]]
        minima.append(pd.DataFrame({"family": fam, "C": b["C"], "N_opt": b["N_opt"], "D_opt": b["D_opt"]}))
    return plot_frontier(rep.frontiers, pd.concat(minima, ignore_index=True) if minima else None)


@register_figure("training_curves", "training loss against tokens, coloured by model size")
def _training_curves(inputs: FigureInputs) -> Figure:
    c = inputs.curves
    if c is None or not len(c) or "loss" not in c or "tokens" not in c:
        raise SkipFigure("no metrics.jsonl curves")
    return plot_training_curves(c)


@register_figure("loss_by_position", "held-out loss against token position")
def _loss_by_position(inputs: FigureInputs) -> Figure:
    p = inputs.positions
    if p is None or not len(p):
        raise SkipFigure("no heldout_loss_by_position in the results")
    return plot_loss_by_position(p)


def _why(inputs: FigureInputs, form: str) -> str:
    rep = inputs.report
    msg = getattr(rep, "refused", {}).get(form) if rep is not None else None
    return f": {msg}" if msg else ""
