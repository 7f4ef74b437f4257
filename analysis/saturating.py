"""Fit 2: the saturating law L = E + A_f C^-alpha_f, one (A, alpha) per family and the
irreducible loss E shared by the families that see the same data (a joint fit), or one E per
family (`shared_E=False`: each family fitted alone).

Why share E: five points per family cannot pin an irreducible loss alone (E, A and alpha
trade off along a ridge); families trained on the same corpus have the same entropy floor.

Parameterisation (as Chinchilla's Approach 3): E = exp(e), A_f = exp(a_f + alpha_f c0), and
    log L = LSE(e, a_f - alpha_f (log C - c0))
with c0 the mean log C of the data (conditioning). Objective: half the sum of squared
log-loss residuals (count-weighted for a bootstrap resample), minimised with the batched
L-BFGS of `analysis.lbfgs` from a small grid of starts (E as a fraction of the smallest
loss x alpha), every start run to convergence under a purely relative stopping rule
(`analysis.chinchilla.TIGHT`: the objective is ~1e-3, below scipy's absolute floor); the
best is kept. Bootstrap resamples start from the full-data optimum.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd

from analysis.core import (DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, DEFAULT_SEED, Fit, FitError, as_float_array,
                           bootstrap_counts, r_squared, residual_sigma, start_health)
from analysis.chinchilla import TIGHT
from analysis.lbfgs import minimize_batch

E_FRACTIONS = (1e-3, 0.3, 0.6, 0.8, 0.9, 0.95)
"""Start values of E as fractions of the smallest observed loss."""
ALPHA_STARTS = (0.01, 0.03, 0.1, 0.3, 1.0)
"""Start values of every family's alpha."""


@dataclasses.dataclass(frozen=True)
class SaturatingLaw:
    """theta = (e, a_1, alpha_1, ..., a_K, alpha_K) for the families in `families`."""

    families: tuple[str, ...]
    c0: float
    formula = "L = E + A * C^-alpha"

    @property
    def names(self) -> tuple[str, ...]:
        if len(self.families) == 1:
            return ("E", "A", "alpha")
        return ("E",) + tuple(f"{p}[{f}]" for f in self.families for p in ("A", "alpha"))

    def family_index(self, family) -> np.ndarray:
        if family is None:
            if len(self.families) != 1:
                raise ValueError(f"this joint fit covers {list(self.families)}: pass 'family'")
            return None
        fam = np.asarray(family).astype(str)
        lookup = {f: i for i, f in enumerate(self.families)}
        try:
            return np.array([lookup[f] for f in np.broadcast_to(fam, fam.shape).reshape(-1)]).reshape(fam.shape)
        except KeyError as e:
            raise ValueError(f"family {e.args[0]!r} is not in this fit ({list(self.families)})") from None

    def log_predict(self, theta: np.ndarray, X) -> np.ndarray:
        cc = np.log(np.asarray(X["C"], dtype=float)) - self.c0
        k = self.family_index(X.get("family"))
        k = np.zeros(cc.shape, dtype=int) if k is None else np.broadcast_to(k, cc.shape)
        a = theta[:, 1 + 2 * k]
        alpha = theta[:, 2 + 2 * k]
        return np.logaddexp(theta[:, :1], a - alpha * cc[None, :])

    def natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        theta = np.atleast_2d(theta)
        out = {"E": np.exp(theta[:, 0])}
        for i, name in enumerate(self.names[1:]):
            j = 1 + i
            if i % 2 == 0:  # A: undo the centring, A = exp(a + alpha c0)
                with np.errstate(over="ignore"):  # a bootstrap resample's A may be inf: an unbounded CI, reported so
                    out[name] = np.exp(theta[:, j] + theta[:, j + 1] * self.c0)
            else:
                out[name] = theta[:, j]
        return out


class _Objective:
    """0.5 sum_i w_i r_i^2 with r = log L_pred - log L, vectorised over starts/resamples."""

    def __init__(self, cc: np.ndarray, logl: np.ndarray, k: np.ndarray, K: int, weights: np.ndarray | None):
        self.cc, self.logl, self.k, self.K = cc, logl, k, K
        self.onehot = np.zeros((cc.size, K))
        self.onehot[np.arange(cc.size), k] = 1.0
        self.weights = weights

    def __call__(self, theta: np.ndarray, rows: np.ndarray):
        a = theta[:, 1 + 2 * self.k]
        alpha = theta[:, 2 + 2 * self.k]
        u = a - alpha * self.cc[None, :]
        e = theta[:, :1]
        lse = np.logaddexp(e, u)
        r = lse - self.logl[None, :]
        sig = np.exp(u - lse)
        wr = r if self.weights is None else r * self.weights[rows]
        f = 0.5 * np.einsum("sn,sn->s", wr, r)
        g = np.empty_like(theta)
        t = wr * sig
        g[:, 0] = np.sum(wr - t, axis=1)
        g[:, 1::2] = np.einsum("sn,nk->sk", t, self.onehot)  # einsum: no BLAS threads
        g[:, 2::2] = -np.einsum("sn,nk->sk", t * self.cc[None, :], self.onehot)
        return f, g


