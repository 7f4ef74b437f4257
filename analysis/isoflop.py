"""Fit 4: Chinchilla's Approach 2 (IsoFLOP profiles).

Runs are grouped by FLOP budget (the run store's budget label, or by clustering compute
values within `rel_tol`). Per budget C_j, a parabola L = p0 + p1 t + p2 t^2 in t = log N - t_j
(t_j the budget's mean log N) is fitted by least squares to the final losses; its minimum
gives N_opt(C_j) = exp(t_j - p1 / (2 p2)) (only when p2 > 0). D_opt(C_j) = C_j / (k_j N_opt)
with k_j the budget's median C / (N D) (FLOPs per parameter per token under the chosen
convention; 6 when tokens are not given). Power laws are then fitted by least squares in
log-log across budgets: N_opt = k_N C^a and D_opt = k_D C^b (a + b = 1 when k_j is constant).

Bootstrap: runs are resampled within each budget; every resample refits every parabola (a
count-weighted least squares, closed form) and both power laws. A budget whose resampled
parabola has no minimum (p2 <= 0, or fewer than 3 distinct sizes drawn) is left out of that
resample's power law.

The parabola is an approximation: L(log N) at fixed C is a sum of two exponentials in
log N, not a parabola, so even noise-free data give a biased N_opt; `parabola_bias`
measures it (see docs/analysis.md for the figures).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from analysis.core import (DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, DEFAULT_SEED, Fit, FitError, as_float_array,
                           bootstrap_counts, r_squared, residual_sigma)
from analysis.powerlaw import weighted_line

BUDGET_REL_TOL = 0.05
"""Compute values within 5% of each other form one budget when no budget labels are given."""


def group_budgets(C: np.ndarray, rel_tol: float = BUDGET_REL_TOL) -> np.ndarray:
    """Budget index per run: runs whose sorted compute values are within `rel_tol` of their
    neighbour share a budget."""
    C = np.asarray(C, dtype=float)
    order = np.argsort(C)
    lc = np.log(C[order])
    breaks = np.concatenate([[0], np.cumsum(np.diff(lc) > np.log1p(rel_tol))])
    out = np.empty(C.size, dtype=int)
    out[order] = breaks
    return out


def budget_labels(C, budget=None, rel_tol: float = BUDGET_REL_TOL) -> np.ndarray:
    """The budget label of each run: the given labels, else 'C~<geometric mean>' of the
    clusters found by `group_budgets`."""
    if budget is not None:
        return np.asarray(budget).astype(str)
    C = np.asarray(C, dtype=float)
    groups = group_budgets(C, rel_tol)
    names = {g: f"C~{np.exp(np.mean(np.log(C[groups == g]))):.3g}" for g in np.unique(groups)}
    return np.array([names[g] for g in groups])


@dataclasses.dataclass(frozen=True)
class IsoFlopLaw:
    """theta = (iN, a, iD, b): log N_opt = iN + a (log C - c0), log D_opt = iD + b (log C - c0).
    `log_predict` gives log N_opt (the fitted quantity); `log_d_opt` gives log D_opt."""

    c0: float
    names = ("a", "b", "k_N", "k_D")
    quantity = "log N_opt"
    formula = "N_opt = k_N * C^a, D_opt = k_D * C^b (IsoFLOP parabola minima)"

    def log_predict(self, theta: np.ndarray, X) -> np.ndarray:
        c = np.log(np.asarray(X["C"], dtype=float))[None, :] - self.c0
        return theta[:, :1] + theta[:, 1:2] * c

    def log_d_opt(self, theta: np.ndarray, C) -> np.ndarray:
        c = np.log(np.asarray(C, dtype=float))[None, :] - self.c0
        return theta[:, 2:3] + theta[:, 3:4] * c

    def natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        theta = np.atleast_2d(theta)
        with np.errstate(over="ignore"):  # a resample with a near-flat parabola can give huge k
            return {"a": theta[:, 1], "b": theta[:, 3], "k_N": np.exp(theta[:, 0] - theta[:, 1] * self.c0),
                    "k_D": np.exp(theta[:, 2] - theta[:, 3] * self.c0)}


@dataclasses.dataclass
class IsoFlopFit(Fit):
    """A Fit whose law predicts N_opt(C) (residuals, R^2 and sigma are of log N_opt across
    budgets), plus the per-budget parabolas."""

    budgets: pd.DataFrame | None = None
    """One row per budget: budget (label), C, n_runs, n_sizes, p0, p1, p2, t_mean, N_opt, D_opt, L_opt,
    N_lo, N_hi (sampled sizes), inside (minimum within them), used, note, parabola_r2."""

    def n_opt(self, C, theta: np.ndarray | None = None) -> np.ndarray:
        return self.predict({"C": C}, theta)

    def d_opt(self, C, theta: np.ndarray | None = None) -> np.ndarray:
        theta = self.theta if theta is None else np.asarray(theta)
        out = np.exp(self.law.log_d_opt(np.atleast_2d(theta), C))
        return out[0] if np.ndim(theta) == 1 else out

    def parabola(self, budget_row: pd.Series, N) -> np.ndarray:
        """The fitted parabola of one budget (a row of `budgets`) at sizes N: loss."""
        t = np.log(np.asarray(N, dtype=float)) - budget_row["t_mean"]
        return budget_row["p0"] + budget_row["p1"] * t + budget_row["p2"] * t * t


def _parabolas(t: np.ndarray, L: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares parabolas for each row of weights w [B, n]: [B, 3] (p0, p1, p2),
    NaN where the design is singular (fewer than 3 distinct sizes drawn)."""
    X = np.stack([np.ones_like(t), t, t * t], axis=1)
    xtwx = np.einsum("bn,ni,nj->bij", w, X, X)
    xtwy = np.einsum("bn,ni,n->bi", w, X, L)
    out = np.full((w.shape[0], 3), np.nan)
    # Singular when fewer than 3 distinct t carry weight; check that directly.
    distinct = np.zeros(w.shape[0], dtype=int)
    for v in np.unique(t):
        distinct += (w[:, t == v].sum(axis=1) > 0)
    ok = distinct >= 3
    if ok.any():
        out[ok] = np.linalg.solve(xtwx[ok], xtwy[ok][..., None])[..., 0]
    return out


