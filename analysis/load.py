"""Runs into DataFrames: from the run store (a store root or a sweep manifest) or from the
W&B public API, into one schema.

- `runs`: one row per usable run: result.json flattened (flops.exact -> flops_exact,
  versions.jax -> versions_jax, ...), heldout_loss_by_position kept as a list column.
- `curves`: metrics.jsonl (or the W&B history) as a long table: run_id, family, size, seed,
  params_total, then the metric columns (step, tokens, flops, loss, lr, ...).
- `positions`: held-out loss by position, long: run_id, family, size, params_total, position, loss.
- `lengths`: synthetic-task accuracy by evaluation length, long (when runs have it).
- `excluded`: runs left out and why (DIVERGED, FAILED, unfinished, no held-out loss).

Runs that did not succeed are never dropped silently: each is printed on stderr and a
warning (`ExcludedRunsWarning`) sums them up. A corrupt or too-new result.json raises
`run_store.StoreError`, one line naming the file.

This module imports pandas and the run store only (no JAX): wandb only when asked,
griffin_core.data (NumPy) only for the corpus entropies.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

from run_store import RESULT_FIELDS, RunResult, RunStore, StoreError, locations, one_line, parse_result

CONVENTIONS = ("6N", "6N_nonembed", "exact", "as_executed")
"""FLOP conventions of result.json's `flops` (see griffin_core.counting)."""
CONVENTION_PARAMS = {"6N": "params_total", "6N_nonembed": "params_non_embedding",
                     "exact": "params_total", "as_executed": "params_total"}
"""The parameter count that goes with each convention (Kaplan's is non-embedding)."""
LOSS_COLUMN = "heldout_loss_nats"
FIRST_COLUMNS = ("run_id", "family", "size", "budget", "seed", "params_total", "params_non_embedding",
                 "tokens", "flops_exact", LOSS_COLUMN)


class ConventionError(ValueError):
    """The results do not record the FLOP convention asked for."""


class ExcludedRunsWarning(UserWarning):
    """Some runs were left out of the analysis (diverged, failed, unfinished)."""


@dataclasses.dataclass
class Runs:
    """Everything loaded from one source (see the module doc for the tables)."""

    runs: pd.DataFrame
    curves: pd.DataFrame
    positions: pd.DataFrame
    lengths: pd.DataFrame
    excluded: pd.DataFrame
    source: str
    """'store:<root>' or 'wandb:<entity/project>'."""
    sweep: str | None = None
    """The sweep's name (its W&B group) when loaded from a manifest or a group."""
    manifest: dict | None = None


def flatten_result(result: RunResult | Mapping[str, Any]) -> dict[str, Any]:
    """One flat row: nested dicts become prefixed columns (flops_exact, versions_jax); lists
    (heldout_loss_by_position) and accuracy_by_length stay as objects."""
    row: dict[str, Any] = {}
    items = result.to_json() if isinstance(result, RunResult) else result
    for key, value in items.items():
        if isinstance(value, Mapping) and key != "accuracy_by_length":
            for sub, v in value.items():
                row[f"{key}_{sub}"] = v
        else:
            row[key] = value
    return row


