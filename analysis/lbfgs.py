"""L-BFGS run on many problems at once, vectorised with NumPy.

Scaling-law fits minimise the same small objective (5 parameters, a few hundred points) from
thousands of starts (Chinchilla's 4500-start grid) and again for every bootstrap resample.
One scipy `minimize` call per start spends most of its time in Python overhead; here all the
starts advance together, each with its own history, step and stopping test, and each
evaluation of the objective is one set of array operations over (starts x points).

The algorithm is the textbook one (Nocedal & Wright, Alg. 7.4/7.5): the two-loop recursion
over the last `m` curvature pairs, scaled by gamma = s'y / y'y, with a backtracking Armijo
line search (quadratic interpolation, step halving as a fallback). Without a Wolfe
curvature condition a pair with s'y <= 0 could make the inverse-Hessian estimate indefinite,
so such pairs are skipped; a failed line search is retried once along -g. Stopping follows
scipy's L-BFGS-B: max |g| <= gtol, or a relative
decrease (f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= ftol, or maxiter.

The result is a local optimum per start, as scipy would give; callers that need scipy's exact
stopping point polish the winner with `scipy.optimize.minimize(method="L-BFGS-B")`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

FTOL = 2.220446049250313e-09
"""scipy L-BFGS-B's default: factr 1e7 times the machine epsilon."""
GTOL = 1e-5
"""scipy L-BFGS-B's default pgtol."""
STALL = 1e-10
"""A start whose line search fails after steps that gained less than this (relative) has
reached the floating-point floor of its objective: reported 'stalled' and converged."""

