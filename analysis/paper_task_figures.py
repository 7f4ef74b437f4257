"""Figures of the paper's Fig 5 (loss by position beyond the training length) and Fig 6
(synthetic tasks), registered with `griffin-figures` (see docs/paper_tasks.md).

- `fig5_long_context`: held-out loss against position within documents, per family, averaged
  in log-spaced position bins, from each run's `eval/loss_by_position_<L>.json` (written by
  `griffin-eval`; the longest L wins) or else result.json's `heldout_loss_by_position`; a
  vertical line at the training length.
- `fig6_selective_copy`: held-out token accuracy against training steps (the metrics rows of
  the evaluation steps) of the selective-copying runs, one line per run coloured by family.
- `fig6_induction_heads`: accuracy against evaluation length (result.json's
  `accuracy_by_length`) of the induction-heads runs, a vertical line at the training length.

Runs are told apart by their data source, read from each run's config.yaml in the store
(`FigureInputs.root`); without a store (W&B) the synthetic task is recognised from its
fingerprint. Data artists carry gids: 'position:<run_id>', 'copy:<run_id>',
'length:<run_id>'; reference lines 'train_length' and 'chance'.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figure_style import FAMILY_ORDER, family_key
from analysis.figures import FigureInputs, SkipFigure, family_color, register_figure

TASK_SOURCES = ("selective_copy", "induction_heads")
TASK_VOCAB = 16
FAMILY_LABELS = {"mqa": "MQA (RoPE)", "mqa_nope": "MQA (NoPE)", "hawk": "Hawk", "griffin": "Griffin"}
FAMILY_STYLES = {"mqa_nope": "--"}
# Chance accuracy of a uniform guess among the symbols a task can answer with.
CHANCE = {"selective_copy": 1.0 / (TASK_VOCAB - 2), "induction_heads": 1.0 / (TASK_VOCAB - 1)}


def _color(family: str) -> str:
    return family_color("mqa" if family == "mqa_nope" else family, FAMILY_ORDER.index(family)
                        if family in FAMILY_ORDER else 5)


def _label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def _run_lines(ax, table: pd.DataFrame, gid: str, xy, label=None, **style) -> None:
    """One line per run of `table`, coloured and dashed by family in the paper's order:
    xy(rows of a run) -> (x, y); label(family, rows) -> legend label (default the family's)."""
    for fam in sorted(table["family"].unique(), key=family_key):
        for run_id, r in table[table["family"] == fam].groupby("run_id", sort=False):
            xs, ys = xy(r)
            ax.plot(xs, ys, color=_color(fam), ls=FAMILY_STYLES.get(fam, "-"), lw=1.5, gid=f"{gid}:{run_id}",
                    label=label(fam, r) if label else _label(fam), **style)


def _train_lengths(ax, table: pd.DataFrame, annotate: bool = False) -> None:
    """A dotted vertical line at each training length (`seq_len`) of the table's runs."""
    for i, t in enumerate(sorted(set(int(x) for x in table["seq_len"].dropna()))):
        ax.axvline(t, color="0.3", ls=":", lw=1.0, gid="train_length" if i == 0 else f"train_length:{t}")
        if annotate:
            ax.annotate(f"training length {t}", xy=(t, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=7, color="0.3")


def _finish(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7)


# --------------------------------------------------------------------------------------
# Which runs are which


def _root(inputs: FigureInputs) -> str | None:
    return getattr(inputs, "root", None)


def _configs(root: str | None, run_ids) -> dict[str, dict]:
    """run_id -> config.yaml (as a dict) for the runs that have one in the store."""
    if not root:
        return {}
    from run_store import RunStore

    store = RunStore(root)
    out = {}
    for run_id in run_ids:
        try:
            cfg = store.read_config(str(run_id))
        except Exception:  # a foreign or damaged folder: the run is just not classified
            cfg = None
        if cfg:
            out[str(run_id)] = cfg
    return out


def run_sources(inputs: FigureInputs) -> pd.DataFrame:
    """One row per run: run_id, family, size, seq_len, source (the result's data_source, or None
    when unknown), experiment (the sweep that created the run, from its config.yaml when the
    store has it), params_total."""
    runs = inputs.runs
    cols = ["run_id", "family", "size", "seq_len", "source", "experiment", "params_total"]
    if runs is None or not len(runs):
        return pd.DataFrame(columns=cols)
    configs = _configs(_root(inputs), runs["run_id"])
    rows = []
    for row in runs.to_dict("records"):
        cfg = configs.get(str(row["run_id"])) or {}
        source = row.get("data_source") or (cfg.get("data") or {}).get("source")
        experiment = (cfg.get("experiment") or {}).get("name")
        rows.append({"run_id": str(row["run_id"]), "family": str(row["family"]), "size": row.get("size"),
                     "seq_len": row.get("seq_len"), "source": source, "experiment": experiment,
                     "params_total": row.get("params_total")})
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------
# Fig 5: loss by position


def position_bins(length: int, bins_per_decade: int = 12) -> np.ndarray:
    """Edges (1-based positions, ascending integers) of log-spaced bins covering 1..length."""
    n = max(2, int(math.ceil(math.log10(max(length, 2)) * bins_per_decade)) + 1)
    edges = np.unique(np.round(np.geomspace(1, length + 1, n)).astype(int))
    edges[0], edges[-1] = 1, length + 1
    return edges


def bin_losses(losses, bins_per_decade: int = 12) -> pd.DataFrame:
    """Per-position losses (index 0 = position 1) averaged in log-spaced bins: position (the
    bin's geometric centre, 1-based), loss (mean over the bin), lo, hi (bin edges), count."""
    losses = np.asarray(losses, float)
    edges = position_bins(len(losses), bins_per_decade)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        chunk = losses[lo - 1:hi - 1]
        if chunk.size:
            out.append({"position": math.sqrt(lo * (hi - 1)), "loss": float(np.mean(chunk)), "lo": int(lo),
                        "hi": int(hi - 1), "count": int(chunk.size)})
    return pd.DataFrame(out, columns=["position", "loss", "lo", "hi", "count"])


def _eval_files(root: str, run_id: str) -> dict[int, str]:
    """Evaluation length -> path of `<run>/eval/loss_by_position_<L>.json`."""
    from run_store import RunStore, join

    store = RunStore(root)
    folder = store.run_file(run_id, "eval")
    names = store.run_listing(run_id, "eval")
    out = {}
    for name in names:
        stem = name[len("loss_by_position_"):-len(".json")] if name.startswith("loss_by_position_") \
            and name.endswith(".json") else ""
        if stem.isdigit():
            out[int(stem)] = join(folder, name)
    return out


def _read_json(path: str) -> dict | None:
    from run_store import read_json

    try:
        return read_json(path, "loss-by-position file")
    except Exception:
        return None


def long_context_table(inputs: FigureInputs) -> pd.DataFrame:
    """Per-position held-out loss of the text (non-task) runs, long: run_id, family, size,
    seq_len (training length), length (evaluated), origin ('griffin-eval' or 'result'),
    position (1-based), loss. Per run the longest evaluation wins."""
    cols = ["run_id", "family", "size", "seq_len", "length", "origin", "position", "loss"]
    meta = run_sources(inputs)
    meta = meta[~meta["source"].isin(TASK_SOURCES)] if len(meta) else meta
    root = _root(inputs)
    positions = inputs.positions if inputs.positions is not None else pd.DataFrame()
    frames = []
    for row in meta.to_dict("records"):
        run_id = row["run_id"]
        best, origin = None, None
        if root:
            files = _eval_files(root, run_id)
            for length in sorted(files, reverse=True):
                data = _read_json(files[length])
                if data and data.get("loss_by_position"):
                    best, origin = np.asarray(data["loss_by_position"], float), "griffin-eval"
                    break
        if len(positions) and "run_id" in positions:
            p = positions[positions["run_id"].astype(str) == run_id].sort_values("position")
            if len(p) and (best is None or len(p) > len(best)):
                best, origin = p["loss"].to_numpy(float), "result"
        if best is None or not len(best):
            continue
        frames.append(pd.DataFrame({"run_id": run_id, "family": row["family"], "size": row["size"],
                                    "seq_len": row["seq_len"], "length": len(best), "origin": origin,
                                    "position": np.arange(1, len(best) + 1), "loss": best}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def _pick_size(table: pd.DataFrame) -> pd.DataFrame:
    """Keep one size: the one most families were evaluated at, longest evaluation first, then
    the largest model (a store may hold a whole scaling study besides the long-context runs)."""
    if table["size"].nunique() <= 1:
        return table
    score = table.groupby("size").agg(families=("family", "nunique"), length=("length", "max"),
                                      n=("position", "size"))
    best = score.sort_values(["families", "length", "n"], ascending=False).index[0]
    return table[table["size"] == best]


def plot_long_context(table: pd.DataFrame, bins_per_decade: int = 12) -> Figure:
    """Fig 5 style: binned per-position held-out loss against position (log x), one line per
    run coloured by family, a vertical line at the training length."""
    fig = Figure(figsize=(6.6, 4.4), layout="constrained")
    ax = fig.add_subplot()

    def binned(r):
        b = bin_losses(r.sort_values("position")["loss"].to_numpy(), bins_per_decade)
        return b["position"], b["loss"]

    _run_lines(ax, table, "position", binned, label=lambda fam, r: f"{_label(fam)} ({r['size'].iloc[0]})",
               marker="o", ms=2.5)
    _train_lengths(ax, table, annotate=True)
    ax.set_xscale("log")
    _finish(ax, "token position in document", "held-out loss (nats/token), log-binned",
            "Loss by position beyond the training length (Fig 5)")
    return fig


@register_figure("fig5_long_context", "Fig 5: held-out loss by position past the training length, per family")
def fig5_long_context(inputs: FigureInputs) -> Figure:
    table = long_context_table(inputs)
    if not len(table):
        raise SkipFigure("no text runs with loss by position (result.json or griffin-eval files)")
    return plot_long_context(_pick_size(table))


# --------------------------------------------------------------------------------------
# Fig 6: synthetic tasks


def _task_runs(inputs: FigureInputs, source: str) -> pd.DataFrame:
    meta = run_sources(inputs)
    return meta[meta["source"] == source] if len(meta) else meta


def selective_copy_table(inputs: FigureInputs) -> pd.DataFrame:
    """Held-out accuracy at each evaluation step of the selective-copying runs: run_id,
    family, size, step, accuracy."""
    cols = ["run_id", "family", "size", "step", "accuracy"]
    runs = _task_runs(inputs, "selective_copy")
    c = inputs.curves
    if not len(runs) or c is None or not len(c) or "heldout_accuracy" not in c:
        return pd.DataFrame(columns=cols)
    c = c[c["run_id"].astype(str).isin(set(runs["run_id"])) & c["heldout_accuracy"].notna()]
    out = c[["run_id", "step", "heldout_accuracy"]].rename(columns={"heldout_accuracy": "accuracy"})
    out = out.merge(runs[["run_id", "family", "size"]], on="run_id", how="left")
    return out[cols].sort_values(["run_id", "step"]).reset_index(drop=True)


def plot_selective_copy(table: pd.DataFrame) -> Figure:
    """Fig 6 (left) style: held-out accuracy against training steps, one line per run."""
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    _run_lines(ax, table, "copy", lambda r: (r["step"], r["accuracy"]), marker="o", ms=3)
    ax.axhline(CHANCE["selective_copy"], color="0.5", ls=":", lw=1.0, gid="chance")
    ax.set_ylim(0, 1.02)
    _finish(ax, "training steps", "held-out token accuracy", "Selective copying (Fig 6)")
    return fig


@register_figure("fig6_selective_copy", "Fig 6: selective-copying accuracy against training steps, per family")
def fig6_selective_copy(inputs: FigureInputs) -> Figure:
    table = selective_copy_table(inputs)
    if not len(table):
        raise SkipFigure("no selective-copying runs with held-out accuracy in their metrics")
    return plot_selective_copy(table)


def induction_table(inputs: FigureInputs) -> pd.DataFrame:
    """Accuracy by evaluation length of the induction-heads runs: run_id, family, size,
    seq_len (training length), length, accuracy."""
    cols = ["run_id", "family", "size", "seq_len", "length", "accuracy"]
    runs = _task_runs(inputs, "induction_heads")
    lengths = inputs.lengths
    if not len(runs) or lengths is None or not len(lengths):
        return pd.DataFrame(columns=cols)
    t = lengths[lengths["run_id"].astype(str).isin(set(runs["run_id"]))]
    t = t[["run_id", "length", "accuracy"]].merge(runs[["run_id", "family", "size", "seq_len"]], on="run_id")
    t = t.assign(length=t["length"].astype(int), accuracy=t["accuracy"].astype(float))
    return t[cols].sort_values(["run_id", "length"]).reset_index(drop=True)


def plot_induction(table: pd.DataFrame) -> Figure:
    """Fig 6 (right) style: accuracy against evaluation length (log2 x), one line per run,
    a vertical line at the training length."""
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    _run_lines(ax, table, "length", lambda r: (r["length"], r["accuracy"]), marker="o", ms=3.5)
    _train_lengths(ax, table)
    ax.axhline(CHANCE["induction_heads"], color="0.5", ls=":", lw=1.0, gid="chance")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 1.02)
    _finish(ax, "evaluation sequence length", "accuracy (answer token)", "Induction heads: extrapolation (Fig 6)")
    return fig


@register_figure("fig6_induction_heads", "Fig 6: induction-heads accuracy against evaluation length, per family")
def fig6_induction_heads(inputs: FigureInputs) -> Figure:
    table = induction_table(inputs)
    if not len(table):
        raise SkipFigure("no induction-heads runs with accuracy_by_length")
    return plot_induction(table)