def _order(df: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in FIRST_COLUMNS if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def _exclude(excluded: list[dict], run_id: str, state: str, reason: str, echo: bool) -> None:
    excluded.append({"run_id": run_id, "state": state, "reason": reason})
    if echo:
        print(f"analysis: excluding run {run_id}: {state}{': ' + reason if reason else ''}", file=sys.stderr)


def _accept(result: RunResult, run_id: str, what: str, rows: list[dict], excluded: list[dict], echo: bool) -> bool:
    """Add the result's row to `rows` if it can be fitted (status SUCCESS, a finite held-out
    loss); else record (and print) why the run is excluded. `what` names the result's origin."""
    if result.status != "SUCCESS":
        _exclude(excluded, run_id, result.status, f"{what} status is not SUCCESS", echo)
        return False
    loss = result.heldout_loss_nats
    if loss is None or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        _exclude(excluded, run_id, "NO_LOSS", f"no finite held-out loss ({LOSS_COLUMN}={loss!r})", echo)
        return False
    rows.append(flatten_result(result))
    return True


def _add_curve(curves: list[pd.DataFrame], records: list[dict], run_id: str) -> None:
    """A run's metrics rows as a frame with its run_id first (nothing for no rows)."""
    if records:
        frame = pd.DataFrame(records)
        frame.insert(0, "run_id", run_id)
        curves.append(frame)


def _assemble(rows: list[dict], curves: list[pd.DataFrame], excluded: list[dict], source: str,
              sweep: str | None, manifest: dict | None, total: int, echo: bool) -> Runs:
    runs = _order(pd.DataFrame(rows)) if rows else pd.DataFrame(columns=list(FIRST_COLUMNS))
    ex = pd.DataFrame(excluded, columns=["run_id", "state", "reason"])
    if len(ex):
        by_state = ex["state"].value_counts().to_dict()
        msg = (f"{source}: excluded {len(ex)} of {total} runs "
               f"({', '.join(f'{k}: {v}' for k, v in by_state.items())}); see Runs.excluded")
        warnings.warn(msg, ExcludedRunsWarning, stacklevel=3)
    meta_cols = [c for c in ("run_id", "family", "size", "seed", "params_total") if c in runs.columns]
    meta = runs[meta_cols] if len(runs) else None
    if curves:
        curve = pd.concat(curves, ignore_index=True)
        curve = meta.merge(curve, on="run_id", how="right") if meta is not None else curve
    else:
        curve = pd.DataFrame(columns=meta_cols + ["step"])
    positions, lengths = [], []
    for row in rows:
        base = {k: row.get(k) for k in meta_cols}
        pos = row.get("heldout_loss_by_position") or []
        if len(pos):
            positions.append(pd.DataFrame({**base, "position": np.arange(len(pos)), "loss": np.asarray(pos, float)}))
        acc = row.get("accuracy_by_length") or {}
        if isinstance(acc, Mapping) and acc:
            lengths.append(pd.DataFrame({**base, "length": [int(k) for k in acc], "accuracy": list(acc.values())}))
    pos_df = (pd.concat(positions, ignore_index=True) if positions
              else pd.DataFrame(columns=meta_cols + ["position", "loss"]))
    len_df = (pd.concat(lengths, ignore_index=True) if lengths
              else pd.DataFrame(columns=meta_cols + ["length", "accuracy"]))
    return Runs(runs=runs, curves=curve, positions=pos_df, lengths=len_df, excluded=ex, source=source,
                sweep=sweep, manifest=manifest)


# --------------------------------------------------------------------------------------
# The run store


def resolve_store(location: str | os.PathLike, sweep: str | None = None) -> tuple[RunStore, str | None, dict | None, list[str]]:
    """(store, sweep name, manifest, run ids) for a store root, a root plus a sweep name, or
    the path of a sweep manifest (<root>/sweeps/<name>.json)."""
    loc = os.fspath(location)
    if loc.endswith(".json"):
        folder = locations.parent(loc)
        if locations.name(folder) != locations.SWEEPS_DIR:
            raise StoreError(f"{loc}: a sweep manifest must live in <root>/sweeps/<name>.json")
        store = RunStore(locations.parent(folder))
        sweep = locations.name(loc)[:-5]
    else:
        store = RunStore(loc)
        # A root holding only griffin-measure's results (measurements/) is a store too.
        if sweep is None and not store.is_store():
            raise StoreError(f"{loc}: not a run store (no runs/ or measurements/ folder) and not a sweep "
                             f"manifest (<root>/sweeps/<name>.json)")
    if sweep is None:
        return store, None, None, store.list_runs()
    manifest = store.read_sweep(sweep)
    if manifest is None:
        raise StoreError(f"{store.sweep_path(sweep)}: no such sweep (sweeps here: {store.list_sweeps()})")
    return store, sweep, manifest, list(dict.fromkeys(manifest["runs"]))


def load_store(location: str | os.PathLike, sweep: str | None = None, *, curves: bool = True,
               echo: bool = True) -> Runs:
    """Load the runs of a store root (every run) or of a sweep (its manifest's runs)."""
    store, sweep, manifest, run_ids = resolve_store(location, sweep)
    rows, curve_frames, excluded = [], [], []
    for run_id in run_ids:
        if not store.exists(run_id):
            _exclude(excluded, run_id, "PENDING", "not started (no run folder)", echo)
            continue
        try:
            status = store.status(run_id)
            result = store.read_result(run_id) if status.state == "SUCCESS" else None
        except StoreError as err:  # one damaged run must not hide the others: name it, skip it
            _exclude(excluded, run_id, "CORRUPT", one_line(err), echo)
            continue
        if status.state != "SUCCESS":
            detail = status.reason or ""
            if status.state == "DIVERGED" and status.step is not None:
                detail = f"at step {status.step}" + (f": {detail}" if detail else "")
            if status.state in ("PENDING", "RUNNING"):
                detail = detail or "not finished"
            _exclude(excluded, run_id, status.state, detail, echo)
            continue
        if result is None:
            _exclude(excluded, run_id, "NO_RESULT", "status SUCCESS but no result.json", echo)
            continue
        if not _accept(result, run_id, "result.json", rows, excluded, echo):
            continue
        if curves:
            try:
                metrics = store.read_metrics(run_id)
            except StoreError as err:  # the result stands; only its curve is lost
                print(f"analysis: no curve for run {run_id}: {one_line(err)}", file=sys.stderr)
                metrics = []
            _add_curve(curve_frames, metrics, run_id)
    return _assemble(rows, curve_frames, excluded, f"store:{store.root}", sweep, manifest, len(run_ids), echo)


# --------------------------------------------------------------------------------------
# W&B


def _summary_dict(run: Any) -> dict:
    for attr in ("summary_metrics",):
        value = getattr(run, attr, None)
        if isinstance(value, Mapping):
            return dict(value)
    summary = getattr(run, "summary", {}) or {}
    raw = getattr(summary, "_json_dict", None)
    return dict(raw) if isinstance(raw, Mapping) else dict(summary)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


WANDB_TIMEOUT_S = 20
"""Seconds the W&B client waits for each request once the host has answered the probe."""


def _wandb_api(path: str) -> Any:
    """wandb.Api(), after the local checks that make a missing API key or a host that does not
    answer one line at once (no login prompt, no retries): run_store.wandb_mode's rules."""
    from run_store.wandb_mode import has_api_key, host_answers, wandb_base_url

    if not has_api_key():
        raise StoreError(f"wandb:{path}: no W&B API key (set WANDB_API_KEY or run `wandb login`); "
                         f"loading runs from W&B needs one, whatever --wandb-mode says")
    base = wandb_base_url()
    if not host_answers(base):
        where = " (WANDB_BASE_URL)" if os.environ.get("WANDB_BASE_URL") else ""
        raise StoreError(f"wandb:{path}: the W&B host {base}{where} did not answer within 2 s")
    import wandb  # imported only when W&B is asked for

    try:
        return wandb.Api(timeout=WANDB_TIMEOUT_S)
    except Exception as err:  # UsageError (a bad key), CommError, HTTP errors: one line
        raise StoreError(f"wandb:{path}: {type(err).__name__}: {one_line(err)}") from None


def load_wandb(path: str, *, group: str | None = None, filters: Mapping[str, Any] | None = None,
               api: Any = None, curves: bool = True, echo: bool = True) -> Runs:
    """Load runs from the W&B public API: `path` is 'entity/project'; `group` (the sweep's
    name) and `filters` (a W&B filter dict) select runs. run.summary holds result.json's
    fields (the trainer puts them there on finishing); run.scan_history() gives the curves.
    `api` replaces wandb.Api() (tests pass a fake)."""
    query = dict(filters or {})
    if group:
        query["group"] = group
    if api is None:
        api = _wandb_api(path)
    try:
        runs = list(api.runs(path, filters=query or None))
    except Exception as err:  # the W&B client's errors (UsageError, CommError, HTTP, not found): one line
        raise StoreError(f"wandb:{path}: cannot list the runs ({type(err).__name__}: {one_line(err)})") from None
    keep = set(RESULT_FIELDS)
    rows, curve_frames, excluded = [], [], []
    for run in runs:
        run_id = str(getattr(run, "id", getattr(run, "name", "?")))
        summary = _plain(_summary_dict(run))
        where = f"wandb run {path}/{run_id}"
        if "schema_version" not in summary:
            _exclude(excluded, run_id, str(getattr(run, "state", "unknown")).upper(),
                     "no result in the W&B summary (unfinished, failed or crashed)", echo)
            continue
        try:
            result = parse_result({k: v for k, v in summary.items() if k in keep}, where,
                                  config=_plain(dict(getattr(run, "config", None) or {})), strict=False)
        except StoreError as err:
            _exclude(excluded, run_id, "CORRUPT", one_line(err), echo)
            continue
        if not _accept(result, run_id, "result", rows, excluded, echo):
            continue
        if curves:
            hist = []
            try:
                history = list(run.scan_history())
            except Exception as err:  # the W&B client's errors: one line
                raise StoreError(f"{where}: cannot read the history ({type(err).__name__}: {one_line(err)})") from None
            for row in history:
                step = row.get("_step", row.get("step"))
                if step is None:
                    continue
                entry = {k: v for k, v in row.items() if not k.startswith("_")}
                entry["step"] = int(step)
                hist.append(entry)
            _add_curve(curve_frames, hist, result.run_id)
    return _assemble(rows, curve_frames, excluded, f"wandb:{path}", group, None, len(runs), echo)


def load_runs(source: str | os.PathLike, sweep: str | None = None, *, curves: bool = True,
              echo: bool = True, api: Any = None) -> Runs:
    """A store root, a sweep manifest, or 'wandb:ENTITY/PROJECT' (then `sweep` is the group)."""
    s = os.fspath(source)
    if s.startswith("wandb:"):
        return load_wandb(s[len("wandb:"):], group=sweep, api=api, curves=curves, echo=echo)
    return load_store(s, sweep, curves=curves, echo=echo)


# --------------------------------------------------------------------------------------
# From runs to fit tables


def fit_frame(runs: pd.DataFrame, convention: str = "exact") -> pd.DataFrame:
    """The runs as a fit table under a FLOP convention: run_id, family, size, budget, seed,
    N (the convention's parameter count), D (tokens), C (flops_<convention>), L (held-out
    loss, nats)."""
    col = f"flops_{convention}"
    if col not in runs.columns:
        have = sorted(c[len("flops_"):] for c in runs.columns if c.startswith("flops_"))
        raise ConventionError(f"FLOP convention {convention!r} is not in these results (they have {have})")
    out = pd.DataFrame({
        "run_id": runs["run_id"], "family": runs["family"].astype(str), "size": runs.get("size"),
        "budget": runs["budget"].astype(str) if "budget" in runs else None,
        "budget_rule": runs["budget_rule"] if "budget_rule" in runs else None,
        "seed": runs["seed"] if "seed" in runs else 0,
        "N": runs[CONVENTION_PARAMS.get(convention, "params_total")].astype(float),
        "D": runs["tokens"].astype(float), "C": runs[col].astype(float),
        "L": runs[LOSS_COLUMN].astype(float)})
    return out.reset_index(drop=True)


def conventions_in(runs: pd.DataFrame) -> list[str]:
    have = [c[len("flops_"):] for c in runs.columns if c.startswith("flops_")]
    return [c for c in CONVENTIONS if c in have] + [c for c in have if c not in CONVENTIONS]


def corpus_entropies(runs: pd.DataFrame) -> dict[str, float] | None:
    """Unigram and bigram entropies (bits and nats per token) of the embedded corpus when
    every run trained on it (its fingerprint), else None."""
    if "corpus_fingerprint" not in runs or not len(runs):
        return None
    prints = set(runs["corpus_fingerprint"].dropna().astype(str))
    if len(prints) != 1:
        return None
    try:
        from griffin_core.data import make_source
        from griffin_core.data.stats import entropy_reference

        source = make_source("corpus")
        if source.fingerprint() != next(iter(prints)):
            return None
        return entropy_reference(source)
    except Exception as e:  # the corpus files may be absent from an installed package
        warnings.warn(f"corpus entropies unavailable: {one_line(e)}", stacklevel=2)
        return None
