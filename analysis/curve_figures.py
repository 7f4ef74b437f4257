"""Figures of runs over training and over token position: training curves (the per-step
training loss smoothed, with the held-out evaluations on them) and held-out loss by position.

Pure functions of DataFrames returning matplotlib Figures, registered with `griffin-figures`
as 'training_curves' and 'loss_by_position'. One panel per family; a run's colour is its
model size (a sequential colormap, small = dark, with a legend of sizes), the same in every
panel. Data artists carry gids: 'curve:<run_id>' (the smoothed training loss),
'heldout:<run_id>' (the held-out evaluations), 'position:<run_id>'.

Per-step losses of small batches are noisy (batch 4: +-15%), and raw curves of several sizes
hide one another. `smooth` averages each run's training loss over a centred window of
`smoothing_window(steps)` steps (about 1/25 of a run's steps, odd), narrower early: at step s
the window never reaches past s +- s/10, so the fast early fall is not smeared. The window
is stated in the legend.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figure_registry import FigureInputs, SkipFigure, register_figure
from analysis.figure_style import ordered_families, plain_y, size_palette

STEPS_PER_WINDOW = 25
"""The smoothing window is the median run's number of steps / this (rounded up to odd)."""
EARLY_FRACTION = 0.2
"""At step s the window spans at most s +- EARLY_FRACTION s."""


def smoothing_window(steps: Sequence[float], per: int = STEPS_PER_WINDOW) -> int:
    """An odd window length (steps) from the runs' numbers of steps: the median / `per`."""
    n = float(np.median(np.asarray(steps, float))) if len(steps) else 1.0
    w = max(1, int(round(n / per)))
    return w if w % 2 else w + 1


def smooth(steps, values, window: int, early: float = EARLY_FRACTION) -> np.ndarray:
    """Centred moving average of `values` logged at ascending `steps`: at step s, the mean of
    the values at steps within s +- h, h = min((window - 1) // 2, floor(early s)). The window
    is counted in steps, not rows (a sparsely logged curve is averaged over fewer rows), is
    narrower early (where the loss falls fastest), and is cut at the last step."""
    s = np.asarray(steps, float)
    v = np.asarray(values, float)
    h = np.minimum((window - 1) // 2, np.floor(early * s))
    lo = np.searchsorted(s, s - h, side="left")
    hi = np.searchsorted(s, s + h, side="right")
    total = np.concatenate([[0.0], np.cumsum(v)])
    return (total[hi] - total[lo]) / (hi - lo)


def _panels(frame: pd.DataFrame, width: float = 4.4) -> tuple[Figure, list[str], list]:
    fams = ordered_families(frame["family"])
    fig = Figure(figsize=(width * max(1, len(fams)) + 2.2, 4.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(fams)), squeeze=False, sharex=True, sharey=True)[0]
    for ax, fam in zip(axes, fams):
        ax.set_title(fam, fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
    return fig, fams, list(axes)


def plot_training_curves(curves: pd.DataFrame, x: str = "tokens", y: str = "loss", *, window: int | None = None,
                         heldout: str = "heldout_loss", size_col: str = "size",
                         params_col: str = "params_total") -> Figure:
    """Training loss against tokens (or `x`), one panel per family, one line per run: the
    per-step `y` smoothed over `window` steps (default `smoothing_window` of the runs' step
    counts), coloured by model size; the held-out evaluations (`heldout` on the evaluation
    steps) as dots of the same colour. The legend names the sizes and states the window.
    curves: run_id, family, step, x, y, heldout, size and/or params_total."""
    curves = curves[curves[x].notna()]
    # One row per step (a step logged in several rows: the last value of each column).
    runs = {rid: r.groupby("step", as_index=False, sort=True).last() for rid, r in curves.groupby("run_id", sort=False)}
    if window is None:
        window = smoothing_window([r["step"].max() for r in runs.values()])
    palette = size_palette(curves, size_col, params_col)
    fig, fams, axes = _panels(curves)
    for ax, fam in zip(axes, fams):
        for rid, r in runs.items():
            if str(r["family"].iloc[0]) != fam:
                continue
            color = palette.color(r)
            t = r[r[y].notna()]
            ax.plot(t[x], smooth(t["step"], t[y], window), color=color, lw=1.4, gid=f"curve:{rid}")
            if heldout in r:
                ev = r[r[heldout].notna()]
                ax.plot(ev[x], ev[heldout], ls="none", marker="o", ms=4.5, mfc=color, mec="k", mew=0.6, zorder=3,
                        gid=f"heldout:{rid}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_y(ax)
        ax.set_xlabel("training tokens" if x == "tokens" else x)
    axes[0].set_ylabel("loss (nats/token)")
    smoothing = f"centred mean over {window} steps" if window > 1 else "per step, not smoothed"
    keys = [Line2D([], [], color="0.45", lw=1.4, label=f"training loss,\n{smoothing}"),
            Line2D([], [], color="0.45", ls="none", marker="o", ms=4.5, mec="k", mew=0.6,
                   label="held-out loss at\nevaluation steps")]
    axes[0].legend(handles=keys, loc="lower left", fontsize=7.5)  # curves fall: that corner is empty
    _size_legend(fig, palette)
    fig.suptitle(f"Training loss ({smoothing}) and held-out evaluations (dots), coloured by model size",
                 fontsize=10)
    return fig


def plot_loss_by_position(positions: pd.DataFrame, size_col: str = "size", params_col: str = "params_total") -> Figure:
    """Held-out loss against token position (long-context evaluation), one panel per family,
    one line per run coloured by model size (legend of sizes)."""
    palette = size_palette(positions, size_col, params_col)
    fig, fams, axes = _panels(positions)
    for ax, fam in zip(axes, fams):
        for run_id, r in positions[positions["family"].astype(str) == fam].groupby("run_id", sort=False):
            ax.plot(r["position"] + 1, r["loss"], color=palette.color(r), lw=1.1, gid=f"position:{run_id}")
        ax.set_xscale("log")
        ax.set_xlabel("token position")
    axes[0].set_ylabel("held-out loss (nats/token)")
    _size_legend(fig, palette)
    return fig


def _size_legend(fig: Figure, palette) -> None:
    fig.legend(handles=palette.handles(), loc="outside right upper", fontsize=7.5, frameon=False,
               title="model size", title_fontsize=8, alignment="left")


# --------------------------------------------------------------------------------------
# The registered figures


@register_figure("training_curves", "training loss (smoothed) and held-out evaluations against tokens, by size")
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
