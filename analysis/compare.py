"""Family comparison at matched compute, from fitted laws of loss against compute.

- loss ratio r(C) = L_A(C) / L_B(C) (below 1: family A reaches a lower loss at the same
  compute);
- compute multiplier m(C) = C_B(L_A(C)) / C: how many times more compute family B needs to
  reach the loss family A reaches with C (above 1: A is more compute-efficient). Infinite
  when B's fitted law never gets that low (a saturating law with E_B above L_A(C)).

Intervals are percentiles over bootstrap draws. Within one joint fit (shared E) the same
draw gives both families (the draws are paired); separate fits were bootstrapped
independently, so draw i of one is paired with draw i of the other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.core import Fit, percentile_interval


def _log_inverse(fit: Fit, theta: np.ndarray, log_loss: np.ndarray, family: str | None) -> np.ndarray:
    """log C at which the law reaches loss exp(log_loss) (theta [B, p], log_loss [B, n])."""
    law = fit.law
    if fit.form == "powerlaw":
        la, b = theta[:, :1], theta[:, 1:2]
        with np.errstate(divide="ignore", invalid="ignore"):
            return law.c0 + (log_loss - la) / b
    if fit.form == "saturating":
        k = 0 if len(law.families) == 1 else law.families.index(family)
        e, a, alpha = theta[:, :1], theta[:, 1 + 2 * k:2 + 2 * k], theta[:, 2 + 2 * k:3 + 2 * k]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            excess = np.exp(log_loss) - np.exp(e)
            out = law.c0 - (np.log(np.where(excess > 0, excess, np.nan)) - a) / alpha
        return np.where(excess > 0, out, np.inf)
    raise ValueError(f"compute multipliers need a law in compute (powerlaw or saturating), not {fit.form}")


def _draws(fit_a: Fit, fit_b: Fit) -> tuple[np.ndarray, np.ndarray]:
    if fit_a is fit_b:
        return fit_a.boot, fit_b.boot
    n = min(len(fit_a.boot), len(fit_b.boot))
    return fit_a.boot[:n], fit_b.boot[:n]


def _fam(fit: Fit, family: str | None):
    return None if len(fit.families) == 1 else family


def _log_loss(fit: Fit, theta: np.ndarray, C: np.ndarray, family: str | None) -> np.ndarray:
    X = {"C": C}
    fam = _fam(fit, family)
    if fam is not None:
        X["family"] = np.full(C.size, fam)
    return fit.law.log_predict(theta, X)


def compare_at_compute(fit_a: Fit, fit_b: Fit, C, family_a: str | None = None, family_b: str | None = None,
                       level: float | None = None) -> pd.DataFrame:
    """Loss ratio L_A/L_B and compute multiplier C_B(L_A(C))/C at compute values C, each with
    a bootstrap interval. family_a/family_b name the families inside joint fits."""
    C = np.atleast_1d(np.asarray(C, dtype=float))
    level = fit_a.level if level is None else level
    fa = family_a or fit_a.families[0]
    fb = family_b or fit_b.families[0]

    def ratio_and_mult(th_a, th_b):
        la = _log_loss(fit_a, th_a, C, fa)
        lb = _log_loss(fit_b, th_b, C, fb)
        mult = _log_inverse(fit_b, th_b, la, fb) - np.log(C)[None, :]
        return np.exp(la - lb), np.exp(mult)

    r0, m0 = ratio_and_mult(fit_a.theta[None], fit_b.theta[None])
    ba, bb = _draws(fit_a, fit_b)
    out = {"family_a": fa, "family_b": fb, "form": fit_a.form, "C": C, "loss_ratio": r0[0], "multiplier": m0[0]}
    if len(ba):
        rb, mb = ratio_and_mult(ba, bb)
        out["loss_ratio_lo"], out["loss_ratio_hi"] = percentile_interval(rb, level, axis=0)
        with np.errstate(invalid="ignore"):
            # Unreachable draws count as infinite (a large stand-in keeps the interpolation finite).
            mb = np.where(np.isnan(mb) | (mb > 1e300), 1e300, mb)
            lo, hi = np.percentile(mb, [50 * (1 - level), 50 * (1 + level)], axis=0)
            out["multiplier_lo"] = np.where(lo >= 1e299, np.inf, lo)
            out["multiplier_hi"] = np.where(hi >= 1e299, np.inf, hi)
    else:
        for k in ("loss_ratio_lo", "loss_ratio_hi", "multiplier_lo", "multiplier_hi"):
            out[k] = np.full(C.size, np.nan)
    out["n_draws"] = len(ba)
    out["level"] = level
    return pd.DataFrame(out)


def compare_families(fits: dict[str, Fit], C, level: float | None = None) -> pd.DataFrame:
    """`compare_at_compute` for every ordered pair of families in `fits` (family -> Fit, where
    a joint fit may appear under several families)."""
    fams = list(fits)
    rows = [compare_at_compute(fits[a], fits[b], C, a, b, level) for a in fams for b in fams if a != b]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
