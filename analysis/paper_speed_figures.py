"""Figures of the speed measurements (`griffin-measure`): Fig 3 (training step time against
length), Fig 1b (decode latency) and Fig 4 (maximum throughput and cache memory).

Importing this module registers three figures with `analysis.figures.register_figure`:
`fig3_train_speed`, `fig1b_decode_latency` and `fig4_throughput`. Each reads
`<root>/measurements/<kind>.json` (written by `griffin-measure experiment=train_speed` or
`experiment=inference`) from the run store the figures are drawn from, and is skipped when the
file is absent. The plotting functions are pure functions of DataFrames returning matplotlib
Figures; data artists carry gids:
  'ratio:<size>:<family>' (measured step-time ratio; x = length, y = ratio),
  'ratio_range:<size>:<family>' (min-max band over rounds),
  'flops:<size>:<family>' (the ratio predicted by as-executed FLOPs),
  'latency:<size>:<prefill>:<family>' (x = decoded tokens, y = total latency in seconds),
  'throughput:<size>:<family>' (x = sampled tokens, y = tokens/s),
  'cache:<size>:<family>' (x = length, y = cache bytes per sequence).
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from analysis.figures import FigureInputs, SkipFigure, family_color, register_figure
from run_store.locations import measurement_path

COMMANDS = {"train_speed": "griffin-measure experiment=train_speed",
            "inference": "griffin-measure experiment=inference"}
_SIZE_STYLES = ("-", "--", ":", "-.")


# --------------------------------------------------------------------------------------
# Loading


def load_measurement(root: str | None, kind: str) -> dict[str, Any]:
    """The measurement `kind` ('train_speed' or 'inference') of the run store at `root`, or
    SkipFigure saying which file is missing and the command that writes it."""
    if not root:
        raise SkipFigure(f"no run store root to read measurements/{kind}.json from")
    from run_store import read_json

    path = measurement_path(root, kind)
    data = read_json(path, what=f"{kind} measurement")
    if data is None:
        raise SkipFigure(f"no {path}; run `{COMMANDS.get(kind, 'griffin-measure')}`")
    if data.get("kind") != kind:
        raise SkipFigure(f"{path} holds a {data.get('kind')!r} measurement, not {kind!r}")
    return data


def _frame(data: Mapping[str, Any], table: str) -> pd.DataFrame:
    return pd.DataFrame(list(data.get("results", {}).get(table, [])))


def train_speed_frame(data: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (size, family, length): ratio, ratio_lo, ratio_hi, flop_ratio_as_executed,
    step_ms, tokens_per_s."""
    f = _frame(data, "rows")
    if len(f):
        f["ratio_lo"] = [r[0] for r in f["ratio_range"]]
        f["ratio_hi"] = [r[1] for r in f["ratio_range"]]
    return f


