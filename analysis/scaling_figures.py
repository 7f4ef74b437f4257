"""The scaling-law figures: held-out loss against compute with the fitted laws (Fig 1a),
IsoFLOP profiles with their parabolas, and the compute-optimal frontier.

Pure functions of DataFrames and fits returning matplotlib Figures (no pyplot, the Agg
canvas), registered with `griffin-figures` as 'loss_vs_flops', 'loss_vs_flops_saturating',
'isoflop' and 'frontier'. Data artists carry gids: 'points:<family>', 'fit:<family>',
'band:<family>', 'entropy:unigram', 'parabola:<family>:<budget>', 'minimum:<family>:<budget>',
'frontier:<quantity>:<method>:<family>'.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib import colors
from matplotlib.figure import Figure

from analysis.core import Fit
from analysis.figure_registry import FigureInputs, SkipFigure, fits_of, refusal, register_figure
from analysis.figure_style import cmap, family_color, plain_y
from analysis.isoflop import IsoFlopFit

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
    plain_y(ax)
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
        budget_cmap = cmap("viridis")
        norm = colors.LogNorm(vmin=budgets["C"].min(), vmax=max(budgets["C"].max(), budgets["C"].min() * 1.01))
        g = frame[frame["family"] == fam]
        for row in budgets.itertuples():
            color = budget_cmap(0.85 * norm(row.C))
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

# --------------------------------------------------------------------------------------
# The registered figures


def _loss_vs_flops_figure(inputs: FigureInputs, form: str) -> Figure:
    from analysis.report import compute_law_rows

    return plot_loss_vs_flops(compute_law_rows(inputs.frame), fits_of(inputs, form), entropies=inputs.entropies,
                              convention=inputs.convention)


@register_figure("loss_vs_flops", "Fig 1a: held-out loss against training FLOPs, fitted power laws")
def _loss_vs_flops(inputs: FigureInputs) -> Figure:
    if not len(inputs.frame):
        raise SkipFigure("no runs")
    return _loss_vs_flops_figure(inputs, "powerlaw")


@register_figure("loss_vs_flops_saturating", "held-out loss against FLOPs, saturating law with a shared E")
def _loss_vs_flops_saturating(inputs: FigureInputs) -> Figure:
    if not fits_of(inputs, "saturating"):
        raise SkipFigure("no saturating fit" + refusal(inputs, "saturating"))
    return _loss_vs_flops_figure(inputs, "saturating")


@register_figure("isoflop", "IsoFLOP profiles with their parabolas and minima")
def _isoflop(inputs: FigureInputs) -> Figure:
    fits = fits_of(inputs, "isoflop")
    if not fits:
        raise SkipFigure("no IsoFLOP fit" + refusal(inputs, "isoflop"))
    frame = inputs.frame[inputs.frame["budget_rule"] == "flops"] if "budget_rule" in inputs.frame else inputs.frame
    return plot_isoflop(frame, fits)


@register_figure("frontier", "compute-optimal N_opt, D_opt and tokens per parameter")
def _frontier(inputs: FigureInputs) -> Figure:
    rep = inputs.report
    if rep is None or not len(rep.frontiers):
        raise SkipFigure("no Approach 2 or 3 fit" + refusal(inputs, "chinchilla"))
    minima = []
    for fam, fit in fits_of(inputs, "isoflop").items():
        b = fit.budgets[fit.budgets["used"]]
        minima.append(pd.DataFrame({"family": fam, "C": b["C"], "N_opt": b["N_opt"], "D_opt": b["D_opt"]}))
    return plot_frontier(rep.frontiers, pd.concat(minima, ignore_index=True) if minima else None)