def _minima(p: np.ndarray, t_mean: float) -> np.ndarray:
    """log N at each parabola's minimum, NaN where there is none (p2 <= 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p[:, 2] > 0, t_mean - p[:, 1] / (2 * p[:, 2]), np.nan)


def fit_isoflop(N, C, L, *, D=None, budget=None, n_boot: int = DEFAULT_BOOTSTRAP,
                level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED, rel_tol: float = BUDGET_REL_TOL,
                family: str = "all") -> IsoFlopFit:
    """Approach 2 (see module doc). `budget`: labels grouping the runs (default: cluster C)."""
    N = as_float_array(N, "params (N)")
    C = as_float_array(C, "compute (C)")
    L = as_float_array(L, "loss (L)")
    if not N.size == C.size == L.size:
        raise FitError(f"params, compute and loss have different lengths ({N.size}, {C.size}, {L.size})")
    D = None if D is None else as_float_array(D, "tokens (D)")
    labels = budget_labels(C, budget, rel_tol)
    names, groups = np.unique(labels, return_inverse=True)
    x = np.log(N)
    rows: list[dict[str, Any]] = []
    idx_by_budget = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        Cj = float(np.exp(np.mean(np.log(C[idx]))))
        kj = float(np.median(C[idx] / (N[idx] * D[idx]))) if D is not None else 6.0
        t_mean = float(x[idx].mean())
        row = {"budget": names[g], "C": Cj, "n_runs": int(idx.size), "n_sizes": int(np.unique(N[idx]).size), "k": kj,
               "t_mean": t_mean, "N_lo": float(N[idx].min()), "N_hi": float(N[idx].max()),
               "p0": np.nan, "p1": np.nan, "p2": np.nan, "N_opt": np.nan, "D_opt": np.nan, "L_opt": np.nan,
               "inside": False, "used": False, "note": "", "parabola_r2": np.nan}
        if row["n_sizes"] < 3:
            row["note"] = f"only {row['n_sizes']} distinct sizes (a parabola needs 3)"
        else:
            p = _parabolas(x[idx] - t_mean, L[idx], np.ones((1, idx.size)))[0]
            row.update(p0=p[0], p1=p[1], p2=p[2])
            t = x[idx] - t_mean
            fitted = p[0] + p[1] * t + p[2] * t * t
            row["parabola_r2"] = r_squared(fitted - L[idx], L[idx])
            if not p[2] > 0:
                row["note"] = "parabola opens downward: no minimum"
            else:
                xo = _minima(p[None], t_mean)[0]
                row.update(N_opt=float(np.exp(xo)), L_opt=float(p[0] - p[1] ** 2 / (4 * p[2])), used=True)
                row["D_opt"] = Cj / (kj * row["N_opt"])
                row["inside"] = bool(row["N_lo"] <= row["N_opt"] <= row["N_hi"])
                if not row["inside"]:
                    row["note"] = "minimum outside the sampled sizes (extrapolated)"
        rows.append(row)
        idx_by_budget.append(idx)
    budgets = pd.DataFrame(rows).sort_values("C", ignore_index=True)
    order = np.argsort([r["C"] for r in rows])
    idx_by_budget = [idx_by_budget[i] for i in order]
    used = budgets["used"].to_numpy()
    if used.sum() < 2:
        notes = "; ".join(f"C={r.C:.3g}: {r.note}" for r in budgets.itertuples() if r.note)
        raise FitError(f"family {family!r}: Approach 2 needs at least 2 FLOP budgets with 3+ sizes and a "
                       f"convex IsoFLOP profile, got {int(used.sum())} of {len(budgets)} ({notes or 'no budgets'})")
    logC = np.log(budgets["C"].to_numpy())
    law = IsoFlopLaw(c0=float(logC[used].mean()))
    logN = np.log(budgets["N_opt"].to_numpy())
    logD = np.log(budgets["D_opt"].to_numpy())
    w = used[None, :].astype(float)
    lineN = weighted_line(logC, np.where(used, logN, 0.0), w, law.c0)[0]
    lineD = weighted_line(logC, np.where(used, logD, 0.0), w, law.c0)[0]
    theta = np.array([lineN[0], lineN[1], lineD[0], lineD[1]])

    boot = np.zeros((0, 4))
    if n_boot > 0:
        counts = bootstrap_counts(n_boot, groups, N.size, seed)
        bN = np.full((n_boot, len(budgets)), np.nan)
        for j, idx in enumerate(idx_by_budget):
            if budgets.loc[j, "n_sizes"] < 3:
                continue
            tm = budgets.loc[j, "t_mean"]
            p = _parabolas(x[idx] - tm, L[idx], counts[:, idx])
            bN[:, j] = _minima(p, tm)
        k = budgets["k"].to_numpy()
        bD = logC[None, :] - np.log(k)[None, :] - bN
        valid = np.isfinite(bN)
        wv = valid.astype(float)
        bl_N = weighted_line(logC, np.where(valid, bN, 0.0), wv, law.c0)
        bl_D = weighted_line(logC, np.where(valid, bD, 0.0), wv, law.c0)
        boot = np.column_stack([bl_N[:, 0], bl_N[:, 1], bl_D[:, 0], bl_D[:, 1]])
        boot = boot[np.all(np.isfinite(boot), axis=1)]
    resid = (law.log_predict(theta[None], {"C": budgets["C"].to_numpy()})[0] - logN)[used]
    outside = [f"C={r.C:.3g}: N_opt {r.N_opt:.3g} outside [{r.N_lo:.3g}, {r.N_hi:.3g}]"
               for r in budgets.itertuples() if r.used and not r.inside]
    health = {"converged": True, "on_boundary": outside, "boot_failed": int(n_boot - len(boot)),
              "n_budgets": int(len(budgets)), "n_budgets_used": int(used.sum()),
              "min_parabola_r2": float(budgets.loc[used, "parabola_r2"].min()),
              "method": "closed-form parabolas and least-squares lines"}
    return IsoFlopFit(form="isoflop", law=law, theta=theta, boot=boot, n_boot=n_boot, level=level,
                      n_points=int(budgets.loc[used, "n_runs"].sum()), residuals=resid, r2=r_squared(resid, logN[used]),
                      sigma=residual_sigma(resid, 2), health=health, families=(family,),
                      meta={"seed": seed, "residual_dof": int(used.sum()) - 2}, budgets=budgets)


def parabola_bias(E: float = 1.69, A: float = 406.4, B: float = 410.7, alpha: float = 0.34, beta: float = 0.28,
                  budgets=(1e18, 1e19, 1e20, 1e21, 1e22), sizes_per_budget: int = 9, span: float = 1.0,
                  design: str = "centred", sizes=None) -> dict[str, Any]:
    """Bias of Approach 2 on noise-free data from the Chinchilla law (C = 6 N D).

    design='centred': at each budget, `sizes_per_budget` sizes log-spaced over +-`span`
    decades around the true N_opt (the best case: only the profile's shape biases N_opt, by
    the same factor at every budget, so the exponent is unbiased). design='fixed': one set
    of sizes shared by all budgets (`sizes`, default 9 sizes log-spaced over the range of
    true optima widened by `span` decades): as the optimum moves across the fixed window the
    bias changes with C, and the exponent is biased too.

    Returns the true and estimated exponents a, b and per-budget N_opt ratios (estimate/true)."""
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    a_true, b_true = beta / (alpha + beta), alpha / (alpha + beta)
    budgets = np.asarray(budgets, dtype=float)
    n_true = G * (budgets / 6) ** a_true
    if design == "fixed" and sizes is None:
        sizes = np.geomspace(n_true.min() / 10 ** span, n_true.max() * 10 ** span, sizes_per_budget)
    Ns, Cs = [], []
    for C, n0 in zip(budgets, n_true):
        grid = (np.geomspace(n0 / 10 ** span, n0 * 10 ** span, sizes_per_budget) if design == "centred"
                else np.asarray(sizes, dtype=float))
        Ns.append(grid)
        Cs.append(np.full(grid.size, C))
    N = np.concatenate(Ns)
    C = np.concatenate(Cs)
    D = C / (6 * N)
    L = E + A / N ** alpha + B / D ** beta
    fit = fit_isoflop(N, C, L, D=D, n_boot=0)
    used = fit.budgets["used"].to_numpy()
    ratio = fit.budgets["N_opt"].to_numpy() / n_true
    p = fit.params()
    return {"design": design, "span_decades": span, "sizes_per_budget": sizes_per_budget,
            "a_true": a_true, "a_est": p["a"], "a_bias": p["a"] - a_true,
            "b_true": b_true, "b_est": p["b"], "b_bias": p["b"] - b_true,
            "n_opt_ratio": ratio, "n_opt_ratio_used": ratio[used], "budgets": budgets,
            "inside": fit.budgets["inside"].to_numpy()}
