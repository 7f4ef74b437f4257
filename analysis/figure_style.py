"""The look the figures share: family colours and order, colours by model size (a sequential
colormap with a legend of sizes), plain tick labels on log loss axes.

Imported by every figure module; it draws nothing itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from matplotlib import cm
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

FAMILY_COLORS = {"mqa": "#4C72B0", "hawk": "#DD8452", "griffin": "#55A868", "mamba2": "#8172B3",
                 "mamba2_mlp": "#937860"}
FAMILY_ORDER = ("mqa", "mqa_nope", "hawk", "griffin", "mamba2", "mamba2_mlp")
SIZE_CMAP = "viridis"
SIZE_CMAP_RANGE = (0.0, 0.85)
"""The part of the colormap sizes use (viridis' last yellows are too light on white)."""


def family_color(family: str, i: int = 0) -> str:
    return FAMILY_COLORS.get(family, f"C{(i + 3) % 10}")


def family_key(family: str) -> tuple[int, str]:
    """Sort key: the paper's families in FAMILY_ORDER, then any other family by name."""
    return (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER), family)


def ordered_families(values) -> list[str]:
    return sorted(pd.unique(pd.Series(values).astype(str)), key=family_key)


def plain_y(ax) -> None:
    """Loss axes on a log scale span less than a decade: label ticks as plain numbers."""
    f = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(f)
    ax.yaxis.set_minor_formatter(f)
    ax.tick_params(axis="y", which="minor", labelsize=7)


def cmap(name: str):
    try:
        from matplotlib import colormaps

        return colormaps[name]
    except ImportError:  # older matplotlib
        return cm.get_cmap(name)


def human(n: float) -> str:
    """27_624 -> '27.6k', 1.5e6 -> '1.5M'."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


@dataclasses.dataclass(frozen=True)
class SizePalette:
    """One colour per model size, from a sequential colormap in order of parameters (small:
    dark, large: light), the same in every panel; `handles()` makes its legend."""

    column: str
    """The column naming a run's size ('size', or the parameter count when there is none)."""
    order: tuple
    """The sizes, smallest first."""
    colors: dict
    labels: dict

    def size_of(self, run: pd.DataFrame):
        """The size of one run (its rows), as a key of `colors`."""
        value = run[self.column].iloc[0]
        return str(value) if isinstance(self.order[0], str) else float(value)

    def color(self, run: pd.DataFrame):
        """The colour of one run (its rows)."""
        return self.colors[self.size_of(run)]

    def handles(self, **line) -> list[Line2D]:
        style = {"lw": 2.0, **line}
        return [Line2D([], [], color=self.colors[s], label=self.labels[s], **style) for s in self.order]


def size_palette(frame: pd.DataFrame, size_col: str = "size", params_col: str = "params_total",
                 name: str = SIZE_CMAP) -> SizePalette:
    """Colours for the sizes of `frame`'s runs. Sizes are ordered by their median parameter
    count (labels like 'cpu-30k (27.6k-31.8k params)': one size has a different count in
    each family); without a size column each parameter count is a size."""
    has_params = params_col in frame and pd.to_numeric(frame[params_col], errors="coerce").notna().all()
    if size_col in frame and frame[size_col].notna().all():
        column = size_col
        sizes = frame[size_col].astype(str)
        if has_params:
            params = pd.to_numeric(frame[params_col]).groupby(sizes)
            order = list(params.median().sort_values(kind="stable").index)
            lo, hi = params.min(), params.max()
            labels = {s: f"{s} ({human(lo[s])}{'' if lo[s] == hi[s] else '-' + human(hi[s])} params)" for s in order}
        else:
            order = sorted(pd.unique(sizes))
            labels = {s: s for s in order}
    elif has_params:
        column = params_col
        order = sorted(float(v) for v in pd.unique(pd.to_numeric(frame[params_col])))
        labels = {s: f"{human(s)} params" for s in order}
    else:
        raise ValueError(f"no {size_col!r} or {params_col!r} column to colour runs by size")
    lo, hi = SIZE_CMAP_RANGE
    where = np.linspace(lo, hi, len(order)) if len(order) > 1 else [(lo + hi) / 2]
    palette = cmap(name)
    return SizePalette(column, tuple(order), {s: palette(float(w)) for s, w in zip(order, where)}, labels)

