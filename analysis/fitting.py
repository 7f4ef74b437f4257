"""The fitters on tables: column mapping and validation, per-family dispatch, and the checks
every fit carries (extrapolation to held-out large runs, seed noise).

A table has a row per run and columns for params (N), tokens (D), FLOPs (C), final loss (L)
and optionally family, budget and seed; `Columns` names them. `griffin-fit` and
`griffin-figures` both come through `fit_form`.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis.chinchilla import MIN_TPP_SPREAD, fit_chinchilla
from analysis.core import DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, DEFAULT_SEED, Fit, FitError
from analysis.isoflop import budget_labels, fit_isoflop
from analysis.powerlaw import fit_powerlaw
from analysis.saturating import fit_saturating

FORMS = ("powerlaw", "saturating", "chinchilla", "isoflop")
NEEDS = {"powerlaw": ("flops", "loss"), "saturating": ("flops", "loss"),
         "chinchilla": ("params", "tokens", "loss"), "isoflop": ("params", "flops", "loss")}
"""Columns each form needs (flops may be derived as 6 N D when params and tokens are given)."""
EXTRAPOLATION_BOOTSTRAP = 200
"""Resamples of the extrapolation check's fit (only its prediction interval uses them)."""
STD = ("N", "D", "C", "L", "family", "budget", "seed")