def latency_frame(data: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (size, family, prefill, decoded): total_ms, prefill_ms, decode_ms, ..."""
    return _frame(data, "latency")


def throughput_frame(data: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (size, family, sample_length): batch, batch_by_budget, tokens_per_s, ..."""
    return _frame(data, "throughput")


def cache_frame(data: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (size, family, length): cache_bytes (eq. 5's per-sequence term)."""
    return _frame(data, "cache")


# --------------------------------------------------------------------------------------
# Pure plotting functions


def _log2_lengths(ax, values) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set(int(v) for v in values)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v):,}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _styles(frame: pd.DataFrame) -> dict[str, str]:
    sizes = list(pd.unique(frame["size"]))
    return {s: _SIZE_STYLES[i % len(_SIZE_STYLES)] for i, s in enumerate(sizes)}


def _size_family_lines(ax, frame: pd.DataFrame, x: str, y: str, gid: str, marker: str = "o", per: float = 1.0,
                       styles: dict[str, str] | None = None) -> list[tuple[str, str, pd.DataFrame]]:
    """One line per (size, family) of `frame`, y / per against x: colour by family, line
    style by size (`styles`, default `_styles(frame)`; sizes named in the legend only when
    there are several). `gid` is formatted with size and family. Returns the (size, family,
    rows) drawn."""
    styles = styles or _styles(frame)
    drawn = []
    for (size, fam), r in frame.groupby(["size", "family"], sort=False):
        r = r.sort_values(x)
        ax.plot(r[x], r[y] / per, color=family_color(fam), ls=styles[size], marker=marker, lw=1.6,
                gid=gid.format(size=size, family=fam), label=fam if len(styles) == 1 else f"{fam} {size}")
        drawn.append((size, fam, r))
    return drawn


def plot_train_speed(frame: pd.DataFrame, *, reference: str = "MQA at the shortest length") -> Figure:
    """Fig 3: step time relative to the reference against sequence length at fixed tokens per
    step, one panel per size, one line per family (min-max over rounds as a band), and the
    ratio predicted by as-executed FLOPs as a dotted line. frame: train_speed_frame."""
    sizes = list(pd.unique(frame["size"]))
    fig = Figure(figsize=(4.6 * max(1, len(sizes)), 4.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(sizes)), squeeze=False, sharey=True)[0]
    for ax, size in zip(axes, sizes):
        g = frame[frame["size"] == size]
        for i, fam in enumerate(pd.unique(g["family"])):
            r = g[g["family"] == fam].sort_values("length")
            color = family_color(fam, i)
            ax.plot(r["length"], r["ratio"], color=color, marker="o", lw=1.8, gid=f"ratio:{size}:{fam}", label=fam)
            ax.fill_between(r["length"], r["ratio_lo"], r["ratio_hi"], color=color, alpha=0.15, lw=0,
                            gid=f"ratio_range:{size}:{fam}")
            if "flop_ratio_as_executed" in r and r["flop_ratio_as_executed"].notna().all():
                ax.plot(r["length"], r["flop_ratio_as_executed"], color=color, ls=":", lw=1.2,
                        gid=f"flops:{size}:{fam}")
        ax.axhline(1.0, color="0.5", lw=0.8)
        _log2_lengths(ax, g["length"])
        batches = ", ".join(f"{int(b)}" for b in g.sort_values("length")["batch"].unique())
        tokens = int(g["tokens_per_step"].iloc[0]) if "tokens_per_step" in g else None
        ax.set_title(f"{size}: {tokens:,} tokens/step (batch {batches})" if tokens else size, fontsize=10)
        ax.set_xlabel("sequence length")
        ax.grid(True, which="major", alpha=0.25)
    axes[0].set_ylabel(f"step time / {reference}")
    axes[0].plot([], [], color="0.4", ls=":", label="FLOP model (as executed)")
    axes[0].legend(fontsize=8)
    return fig


def plot_decode_latency(frame: pd.DataFrame) -> Figure:
    """Fig 1b: time to decode n tokens (prefill included) against n, one panel per prefill
    length (0 = empty prefill), one line per family (line style per size). frame: latency_frame."""
    prefills = sorted(pd.unique(frame["prefill"]))
    styles = _styles(frame)
    fig = Figure(figsize=(4.6 * max(1, len(prefills)), 4.0), layout="constrained")
    axes = fig.subplots(1, max(1, len(prefills)), squeeze=False, sharey=True)[0]
    for ax, pre in zip(axes, prefills):
        g = frame[frame["prefill"] == pre]
        _size_family_lines(ax, g, "decoded", "total_ms", f"latency:{{size}}:{int(pre)}:{{family}}", per=1e3,
                           styles=styles)
        _log2_lengths(ax, g["decoded"])
        ax.set_yscale("log")
        batch = int(g["batch"].iloc[0])
        ax.set_title(("empty prefill" if pre == 0 else f"prefill {int(pre):,} tokens") + f", batch {batch}",
                     fontsize=10)
        ax.set_xlabel("tokens decoded")
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel("latency (s)")
    axes[0].legend(fontsize=8)
    return fig


def plot_throughput(throughput: pd.DataFrame, cache: pd.DataFrame | None = None,
                    budget_bytes: float | None = None) -> Figure:
    """Fig 4: maximum sampling throughput (tokens/s) against the number of sampled tokens, each
    point annotated with its batch; and, if `cache` is given, decoding-cache bytes per sequence
    against length (log-log) as a second panel. frames: throughput_frame, cache_frame."""
    panels = 2 if cache is not None and len(cache) else 1
    fig = Figure(figsize=(5.2 * panels, 4.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    drawn = _size_family_lines(ax, throughput, "sample_length", "tokens_per_s", "throughput:{size}:{family}")
    for size, fam, r in drawn:
        for x, y, b in zip(r["sample_length"], r["tokens_per_s"], r["batch"]):
            ax.annotate(f"B={int(b)}", (x, y), textcoords="offset points", xytext=(0, 5), ha="center",
                        fontsize=6, color=family_color(fam))
    _log2_lengths(ax, throughput["sample_length"])
    ax.set_yscale("log")
    ax.set_xlabel("tokens sampled (empty prompt)")
    ax.set_ylabel("throughput (tokens/s)")
    title = "Maximum throughput"
    if budget_bytes:
        title += f" (params + caches <= {budget_bytes / 1e6:,.0f} MB)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    if panels == 2:
        ax = axes[1]
        _size_family_lines(ax, cache, "length", "cache_bytes", "cache:{size}:{family}", marker=".")
        _log2_lengths(ax, cache["length"])
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens in the cache)")
        ax.set_ylabel("decoding cache (bytes per sequence)")
        ax.set_title("Cache memory per sequence", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------------------
# Registered figures


def _root(inputs: FigureInputs) -> str | None:
    return getattr(inputs, "root", None)


@register_figure("fig3_train_speed", "training step time vs length at fixed tokens per step, relative to MQA (Fig 3)")
def _fig3(inputs: FigureInputs) -> Figure:
    data = load_measurement(_root(inputs), "train_speed")
    frame = train_speed_frame(data)
    if not len(frame):
        raise SkipFigure("the train_speed measurement has no rows")
    return plot_train_speed(frame, reference=str(data["results"].get("reference", "the reference")).split(",")[0])


@register_figure("fig1b_decode_latency", "decode latency vs decoded tokens, empty and long prefill (Fig 1b)")
def _fig1b(inputs: FigureInputs) -> Figure:
    frame = latency_frame(load_measurement(_root(inputs), "inference"))
    if not len(frame):
        raise SkipFigure("the inference measurement has no latency rows")
    return plot_decode_latency(frame)


@register_figure("fig4_throughput", "maximum sampling throughput and cache bytes per sequence (Fig 4)")
def _fig4(inputs: FigureInputs) -> Figure:
    data = load_measurement(_root(inputs), "inference")
    frame = throughput_frame(data)
    if not len(frame):
        raise SkipFigure("the inference measurement has no throughput rows")
    budget = data.get("settings", {}).get("memory_budget_gb")
    return plot_throughput(frame, cache_frame(data), budget * 1e9 if budget else None)


__all__ = ["cache_frame", "latency_frame", "load_measurement", "plot_decode_latency",
           "plot_throughput", "plot_train_speed", "throughput_frame", "train_speed_frame"]
