"""Fit 5: the compute-optimal frontier N_opt(C), D_opt(C) and tokens per parameter.

From Approach 3 (C = k N D, k = 6 for Chinchilla's 6ND; with another FLOP convention k is the
data's median C / (N D)):
    G = (alpha A / (beta B))^(1 / (alpha + beta))
    N_opt = G (C / k)^(beta / (alpha + beta)),  D_opt = (C / k)^(alpha / (alpha + beta)) / G
From Approach 2: the power laws of the IsoFLOP minima, N_opt = k_N C^a, D_opt = k_D C^b.
Intervals come from the fits' bootstrap draws (each draw gives a whole frontier).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.core import Fit, percentile_interval
from analysis.isoflop import IsoFlopFit

FLOPS_PER_PARAM_TOKEN = 6.0


def _chinchilla_logs(theta: np.ndarray, C: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """log N_opt, log D_opt [B, n] from Approach-3 parameters theta [B, 5] (a, b, e, alpha, beta)."""
    a, b = theta[:, 0:1], theta[:, 1:2]
    al, be = theta[:, 3:4], theta[:, 4:5]
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (al > 0) & (be > 0)
        s = al + be
        log_g = (np.log(np.where(ok, al, 1.0)) + a - np.log(np.where(ok, be, 1.0)) - b) / s
        lc = np.log(np.asarray(C, dtype=float) / k)[None, :]
        log_n = np.where(ok, log_g + be / s * lc, np.nan)
        log_d = np.where(ok, al / s * lc - log_g, np.nan)
    return log_n, log_d


def exponents(fit: Fit) -> dict[str, tuple[float, float, float]]:
    """{'a': (estimate, lo, hi), 'b': ...}: N_opt ∝ C^a, D_opt ∝ C^b, from either approach."""
    if fit.form == "chinchilla":
        fa = lambda th: th[:, 4] / (th[:, 3] + th[:, 4])  # noqa: E731
        fb = lambda th: th[:, 3] / (th[:, 3] + th[:, 4])  # noqa: E731
    elif fit.form == "isoflop":
        fa = lambda th: th[:, 1]  # noqa: E731
        fb = lambda th: th[:, 3]  # noqa: E731
    else:
        raise ValueError(f"a {fit.form} fit has no compute-optimal frontier (use chinchilla or isoflop)")
    return {"a": tuple(float(v) for v in fit.interval(fa)), "b": tuple(float(v) for v in fit.interval(fb))}


def frontier(fit: Fit, C, *, flops_per_param_token: float | None = None, level: float | None = None) -> pd.DataFrame:
    """N_opt, D_opt and tokens per parameter at compute values C, with bootstrap intervals
    (columns X, X_lo, X_hi), from an Approach 3 (chinchilla) or Approach 2 (isoflop) fit."""
    C = np.atleast_1d(np.asarray(C, dtype=float))
    level = fit.level if level is None else level
    if fit.form == "chinchilla":
        k = flops_per_param_token or fit.meta.get("flops_per_param_token") or FLOPS_PER_PARAM_TOKEN
        logs = lambda th: _chinchilla_logs(th, C, k)  # noqa: E731
        method = "approach3"
    elif isinstance(fit, IsoFlopFit):
        logs = lambda th: (fit.law.log_predict(th, {"C": C}), fit.law.log_d_opt(th, C))  # noqa: E731
        method = "approach2"
    else:
        raise ValueError(f"a {fit.form} fit has no compute-optimal frontier (use chinchilla or isoflop)")
    n0, d0 = logs(fit.theta[None, :])
    out = {"C": C, "N_opt": np.exp(n0[0]), "D_opt": np.exp(d0[0]), "tokens_per_param": np.exp(d0[0] - n0[0])}
    if len(fit.boot):
        bn, bd = logs(fit.boot)
        for name, draws in (("N_opt", bn), ("D_opt", bd), ("tokens_per_param", bd - bn)):
            lo, hi = percentile_interval(draws, level, axis=0)
            out[f"{name}_lo"], out[f"{name}_hi"] = np.exp(lo), np.exp(hi)
    else:
        for name in ("N_opt", "D_opt", "tokens_per_param"):
            out[f"{name}_lo"] = out[f"{name}_hi"] = np.full(C.size, np.nan)
    df = pd.DataFrame(out)
    df.insert(0, "method", method)
    df.insert(1, "family", ",".join(fit.families))
    return df
