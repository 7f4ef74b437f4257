"""Fit 1: the pure power law in compute, L = a C^b (a line in log-log; Kaplan's form).

Least squares of log L on log C has a closed form, and so does every bootstrap resample
(a count-weighted least squares), so the bootstrap is a few array operations.

log C is centred (c0 = mean log C of the data) inside the fit: the intercept at the data's
centre is nearly uncorrelated with the slope, which keeps the arithmetic well conditioned at
C ~ 1e20. The reported `a` is the coefficient at C = 1 (a = exp(intercept - b c0)).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from analysis.core import (DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, DEFAULT_SEED, Fit, FitError, as_float_array,
                           bootstrap_counts, r_squared, residual_sigma)


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """log L = la + b (log C - c0); theta = (la, b)."""

    c0: float
    names = ("a", "b")
    formula = "L = a * C^b"

    def log_predict(self, theta: np.ndarray, X) -> np.ndarray:
        c = np.log(np.asarray(X["C"], dtype=float))
        return theta[:, :1] + theta[:, 1:2] * (c[None, :] - self.c0)

    def natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        theta = np.atleast_2d(theta)
        return {"a": np.exp(theta[:, 0] - theta[:, 1] * self.c0), "b": theta[:, 1]}


def weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray, x0: float = 0.0) -> np.ndarray:
    """Least-squares lines y = i + s (x - x0) for each row of weights w [B, n]: [B, 2] (i, s).
    y is [n] (shared) or [B, n] (one per row). Rows whose weighted x has no spread give NaN."""
    w = np.atleast_2d(w)
    y2 = np.broadcast_to(y, w.shape)
    sw = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = np.einsum("bn,n->b", w, x) / sw
        my = np.einsum("bn,bn->b", w, y2) / sw
    dx = x[None, :] - mx[:, None]
    sxx = np.einsum("bn,bn->b", w, dx * dx)
    sxy = np.einsum("bn,bn->b", w, dx * y2)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(sxx > 1e-12 * max(1.0, float(np.ptp(x)) ** 2), sxy / sxx, np.nan)
    return np.stack([my + slope * (x0 - mx), slope], axis=1)


def thirds_exponents(C: np.ndarray, L: np.ndarray) -> list[float]:
    """Exponent b fitted on the lower, middle and upper thirds of the compute range (a
    curvature check: a straight power law gives three similar values)."""
    order = np.argsort(C)
    out = []
    for part in np.array_split(order, 3):
        x, y = np.log(C[part]), np.log(L[part])
        out.append(float(weighted_line(x, y, np.ones((1, x.size)))[0, 1]) if np.ptp(x) > 0 else float("nan"))
    return out


def fit_powerlaw(C, L, *, n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL,
                 seed: int = DEFAULT_SEED, family: str = "all") -> Fit:
    """Fit L = a C^b by least squares in log-log. Needs at least 3 runs at 2 or more
    distinct compute values."""
    C = as_float_array(C, "compute (C)")
    L = as_float_array(L, "loss (L)")
    if C.size != L.size:
        raise FitError(f"compute and loss have different lengths ({C.size} vs {L.size})")
    if C.size < 3:
        raise FitError(f"family {family!r}: a power law needs at least 3 runs, got {C.size}")
    if np.unique(C).size < 2:
        raise FitError(f"family {family!r}: all runs have the same compute; a law in C needs 2+ values")
    x, y = np.log(C), np.log(L)
    law = PowerLaw(c0=float(x.mean()))
    theta = weighted_line(x, y, np.ones((1, x.size)), law.c0)[0]
    counts = bootstrap_counts(n_boot, None, x.size, seed) if n_boot > 0 else np.zeros((0, x.size))
    boot = weighted_line(x, y, counts, law.c0) if n_boot > 0 else np.zeros((0, 2))
    ok = np.all(np.isfinite(boot), axis=1)
    resid = law.log_predict(theta[None], {"C": C})[0] - y
    health = {"converged": True, "on_boundary": [], "boot_failed": int((~ok).sum()),
              "method": "closed-form least squares"}
    if C.size >= 9:
        health["thirds_exponents"] = thirds_exponents(C, L)
    return Fit(form="powerlaw", law=law, theta=theta, boot=boot[ok], n_boot=n_boot, level=level,
               n_points=int(C.size), residuals=resid, r2=r_squared(resid, y),
               dof=int(C.size) - 2, sigma=residual_sigma(resid, 2), health=health, families=(family,), meta={"seed": seed})
