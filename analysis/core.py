"""What every fit returns (`Fit`), and the helpers the fitters share: whole-run bootstrap
resampling, percentile intervals, R^2 and the health summary of a multi-start search.

Conventions (all fitters):
- Losses are fitted in log space: residual_i = log(predicted L_i) - log(observed L_i), so
  R^2, the residual scale `sigma` and the prediction intervals are about relative error.
- A bootstrap resample draws whole runs (rows) with replacement, within strata (a family, an
  IsoFLOP budget) so every stratum keeps its size. It is expressed as a count per row, and
  the fit minimises the count-weighted objective: a run drawn twice counts twice.
- Confidence intervals are percentile intervals of the bootstrap estimates (the curve's
  uncertainty). For the linear fit (the pure power law, `dof` set) they are *expanded*
  percentile intervals (Hesterberg 2015): a plain percentile interval of a pairs bootstrap of
  a least-squares line is too narrow with few runs (83% coverage at a nominal 90% with 8-12
  runs, measured), because resampled spreads are biased low by (n-p)/n and miss the t
  distribution's tails. The percentiles are taken at the level L' with
  Phi^-1((1+L')/2) = sqrt(n/(n-p)) t_{n-p}^-1((1+L)/2): L' = 0.975 for L = 0.9 at n=8, p=2,
  tending to L as n grows. The nonlinear fits (saturating, IsoFLOP) already over-cover with
  plain percentiles (measured 0.95-0.97 at a nominal 0.9: their bootstrap distributions are
  skewed and heavy-tailed), so they are left plain (`dof` None); see docs/analysis.md.
- Prediction intervals (where a new run would land) widen the curve's interval in log space
  by the residual scale: half-width sqrt(ci^2 + (t sigma)^2), t the Student quantile with
  the residual degrees of freedom.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri, stdtrit

DEFAULT_LEVEL = 0.95
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 0


class FitError(ValueError):
    """Data a fitter refuses (too few points, no spread, non-positive values...).
    The message is one line and says what to do instead."""


@dataclasses.dataclass
class Fit:
    """A fitted law, its bootstrap and its checks.

    `theta` is the law's internal parameter vector (logs of scales, exponents); `params()`
    gives the named constants on their natural scale. `boot` holds one internal vector per
    successful bootstrap resample, so an interval on any derived quantity is
    `interval(fn)`."""

    form: str
    """'powerlaw', 'saturating', 'chinchilla' or 'isoflop'."""
    law: Any
    """The law object: `names`, `natural(theta)`, `log_predict(theta, X)`."""
    theta: np.ndarray
    """[p] optimum on the full data."""
    boot: np.ndarray
    """[B, p] optima on the bootstrap resamples that succeeded."""
    n_boot: int
    """Resamples drawn (B may be smaller: see health['boot_failed'])."""
    level: float
    """Default level of the intervals (0.95: 2.5 and 97.5 percentiles)."""
    n_points: int
    """Runs fitted."""
    residuals: np.ndarray
    """[n] log(predicted) - log(observed), in the order of the input rows."""
    r2: float
    """1 - SS_res / SS_tot of log loss."""
    sigma: float
    """Residual standard deviation in log loss (dof-corrected): a new run's scatter."""
    health: dict
    """converged, on_boundary, start spread ... (see each fitter)."""
    families: tuple[str, ...] = ("all",)
    """Families this fit covers (a joint fit with a shared E covers several)."""
    meta: dict = dataclasses.field(default_factory=dict)
    """Columns, convention, starts, delta and other settings."""
    dof: int | None = None
    """n - p for the interval expansion (None: no expansion, plain percentiles)."""
    extrapolation: dict | None = None
    """family -> report of `analysis.fitting.extrapolation_check` (fit without the largest
    runs, predict them): holdout, n_train, n_test, rel_errors, mean/max_abs_rel_error,
    frac_in_prediction_interval; or 'error' when the check could not run."""
    seed_noise: pd.DataFrame | None = None
    """Std of the final loss across seeds at fixed configs (see `analysis.fitting.seed_noise`)."""

    # -- parameters
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.law.names)

    def params(self) -> dict[str, float]:
        nat = self.law.natural(self.theta[None, :])
        return {k: float(v[0]) for k, v in nat.items()}

    def boot_params(self) -> dict[str, np.ndarray]:
        return self.law.natural(self.boot) if len(self.boot) else {k: np.empty(0) for k in self.names}

    def boot_level(self, level: float | None = None) -> float:
        """The percentile level actually used for a nominal `level` (see module doc)."""
        level = self.level if level is None else level
        return expanded_level(level, self.n_points, self.dof)

    def ci(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap interval of each named constant (expanded when `dof` is set)."""
        lv = self.boot_level(level)
        return {k: percentile_interval(v, lv) for k, v in self.boot_params().items()}

    def interval(self, fn: Callable[[np.ndarray], np.ndarray], level: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(estimate, lo, hi) of a derived quantity fn(theta [B, p]) -> [B, ...]."""
        level = self.boot_level(level)
        est = np.asarray(fn(self.theta[None, :]))[0]
        draws = np.asarray(fn(self.boot)) if len(self.boot) else np.full((1,) + np.shape(est), np.nan)
        lo, hi = percentile_interval(draws, level, axis=0)
        return est, lo, hi

    # -- predictions
    def log_predict(self, X: Mapping[str, Any], theta: np.ndarray | None = None) -> np.ndarray:
        """log L at the inputs X ({'C': ...} or {'N': ..., 'D': ...}, plus 'family' for a
        joint fit). theta [p] -> [n]; theta [B, p] -> [B, n]."""
        theta = self.theta if theta is None else np.asarray(theta, dtype=float)
        X = {k: (np.asarray(v) if k == "family" else np.asarray(v, dtype=float)) for k, v in X.items()}
        if theta.ndim == 1:
            return self.law.log_predict(theta[None, :], X)[0]
        return self.law.log_predict(theta, X)

    def predict(self, X: Mapping[str, Any], theta: np.ndarray | None = None) -> np.ndarray:
        return np.exp(self.log_predict(X, theta))

    def bands(self, X: Mapping[str, Any], level: float | None = None) -> dict[str, np.ndarray]:
        """{'center', 'ci_lo', 'ci_hi', 'pi_lo', 'pi_hi'}: the fitted curve, its confidence band
        (bootstrap percentiles) and the prediction band (confidence band widened by the
        residual scale in log space), all as losses."""
        level = self.level if level is None else level
        center = self.log_predict(X)
        if len(self.boot):
            draws = self.log_predict(X, self.boot)
            lo, hi = percentile_interval(draws, self.boot_level(level), axis=0)
        else:
            lo = hi = np.full_like(center, np.nan)
        # A new run scatters like the residuals: t quantile with the fit's dof.
        dof = self.meta.get("residual_dof", self.dof)
        z = float(stdtrit(dof, 0.5 + level / 2)) if dof and dof > 0 else float(ndtri(0.5 + level / 2))
        noise = (z * self.sigma) ** 2 if np.isfinite(self.sigma) else np.nan
        pi_lo = center - np.sqrt((center - lo) ** 2 + noise)
        pi_hi = center + np.sqrt((hi - center) ** 2 + noise)
        return {"center": np.exp(center), "ci_lo": np.exp(lo), "ci_hi": np.exp(hi),
                "pi_lo": np.exp(pi_lo), "pi_hi": np.exp(pi_hi)}

    # -- reporting
    def table(self, level: float | None = None) -> pd.DataFrame:
        """One row per named constant: estimate, interval, and the fit's summary figures."""
        level = self.level if level is None else level
        params, ci = self.params(), self.ci(level)
        rows = []
        for name in self.names:
            lo, hi = ci[name]
            rows.append({"form": self.form, "family": ",".join(self.families), "parameter": name,
                         "estimate": params[name], "ci_lo": lo, "ci_hi": hi, "level": level,
                         "n_points": self.n_points, "n_boot": len(self.boot), "r2": self.r2,
                         "sigma_log": self.sigma, **{k: self.meta[k] for k in ("convention",) if k in self.meta}})
        return pd.DataFrame(rows)

    def checks(self) -> dict[str, Any]:
        """One flat row of the fit's checks: health, extrapolation and seed noise."""
        row: dict[str, Any] = {"form": self.form, "family": ",".join(self.families),
                               "n_points": self.n_points, "r2": self.r2, "sigma_log": self.sigma}
        if "convention" in self.meta:
            row["convention"] = self.meta["convention"]
        for k, v in self.health.items():
            if np.isscalar(v) or v is None:
                row[f"health_{k}"] = v
            elif isinstance(v, (list, tuple)):
                row[f"health_{k}"] = ";".join(map(str, v))
        reports = [r for r in (self.extrapolation or {}).values() if r]
        if reports:
            ok = [r for r in reports if "error" not in r]
            row["extrap_holdout"] = reports[0].get("holdout")
            if ok:
                row["extrap_n_test"] = sum(r["n_test"] for r in ok)
                row["extrap_mean_abs_rel_error"] = float(np.mean(np.concatenate(
                    [np.abs(r["rel_errors"]) for r in ok])))
                row["extrap_max_abs_rel_error"] = max(r["max_abs_rel_error"] for r in ok)
                row["extrap_frac_in_prediction_interval"] = float(np.nanmean(
                    [r["frac_in_prediction_interval"] for r in ok])) if any(
                    np.isfinite(r["frac_in_prediction_interval"]) for r in ok) else float("nan")
            errors = [r["error"] for r in reports if "error" in r]
            if errors:
                row["extrap_error"] = errors[0]
        if self.seed_noise is not None and len(self.seed_noise):
            row["seed_std_mean"] = float(self.seed_noise["std"].mean())
            row["seed_configs"] = int(len(self.seed_noise))
        return row

    def summary(self, level: float | None = None) -> str:
        """Human-readable lines: named constants with intervals, then the checks."""
        level = self.level if level is None else level
        params, ci = self.params(), self.ci(level)
        fam = ",".join(self.families)
        out = [f"{self.form} fit [{fam}] on {self.n_points} runs: {self.law.formula}"]
        for name in self.names:
            lo, hi = ci[name]
            out.append(f"  {name:>12} = {fmt(params[name])}   {level:.0%} CI [{fmt(lo)}, {fmt(hi)}]")
        q = getattr(self.law, "quantity", "log L")
        out.append(f"  R^2 ({q}) = {self.r2:.4f}; residual sigma = {self.sigma:.4f} "
                   f"({q}); bootstrap {len(self.boot)}/{self.n_boot} resamples")
        h = self.health
        note = [f"converged={h.get('converged')}"]
        if h.get("on_boundary"):
            note.append(f"ON BOUNDARY: {', '.join(h['on_boundary'])}")
        if "n_starts" in h:
            note.append(f"{h.get('frac_starts_at_best', float('nan')):.0%} of {h['n_starts']} starts reach the best")
        out.append("  health: " + "; ".join(note))
        for fam, x in (self.extrapolation or {}).items():
            if not x:
                continue
            who = f" [{fam}]" if len(self.families) > 1 else ""
            if "error" not in x:
                frac = x["frac_in_prediction_interval"]
                pi = (f"{frac:.0%} inside the prediction interval" if np.isfinite(frac)
                      else "no prediction interval (too few points for a residual scale)")
                out.append(f"  extrapolation{who} ({x['holdout']}): fit on {x['n_train']}, predict {x['n_test']}: "
                           f"mean |rel err| {x['mean_abs_rel_error']:.2%}, max {x['max_abs_rel_error']:.2%}, {pi}")
            else:
                out.append(f"  extrapolation{who}: not run ({x['error']})")
        if self.seed_noise is not None and len(self.seed_noise):
            out.append(f"  seed noise: std of final loss {self.seed_noise['std'].mean():.4f} "
                       f"over {len(self.seed_noise)} repeated configs")
        return "\n".join(out)


def fmt(x: float) -> str:
    if x is None or not np.isfinite(x):
        return str(x)
    a = abs(x)
    return f"{x:.4g}" if 1e-3 <= a < 1e5 or a == 0 else f"{x:.4e}"


# --------------------------------------------------------------------------------------
# Bootstrap and intervals


def expanded_level(level: float, n: int, dof: int | None) -> float:
    """Percentile level of the expanded percentile interval (see module doc)."""
    if not dof or dof <= 0 or dof >= n:
        return level
    q = np.sqrt(n / dof) * stdtrit(dof, 0.5 + level / 2)
    return float(2 * ndtr(q) - 1)


def percentile_interval(draws: np.ndarray, level: float, axis: int = 0):
    """Equal-tailed percentile interval over `axis`, ignoring NaN (failed resamples).
    Returns (lo, hi) as floats for a 1-D input, arrays otherwise."""
    draws = np.asarray(draws, dtype=float)
    q = [50 * (1 - level), 50 * (1 + level)]
    if draws.size == 0 or np.all(np.isnan(draws)):
        shape = np.delete(draws.shape, axis) if draws.ndim > 1 else ()
        nan = np.full(shape, np.nan)
        return (float("nan"), float("nan")) if draws.ndim <= 1 else (nan, nan.copy())
    with np.errstate(invalid="ignore"):
        lo, hi = np.nanpercentile(draws, q, axis=axis)
    if draws.ndim <= 1:
        return float(lo), float(hi)
    return lo, hi


def bootstrap_counts(n_boot: int, strata: Sequence[Any] | np.ndarray | None, n: int,
                     seed: int | Sequence[int] | np.random.Generator = DEFAULT_SEED) -> np.ndarray:
    """[n_boot, n] counts: how often each row is drawn in each resample of whole runs.
    Within each stratum (a family, a budget) as many rows are drawn as it has, so every
    stratum keeps its size. Seeded: the same call gives the same resamples."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, n))
    groups = [np.arange(n)] if strata is None else [
        np.flatnonzero(np.asarray(strata) == s) for s in pd.unique(np.asarray(strata))]
    for idx in groups:
        draws = rng.integers(0, idx.size, size=(n_boot, idx.size))
        np.add.at(counts, (np.arange(n_boot)[:, None], idx[draws]), 1.0)
    return counts


def r_squared(resid: np.ndarray, y: np.ndarray) -> float:
    ss_res = float(np.sum(np.square(resid)))
    ss_tot = float(np.sum(np.square(y - np.mean(y))))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def residual_sigma(resid: np.ndarray, n_params: int) -> float:
    dof = resid.size - n_params
    return math.sqrt(float(np.sum(np.square(resid))) / dof) if dof > 0 else float("nan")


def start_health(fun: np.ndarray, x_natural: Mapping[str, np.ndarray], best: int,
                 rel_tol: float = 1e-4) -> dict[str, Any]:
    """Spread of a multi-start search: how many starts reach the best objective (within
    `rel_tol`), the spread of the objective over the best 10% of starts, and how far apart
    the parameters of the starts that reach the best are (a wide spread there means the
    optimum is flat or not unique)."""
    fun = np.asarray(fun, dtype=float)
    ok = np.isfinite(fun)
    fbest = float(fun[best])
    near = ok & (fun <= fbest + rel_tol * max(abs(fbest), 1e-12))
    top = np.sort(fun[ok])[: max(1, ok.sum() // 10)]
    spread = {}
    for k, v in x_natural.items():
        vv = np.asarray(v, dtype=float)[near]
        centre = abs(float(np.asarray(v)[best])) or 1.0
        spread[k] = float((vv.max() - vv.min()) / centre) if vv.size else float("nan")
    return {"n_starts": int(fun.size), "best_objective": fbest,
            "frac_starts_at_best": float(near.mean()),
            "objective_spread_top10pct": float(top.max() - top.min()) if top.size else float("nan"),
            "param_rel_spread_at_best": max(spread.values()) if spread else float("nan"),
            "param_rel_spread_by_name": spread}


def as_float_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size == 0:
        raise FitError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise FitError(f"{name} has {int(np.sum(~np.isfinite(arr)))} NaN or infinite values")
    if np.any(arr <= 0):
        raise FitError(f"{name} has {int(np.sum(arr <= 0))} non-positive values (min {arr.min():g}); "
                       "laws are fitted in log space")
    return arr