Objective = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""fun(X [S, p], rows [S]) -> (f [S], g [S, p]): the objective and its gradient for the
problems `rows` (indices into the batch) at the points X. Must be vectorised over S."""


@dataclasses.dataclass
class BatchResult:
    """Outcome of `minimize_batch` for S problems with p parameters."""

    x: np.ndarray
    """[S, p] final points."""
    fun: np.ndarray
    """[S] objective at `x`."""
    grad: np.ndarray
    """[S, p] gradient at `x`."""
    nit: np.ndarray
    """[S] iterations taken."""
    converged: np.ndarray
    """[S] bool: stopped by the gradient or the relative-decrease test."""
    reason: np.ndarray
    """[S] str: 'gtol', 'ftol', 'stalled' (no decrease left at floating-point precision),
    'maxiter', 'linesearch' (no decrease found while still progressing) or 'nonfinite'."""
    nfev: int
    """Objective evaluations summed over problems."""


def minimize_batch(fun: Objective, x0: np.ndarray, *, m: int = 10, gtol: float = GTOL,
                   ftol: float = FTOL, ftol_floor: float = 1.0, maxiter: int = 15000,
                   max_ls: int = 40, c1: float = 1e-4) -> BatchResult:
    """Minimise S independent problems from the starts x0 [S, p] with L-BFGS (see module doc).

    `ftol_floor` is the floor of the relative-decrease test's denominator: 1.0 is scipy's
    rule, which makes the test absolute (2.2e-9) for objectives below 1; 0.0 makes it purely
    relative, which objectives of size ~1e-3 (Huber with delta 1e-3) need to be minimised
    along their flat valleys rather than stopped a few iterations in."""
    x = np.array(x0, dtype=np.float64, copy=True)
    if x.ndim != 2:
        raise ValueError(f"x0 must be [starts, params], got shape {x.shape}")
    S, p = x.shape
    rows = np.arange(S)
    f, g = fun(x, rows)
    f = np.array(f, dtype=np.float64)
    g = np.array(g, dtype=np.float64)
    nfev = S
    s_hist = np.zeros((m, S, p))
    y_hist = np.zeros((m, S, p))
    rho = np.zeros((m, S))  # 0 marks an empty or skipped slot: it then has no effect
    gamma = np.ones(S)
    has_pair = np.zeros(S, dtype=bool)
    nit = np.zeros(S, dtype=np.int64)
    last_rel = np.full(S, np.inf)  # relative decrease of each start's last accepted step
    reason = np.full(S, "", dtype=object)
    bad = ~np.isfinite(f) | ~np.all(np.isfinite(g), axis=1)
    reason[bad] = "nonfinite"
    done = bad | (np.max(np.abs(g), axis=1) <= gtol)
    reason[done & ~bad] = "gtol"

    it = 0
    while True:
        act = np.flatnonzero(~done)
        if act.size == 0 or it >= maxiter:
            break
        ga = g[act]
        # Two-loop recursion, newest pair first; slot k holds the pair of iteration k mod m.
        q = ga.copy()
        order = [(it - 1 - j) % m for j in range(min(it, m))]
        alphas = []
        for k in order:
            a_k = rho[k, act] * np.einsum("ij,ij->i", s_hist[k, act], q)
            q -= a_k[:, None] * y_hist[k, act]
            alphas.append(a_k)
        r = gamma[act, None] * q
        for k, a_k in zip(reversed(order), reversed(alphas)):
            b_k = rho[k, act] * np.einsum("ij,ij->i", y_hist[k, act], r)
            r += (a_k - b_k)[:, None] * s_hist[k, act]
        d = -r
        slope = np.einsum("ij,ij->i", ga, d)
        reset = ~(slope < 0) | ~np.isfinite(slope)
        if reset.any():  # not a descent direction (rounding): forget the history
            rho[:, act[reset]] = 0.0
            gamma[act[reset]] = 1.0
            has_pair[act[reset]] = False
            d[reset] = -ga[reset]
            slope[reset] = -np.einsum("ij,ij->i", ga[reset], ga[reset])
        # First step of a fresh history: length at most 1 (as scipy's first iteration).
        step = np.ones(act.size)
        fresh = ~has_pair[act]
        if fresh.any():
            norm = np.linalg.norm(d[fresh], axis=1)
            step[fresh] = np.minimum(1.0, 1.0 / np.maximum(norm, 1e-300))

        fa = f[act]
        xa = x[act]
        f_new = np.empty(act.size)
        g_new = np.empty((act.size, p))
        pending = np.arange(act.size)
        failed = np.zeros(act.size, dtype=bool)
        for _ in range(max_ls):
            xt = xa[pending] + step[pending, None] * d[pending]
            ft, gt = fun(xt, act[pending])
            nfev += pending.size
            ok = np.isfinite(ft) & np.all(np.isfinite(gt), axis=1) & (
                ft <= fa[pending] + c1 * step[pending] * slope[pending])
            f_new[pending[ok]] = ft[ok]
            g_new[pending[ok]] = gt[ok]
            if ok.all():
                pending = pending[:0]
                break
            fail = pending[~ok]
            t = step[fail]
            df = ft[~ok] - fa[fail] - slope[fail] * t
            with np.errstate(divide="ignore", invalid="ignore"):
                t_quad = -slope[fail] * t * t / (2.0 * df)
            t_quad = np.where(np.isfinite(t_quad), t_quad, 0.5 * t)
            step[fail] = np.clip(t_quad, 0.1 * t, 0.5 * t)
            pending = fail
        if pending.size:
            failed[pending] = True
            f_new[pending] = fa[pending]
            g_new[pending] = ga[pending]

        s_vec = step[:, None] * d
        s_vec[failed] = 0.0
        y_vec = g_new - ga
        sy = np.einsum("ij,ij->i", s_vec, y_vec)
        yy = np.einsum("ij,ij->i", y_vec, y_vec)
        accept = (sy > 1e-10 * yy) & (yy > 0) & ~failed
        slot = it % m
        s_hist[slot, act] = s_vec
        y_hist[slot, act] = y_vec
        rho[slot, act] = np.where(accept, 1.0 / np.where(accept, sy, 1.0), 0.0)
        gamma[act[accept]] = sy[accept] / yy[accept]
        has_pair[act[accept]] = True

        x[act[~failed]] = xa[~failed] + s_vec[~failed]
        f[act] = f_new
        g[act] = g_new
        nit[act] += 1
        it += 1

        rel = (fa - f_new) / np.maximum(np.maximum(np.abs(fa), np.abs(f_new)), max(ftol_floor, 1e-300))
        by_g = np.max(np.abs(g_new), axis=1) <= gtol
        by_f = ~failed & (rel <= ftol)
        # A failed line search with a curvature history is retried once along -g (history
        # cleared); a second failure stops the start. It stalled at the limit of floating
        # point ('stalled', counted as converged) if its last steps were already gaining
        # less than STALL relative, else the line search genuinely failed ('linesearch').
        retry = failed & has_pair[act]
        if retry.any():
            rho[:, act[retry]] = 0.0
            gamma[act[retry]] = 1.0
            has_pair[act[retry]] = False
        failed &= ~retry
        stalled = failed & (last_rel[act] <= STALL)
        last_rel[act[~failed & ~retry]] = rel[~failed & ~retry]
        stop = failed | by_g | by_f
        reason[act[failed]] = np.where(stalled[failed], "stalled", "linesearch")
        reason[act[by_f & ~failed]] = "ftol"
        reason[act[by_g & ~failed]] = "gtol"
        done[act[stop]] = True

    reason[~done] = "maxiter"
    converged = np.isin(reason, ("gtol", "ftol", "stalled"))
    return BatchResult(x=x, fun=f, grad=g, nit=nit, converged=converged, reason=reason.astype(str),
                       nfev=int(nfev))