def _starts(cc, logl, k, K, min_loss) -> np.ndarray:
    rows = []
    L = np.exp(logl)
    for frac, alpha in itertools.product(E_FRACTIONS, ALPHA_STARTS):
        E = frac * min_loss
        th = [np.log(E)]
        for j in range(K):
            m = k == j
            excess = np.maximum(L[m] - E, 1e-6 * L[m])
            th += [float(np.median(np.log(excess) + alpha * cc[m])), alpha]
        rows.append(th)
    return np.array(rows)


def fit_saturating(C, L, family=None, *, shared_E: bool = True, n_boot: int = DEFAULT_BOOTSTRAP,
                   level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED) -> Fit | dict[str, Fit]:
    """Fit L = E + A_f C^-alpha_f. With `family` labels and shared_E=True: one joint Fit
    (E shared); with shared_E=False: a dict family -> Fit. Without labels: one Fit."""
    C = as_float_array(C, "compute (C)")
    L = as_float_array(L, "loss (L)")
    if C.size != L.size:
        raise FitError(f"compute and loss have different lengths ({C.size} vs {L.size})")
    fam = np.full(C.size, "all") if family is None else np.asarray(family).astype(str)
    if not shared_E and np.unique(fam).size > 1:
        return {f: _fit(C[fam == f], L[fam == f], np.full(int((fam == f).sum()), f), n_boot, level, seed)
                for f in pd.unique(fam)}
    return _fit(C, L, fam, n_boot, level, seed)


def _fit(C, L, fam, n_boot, level, seed) -> Fit:
    families = tuple(pd.unique(fam))
    K = len(families)
    k = np.array([families.index(f) for f in fam])
    for f in families:
        m = k == families.index(f)
        if m.sum() < 3 or np.unique(C[m]).size < 2:
            raise FitError(f"family {f!r}: the saturating law needs at least 3 runs at 2+ compute values "
                           f"per family, got {int(m.sum())}")
    n_params = 1 + 2 * K
    if C.size <= n_params:
        raise FitError(f"the saturating law has {n_params} parameters here but only {C.size} runs; "
                       "share E across families or fit the pure power law")
    x, logl = np.log(C), np.log(L)
    law = SaturatingLaw(families=families, c0=float(x.mean()))
    cc = x - law.c0
    min_loss = float(L.min())
    x0 = _starts(cc, logl, k, K, min_loss)
    res = minimize_batch(_Objective(cc, logl, k, K, None), x0, **TIGHT)
    fun = np.where(np.isfinite(res.fun), res.fun, np.inf)
    best = int(np.argmin(fun))
    theta = res.x[best]
    if n_boot > 0:
        counts = bootstrap_counts(n_boot, fam, C.size, seed)
        bres = minimize_batch(_Objective(cc, logl, k, K, counts), np.tile(theta, (n_boot, 1)), **TIGHT)
        ok = np.all(np.isfinite(bres.x), axis=1) & np.isfinite(bres.fun)
        boot, boot_unconv = bres.x[ok], int((~bres.converged[ok]).sum())
    else:
        ok, boot, boot_unconv = np.zeros(0, bool), np.zeros((0, theta.size)), 0
    nat = law.natural(theta[None])
    boundary = []
    if nat["E"][0] < 1e-3 * min_loss:
        boundary.append("E ~ 0 (lower bound)")
    if nat["E"][0] > 0.995 * min_loss:
        boundary.append("E ~ smallest observed loss")
    for name, v in nat.items():
        if name.startswith("alpha") and not (1e-3 < v[0] < 5.0):
            boundary.append(f"{name}={v[0]:.3g} outside (0.001, 5)")
    health = {"converged": bool(res.converged[best]), "stop": str(res.reason[best]),
              "on_boundary": boundary, "boot_failed": int(n_boot - ok.sum()),
              "boot_not_converged": boot_unconv,
              **start_health(fun, law.natural(res.x), best)}
    resid = law.log_predict(theta[None], {"C": C, "family": fam})[0] - logl
    return Fit(form="saturating", law=law, theta=theta, boot=boot, n_boot=n_boot, level=level,
               n_points=int(C.size), residuals=resid, r2=r_squared(resid, logl),
               sigma=residual_sigma(resid, n_params), health=health, families=families,
               meta={"seed": seed, "shared_E": K > 1, "residual_dof": int(C.size) - n_params})