class TableError(ValueError):
    """A table the fitters cannot use. One line, naming the table and the column."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """Column names of a table of runs."""

    params: str = "N"
    """Parameters per model (Chinchilla: all parameters)."""
    tokens: str = "D"
    """Training tokens."""
    flops: str = "C"
    """Training FLOPs (derived as 6 N D when the column is absent and N and D are present)."""
    loss: str = "L"
    """Final (held-out) loss, in nats."""
    family: str | None = None
    """Family labels (one law per family); None: one family, 'all'."""
    budget: str | None = None
    """IsoFLOP budget labels; None: group runs whose FLOPs are within 5%."""
    seed: str | None = None
    """Seed column: repeated configs give the seed-noise table."""


def prepare_table(df: pd.DataFrame, form: str, cols: Columns = Columns(), source: str = "table",
                  notes: list[str] | None = None) -> pd.DataFrame:
    """Validate `df` for `form` and return it with standard columns N, D, C, L, family
    (and budget, seed when named). Raises TableError with one line naming `source`."""
    if form not in FORMS:
        raise TableError(f"{source}: unknown form {form!r}; forms are {list(FORMS)}")
    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise TableError(f"{source}: the table has no rows")
    role_col = {"params": cols.params, "tokens": cols.tokens, "flops": cols.flops, "loss": cols.loss}
    needed = list(NEEDS[form])
    derive_c = cols.flops not in df.columns and cols.params in df.columns and cols.tokens in df.columns
    if derive_c and "flops" in needed:
        needed.remove("flops")
        needed += [r for r in ("params", "tokens") if r not in needed]
    missing = [role_col[r] for r in needed if role_col[r] not in df.columns]
    for name in (cols.family, cols.budget, cols.seed):
        if name is not None and name not in df.columns:
            missing.append(name)
    if missing:
        raise TableError(f"{source}: missing column(s) {missing} needed by form {form!r} "
                         f"(the table has {list(map(str, df.columns))}; map them with --params-col, "
                         "--tokens-col, --flops-col, --loss-col, --family-col)")
    out = pd.DataFrame(index=df.index)
    std_name = {"params": "N", "tokens": "D", "flops": "C", "loss": "L"}
    for role, col in role_col.items():
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad_text = values.isna() & df[col].notna()
        if bad_text.any():
            row = bad_text.idxmax()
            raise TableError(f"{source}: column {col!r} has non-numeric values (row {row}: {df[col][row]!r})")
        if role in needed or (role == "flops" and form == "chinchilla"):
            nan = values.isna() | ~np.isfinite(values.astype(float))
            if nan.any():
                raise TableError(f"{source}: column {col!r} has {int(nan.sum())} NaN or infinite values "
                                 f"(first at row {nan.idxmax()}); drop or fill those runs")
            nonpos = values <= 0
            if nonpos.any():
                raise TableError(f"{source}: column {col!r} has {int(nonpos.sum())} non-positive values "
                                 f"(first at row {nonpos.idxmax()}: {values[nonpos.idxmax()]!r}); laws are fitted in log space")
        out[std_name[role]] = values.astype(float)
    if derive_c:
        out["C"] = 6.0 * out["N"] * out["D"]
        if notes is not None:
            notes.append(f"{source}: no {cols.flops!r} column; using C = 6 N D")
    out["family"] = df[cols.family].astype(str) if cols.family else "all"
    if cols.budget:
        out["budget"] = df[cols.budget].astype(str)
    if cols.seed:
        out["seed"] = df[cols.seed]
    counts = out["family"].value_counts()
    single = counts[counts < 2]
    if len(single):
        raise TableError(f"{source}: family {', '.join(map(repr, single.index))} has only one run; "
                         "a law needs several runs per family")
    return out.reset_index(drop=True)


def fit_form(df: pd.DataFrame, form: str, cols: Columns = Columns(), *, source: str = "table",
             shared_E: bool = True, n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL,
             seed: int = DEFAULT_SEED, grid: Any = None, min_tpp_spread: float = MIN_TPP_SPREAD,
             extrapolate: bool = True, holdout: str = "compute", holdout_frac: float = 0.2,
             extrapolation_boot: int = EXTRAPOLATION_BOOTSTRAP, notes: list[str] | None = None,
             prepared: bool = False) -> dict[str, Fit]:
    """Fit `form` to a table: family -> Fit (a joint saturating fit appears under each of its
    families). Bad tables raise TableError; data a fitter refuses raise TableError too (with
    the fitter's message)."""
    std = df if prepared else prepare_table(df, form, cols, source, notes)
    kw = dict(n_boot=n_boot, level=level, seed=seed)
    try:
        fits = _fit_std(std, form, kw, shared_E=shared_E, grid=grid, min_tpp_spread=min_tpp_spread)
    except FitError as e:
        raise TableError(f"{source}: {e}") from None
    if extrapolate:
        ext = extrapolation_check(std, form, holdout=holdout, frac=holdout_frac, shared_E=shared_E, grid=grid,
                                  min_tpp_spread=min_tpp_spread, n_boot=min(extrapolation_boot, n_boot),
                                  level=level, seed=seed)
        for fit in fits.values():
            fit.extrapolation = {f: ext.get(f) for f in fit.families}
    noise = seed_noise(std)
    for fam, fit in fits.items():
        if noise is not None:
            fit.seed_noise = noise[noise["family"].isin(fit.families)].reset_index(drop=True)
    return fits


def family_seed(seed: int, family: str) -> list[int]:
    """The bootstrap seed of one family's separate fit: the user's seed and a stable hash of
    the family. With one seed for all, families with the same number of runs would be
    resampled with the same index patterns, correlating their draws (and the intervals of
    their comparison)."""
    return [int(seed), zlib.crc32(str(family).encode("utf-8"))]


def _fit_std(std: pd.DataFrame, form: str, kw: Mapping[str, Any], *, shared_E: bool, grid: Any,
             min_tpp_spread: float) -> dict[str, Fit]:
    fams = list(pd.unique(std["family"]))
    if form == "saturating":
        if shared_E and len(fams) > 1:
            joint = fit_saturating(std["C"], std["L"], std["family"], shared_E=True, **kw)
            return {f: joint for f in fams}
        return {f: _tag(fit_saturating(g["C"], g["L"], np.full(len(g), f),
                                       **{**kw, "seed": family_seed(kw["seed"], f)}), f)
                for f, g in std.groupby("family", sort=False)}
    out: dict[str, Fit] = {}
    for fam, g in std.groupby("family", sort=False):
        fkw = {**kw, "seed": family_seed(kw["seed"], fam) if len(fams) > 1 else kw["seed"]}
        if form == "powerlaw":
            fit = fit_powerlaw(g["C"], g["L"], family=fam, **fkw)
        elif form == "chinchilla":
            fit = fit_chinchilla(g["N"], g["D"], g["L"], grid=grid, family=fam,
                                 min_tpp_spread=min_tpp_spread, **fkw)
            if "C" in g:
                fit.meta["flops_per_param_token"] = float(np.median(g["C"] / (g["N"] * g["D"])))
        else:
            fit = fit_isoflop(g["N"], g["C"], g["L"], D=g["D"] if "D" in g else None,
                              budget=g["budget"] if "budget" in g else None, family=fam, **fkw)
        out[fam] = fit
    return out


def _tag(fit: Fit, family: str) -> Fit:
    fit.families = (family,)
    return fit


# --------------------------------------------------------------------------------------
# Extrapolation check


def _holdout_mask(g: pd.DataFrame, holdout: str, frac: float) -> tuple[np.ndarray, str]:
    if holdout == "size":
        top = g["N"] >= g["N"].max()
        return top.to_numpy(), f"largest size (N={g['N'].max():.3g})"
    k = max(1, int(math.ceil(frac * len(g))))
    order = np.argsort(g["C"].to_numpy(), kind="stable")
    mask = np.zeros(len(g), dtype=bool)
    mask[order[-k:]] = True
    # Runs tied with the threshold go to the test side too (no budget straddles the split).
    thr = g["C"].to_numpy()[order[-k]]
    mask |= g["C"].to_numpy() >= thr * (1 - 1e-9)
    return mask, f"top {frac:.0%} by compute (C >= {thr:.3g})"


def extrapolation_check(std: pd.DataFrame, form: str, *, holdout: str = "compute", frac: float = 0.2,
                        shared_E: bool = True, grid: Any = None, min_tpp_spread: float = MIN_TPP_SPREAD,
                        n_boot: int = EXTRAPOLATION_BOOTSTRAP, level: float = DEFAULT_LEVEL,
                        seed: int = DEFAULT_SEED) -> dict[str, dict]:
    """Fit without the largest runs (the top `frac` by compute, or the largest size, per
    family; for isoflop the largest budget), predict them, and report the relative errors
    (predicted / observed - 1) and how many fall in the fit's prediction interval.
    Returns family -> report; a report has 'error' when the check could not run."""
    if holdout not in ("compute", "size"):
        raise ValueError(f"holdout must be 'compute' or 'size', not {holdout!r}")
    if form == "isoflop":
        return {f: _extrapolate_isoflop(g, n_boot, level, seed) for f, g in std.groupby("family", sort=False)}
    masks, what = {}, {}
    for fam, g in std.groupby("family", sort=False):
        masks[fam], what[fam] = _holdout_mask(g.reset_index(drop=True), holdout, frac)
    train = pd.concat([g[~masks[f]] for f, g in std.groupby("family", sort=False)], ignore_index=True)
    test = {f: g[masks[f]].reset_index(drop=True) for f, g in std.groupby("family", sort=False)}
    kw = dict(n_boot=n_boot, level=level, seed=seed)
    out: dict[str, dict] = {}
    try:
        fits = _fit_std(train, form, kw, shared_E=shared_E, grid=grid, min_tpp_spread=min_tpp_spread)
    except (FitError, ValueError) as e:
        return {f: {"holdout": what[f], "error": f"the fit without the held-out runs failed: {e}"} for f in test}
    for fam, t in test.items():
        fit = fits.get(fam)
        if fit is None:
            out[fam] = {"holdout": what[fam], "error": "no fit for this family"}
            continue
        X = {"N": t["N"].to_numpy(), "D": t["D"].to_numpy()} if form == "chinchilla" else {"C": t["C"].to_numpy()}
        if len(fit.families) > 1:
            X["family"] = np.full(len(t), fam)
        b = fit.bands(X, level)
        obs = t["L"].to_numpy()
        rel = b["center"] / obs - 1
        has_pi = bool(np.all(np.isfinite(b["pi_lo"]) & np.isfinite(b["pi_hi"])))
        inside = (obs >= b["pi_lo"]) & (obs <= b["pi_hi"]) if has_pi else np.full(obs.size, np.nan)
        out[fam] = {"holdout": what[fam], "n_train": int((~masks[fam]).sum()), "n_test": int(len(t)),
                    "observed": obs.tolist(), "predicted": b["center"].tolist(), "rel_errors": rel.tolist(),
                    "mean_abs_rel_error": float(np.mean(np.abs(rel))),
                    "max_abs_rel_error": float(np.max(np.abs(rel))),
                    "frac_in_prediction_interval": float(np.mean(inside))}
    return out


def _extrapolate_isoflop(g: pd.DataFrame, n_boot: int, level: float, seed: int) -> dict:
    try:
        full = fit_isoflop(g["N"], g["C"], g["L"], D=g["D"] if "D" in g else None,
                           budget=g["budget"] if "budget" in g else None, n_boot=0)
    except FitError as e:
        return {"holdout": "largest budget", "error": str(e)}
    b = full.budgets[full.budgets["used"]]
    if len(b) < 3:
        return {"holdout": "largest budget", "error": f"needs 3+ usable budgets, got {len(b)}"}
    top = b.iloc[-1]
    labels = budget_labels(g["C"].to_numpy(), g["budget"] if "budget" in g else None)
    keep = labels != top["budget"]
    sub = g[keep]
    try:
        fit = fit_isoflop(sub["N"], sub["C"], sub["L"], D=sub["D"] if "D" in sub else None,
                          budget=sub["budget"] if "budget" in sub else None, n_boot=n_boot, level=level, seed=seed)
    except FitError as e:
        return {"holdout": "largest budget", "error": str(e)}
    bands = fit.bands({"C": np.array([top["C"]])}, level)
    obs = float(top["N_opt"])
    rel = float(bands["center"][0] / obs - 1)
    return {"holdout": f"largest budget (C={top['C']:.3g}); quantity N_opt", "n_train": int(keep.sum()),
            "n_test": int((~keep).sum()), "observed": [obs], "predicted": [float(bands["center"][0])],
            "rel_errors": [rel], "mean_abs_rel_error": abs(rel), "max_abs_rel_error": abs(rel),
            "frac_in_prediction_interval": float(bands["pi_lo"][0] <= obs <= bands["pi_hi"][0])
            if np.isfinite(bands["pi_lo"][0]) and np.isfinite(bands["pi_hi"][0]) else float("nan")}


# --------------------------------------------------------------------------------------
# Seed noise


def seed_noise(std: pd.DataFrame, config_cols: tuple[str, ...] = ("family", "N", "D")) -> pd.DataFrame | None:
    """Std of the final loss across seeds at each config run with 2+ seeds: one row per such
    config (config columns, n_seeds, mean, std, rel_std). None when no seed column is given."""
    if "seed" not in std:
        return None
    cols = [c for c in config_cols if c in std]
    rows = []
    for key, g in std.groupby(cols, sort=True):
        if g["seed"].nunique() < 2:
            continue
        key = key if isinstance(key, tuple) else (key,)
        mean, sd = float(g["L"].mean()), float(g["L"].std(ddof=1))
        rows.append({**dict(zip(cols, key)), "n_seeds": int(g["seed"].nunique()), "mean": mean, "std": sd,
                     "rel_std": sd / mean})
    return pd.DataFrame(rows, columns=cols + ["n_seeds", "mean", "std", "rel_std"])
