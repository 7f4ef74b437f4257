"""Fit 3: Chinchilla's Approach 3, L(N, D) = E + A / N^alpha + B / D^beta, exactly as
Hoffmann et al. (2022) and Besiroglu et al. (2024) describe it:

- parameters A, B, E = exp(a), exp(b), exp(e); prediction
  log L = LSE(a - alpha log N, b - beta log D, e);
- objective: the SUM over runs of Huber_delta(predicted log L - observed log L), delta = 1e-3
  (averaging instead of summing makes L-BFGS stop early);
- L-BFGS from every point of the grid alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
  a, b in {0, 5, ..., 25} (4500 starts); the best optimum is kept.

How it is fast: all 4500 starts run together in `analysis.lbfgs.minimize_batch` with the
analytic gradient, each to its own convergence (no start is screened out), and the best one
is then polished by scipy's L-BFGS-B (same objective and gradient) so the reported optimum
is what scipy reports from that start. The objective's inner loop works in preallocated
[starts, runs] buffers (fresh 10 MB temporaries would each cost a round of page faults), and
its reductions use einsum rather than BLAS: on a shared machine OpenBLAS's worker threads
spin while waiting for a core (see docs/benchmarks.md).

Gradient (r = LSE - log L, psi = Huber'(r) = clip(r, -delta, delta), w_k = softmax weights
of the three terms, computed relative to the e term: 1 / s, exp(t1) / s, exp(t2) / s): d/da = sum psi w1, d/dalpha = -sum psi w1 log N, d/db = sum psi w2,
d/dbeta = -sum psi w2 log D, d/de = sum psi w3.

Huber(r) = r^2 / 2 for |r| <= delta, else delta (|r| - delta / 2); written psi (r - psi / 2).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Mapping

import numpy as np

from analysis.core import (DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, DEFAULT_SEED, Fit, FitError, as_float_array,
                           bootstrap_counts, r_squared, residual_sigma, start_health)
from analysis.lbfgs import minimize_batch

HUBER_DELTA = 1e-3
TIGHT = {"ftol": 1e-12, "ftol_floor": 0.0, "gtol": 1e-10}
"""Stopping rule of the warm-started runs (the refinement of the best start, every bootstrap
resample): a purely relative decrease test. scipy's default test is absolute below f = 1
(|f| is floored at 1), and this objective is ~1e-3 (delta x sum |r|): warm-started from the
full-data optimum, a resample then stops after ~10 iterations, still next to where it
started, and the bootstrap intervals come out ~100x too narrow (Chinchilla's intervals were
too narrow too). With this rule every resample we checked reaches the optimum a full
4500-start search of that resample finds."""
PARAM_ORDER = ("a", "b", "e", "alpha", "beta")
"""Internal parameter order of theta."""
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "a": tuple(np.arange(0.0, 25.0 + 1e-9, 5.0)),
    "b": tuple(np.arange(0.0, 25.0 + 1e-9, 5.0)),
    "e": tuple(np.arange(-1.0, 1.0 + 1e-9, 0.5)),
    "alpha": tuple(np.arange(0.0, 2.0 + 1e-9, 0.5)),
    "beta": tuple(np.arange(0.0, 2.0 + 1e-9, 0.5)),
}
"""The published grid: 6 x 6 x 5 x 5 x 5 = 4500 starts."""
COARSE_GRID: dict[str, tuple[float, ...]] = {
    "a": (0.0, 10.0, 20.0), "b": (0.0, 10.0, 20.0), "e": (-1.0, 0.0, 1.0),
    "alpha": (0.0, 1.0, 2.0), "beta": (0.0, 1.0, 2.0),
}
"""243 starts over the same ranges (quick looks and tests)."""
GRIDS = {"full": DEFAULT_GRID, "coarse": COARSE_GRID}
MIN_TPP_SPREAD = 0.1
"""Smallest standard deviation of log(D/N) (tokens per parameter) Approach 3 accepts. Below
it N and D move together and the N and D terms cannot be told apart (0.1 is ~10% variation)."""


def grid_points(grid: Mapping[str, tuple[float, ...]] | str | None = None) -> np.ndarray:
    """[starts, 5] start points (columns in PARAM_ORDER) from a grid dict, a preset name
    ('full', 'coarse') or a spec 'alpha=0:2:0.5,beta=0:2:0.5,e=-1:1:0.5,a=0:25:5,b=0:25:5'
    (start:stop:step, inclusive; or a single value). Missing axes take the default grid's."""
    grid = parse_grid(grid)
    axes = [np.asarray(grid[k], dtype=float) for k in PARAM_ORDER]
    return np.array(list(itertools.product(*axes)), dtype=float)


def parse_grid(spec: Mapping[str, tuple[float, ...]] | str | None) -> dict[str, tuple[float, ...]]:
    if spec is None:
        return dict(DEFAULT_GRID)
    if isinstance(spec, Mapping):
        out = dict(DEFAULT_GRID)
        out.update({k: tuple(np.atleast_1d(v).astype(float)) for k, v in spec.items()})
        unknown = set(out) - set(PARAM_ORDER)
        if unknown:
            raise FitError(f"start grid: unknown axes {sorted(unknown)}; axes are {list(PARAM_ORDER)}")
        return out
    spec = str(spec).strip()
    if spec in GRIDS:
        return dict(GRIDS[spec])
    out = dict(DEFAULT_GRID)
    for part in filter(None, spec.split(",")):
        name, sep, rng = part.partition("=")
        name = name.strip()
        if not sep or name not in PARAM_ORDER:
            raise FitError(f"start grid {spec!r}: each item must be AXIS=start:stop:step or AXIS=value with AXIS "
                           f"in {list(PARAM_ORDER)}, or use a preset {sorted(GRIDS)}")
        try:
            nums = [float(v) for v in rng.split(":")]
        except ValueError:
            raise FitError(f"start grid {spec!r}: {part!r} is not numbers") from None
        if len(nums) == 1:
            out[name] = (nums[0],)
        elif len(nums) == 3 and nums[2] > 0 and nums[1] >= nums[0]:
            out[name] = tuple(np.arange(nums[0], nums[1] + 1e-9 * max(1.0, abs(nums[1])), nums[2]))
        else:
            raise FitError(f"start grid {spec!r}: {part!r} must be start:stop:step with step > 0 and stop >= start")
    return out


@dataclasses.dataclass(frozen=True)
class ChinchillaLaw:
    names = ("E", "A", "B", "alpha", "beta")
    formula = "L = E + A / N^alpha + B / D^beta"

    def log_predict(self, theta: np.ndarray, X) -> np.ndarray:
        x = np.log(np.asarray(X["N"], dtype=float))[None, :]
        y = np.log(np.asarray(X["D"], dtype=float))[None, :]
        a, b, e, al, be = (theta[:, j:j + 1] for j in range(5))
        return np.logaddexp(np.logaddexp(a - al * x, b - be * y), e)

    def natural(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        theta = np.atleast_2d(theta)
        return {"E": np.exp(theta[:, 2]), "A": np.exp(theta[:, 0]), "B": np.exp(theta[:, 1]),
                "alpha": theta[:, 3], "beta": theta[:, 4]}


class HuberObjective:
    """Sum of Huber_delta(LSE - log L) (count-weighted per resample if `weights`), with its
    gradient, vectorised over the rows of theta [S, 5]. Callable as (theta, rows) for
    `minimize_batch`; `rows` selects the weights of the problems being evaluated."""

    def __init__(self, N: np.ndarray, D: np.ndarray, L: np.ndarray, delta: float = HUBER_DELTA,
                 weights: np.ndarray | None = None):
        self.x = np.log(N)
        self.y = np.log(D)
        self.l = np.log(L)
        self.delta = float(delta)
        self.weights = weights
        self._buf: list[np.ndarray] = []

    def _buffers(self, s: int) -> list[np.ndarray]:
        if not self._buf or self._buf[0].shape[0] < s:
            self._buf = [np.empty((s, self.x.size)) for _ in range(5)]
        return [b[:s] for b in self._buf]

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None = None):
        # LSE relative to the e term: log L = e + log(1 + exp(t1) + exp(t2)) with
        # t1 = a - e - alpha log N, t2 = b - e - beta log D. No running max is needed: the
        # grid's largest t is 26, and a step that overflows gives inf, which the line
        # search rejects. The softmax weights are exp(t1)/s, exp(t2)/s and 1/s.
        s = theta.shape[0]
        e1, e2, sm, r, p = self._buffers(s)
        a, b, e, al, be = (theta[:, j:j + 1] for j in range(5))
        with np.errstate(over="ignore", invalid="ignore"):
            np.multiply(al, self.x, out=e1)
            np.subtract(a - e, e1, out=e1)
            np.exp(e1, out=e1)                     # exp(t1)
            np.multiply(be, self.y, out=e2)
            np.subtract(b - e, e2, out=e2)
            np.exp(e2, out=e2)                     # exp(t2)
            np.add(e1, e2, out=sm)
            sm += 1.0                              # s = 1 + exp(t1) + exp(t2)
            np.log(sm, out=r)
            r += e
            r -= self.l                            # r = predicted - observed log L
            np.clip(r, -self.delta, self.delta, out=p)  # psi = Huber'(r)
            # Huber(r) = psi (r - psi / 2): in r, keeping psi for the gradient.
            r -= 0.5 * p
            if self.weights is not None:
                p *= self.weights[rows] if rows is not None else self.weights
            f = np.einsum("ij,ij->i", p, r)
            np.divide(p, sm, out=p)                # psi (x w) / s
            g = np.empty((s, 5))
            g[:, 2] = p.sum(axis=1)
            np.multiply(p, e1, out=e1)
            g[:, 0] = e1.sum(axis=1)
            g[:, 3] = -np.einsum("ij,j->i", e1, self.x)
            np.multiply(p, e2, out=e2)
            g[:, 1] = e2.sum(axis=1)
            g[:, 4] = -np.einsum("ij,j->i", e2, self.y)
        return f, g

    def single(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """(f, g) at one point: for scipy.optimize.minimize(jac=True)."""
        f, g = self(np.asarray(theta, dtype=float)[None, :], None if self.weights is None else np.arange(1))
        return float(f[0]), g[0]


def tpp_spread(N: np.ndarray, D: np.ndarray) -> float:
    """Standard deviation of log(D / N): how much the tokens-per-parameter ratio varies."""
    return float(np.std(np.log(D) - np.log(N)))


def check_separable(N: np.ndarray, D: np.ndarray, min_spread: float = MIN_TPP_SPREAD, family: str = "all") -> None:
    spread = tpp_spread(N, D)
    if spread < min_spread:
        tpp = D / N
        raise FitError(
            f"family {family!r}: Approach 3 needs runs whose tokens-per-parameter ratio varies, but std of "
            f"log(D/N) is {spread:.3g} < {min_spread:g} (D/N from {tpp.min():.3g} to {tpp.max():.3g}); N and D "
            "cannot be separated: add runs at several budgets per size (an IsoFLOP grid) or fit "
            "'saturating'/'powerlaw' in compute")


def search(objective: HuberObjective, starts: np.ndarray, polish: bool = True):
    """Run every start to convergence (batched, scipy's default stopping rule), polish the
    best with scipy's L-BFGS-B, then refine it with the TIGHT rule (a no-op at a true optimum;
    it guards against a start stopped early in a flat valley). Returns (theta, best objective,
    batch result, index of the best start, polish result)."""
    res = minimize_batch(objective, starts)
    fun = np.where(np.isfinite(res.fun), res.fun, np.inf)
    best = int(np.argmin(fun))
    theta, fbest, pol = res.x[best].copy(), float(fun[best]), None
    if polish:
        from scipy import optimize  # imported here: scipy.optimize alone takes ~1 s to import

        pol = optimize.minimize(objective.single, theta, jac=True, method="L-BFGS-B")
        if np.isfinite(pol.fun) and pol.fun <= fbest:
            theta, fbest = np.asarray(pol.x, dtype=float), float(pol.fun)
    ref = minimize_batch(objective, theta[None, :], **TIGHT)
    if np.isfinite(ref.fun[0]) and ref.fun[0] <= fbest:
        theta, fbest = ref.x[0].copy(), float(ref.fun[0])
    return theta, fbest, res, best, pol


def fit_chinchilla(N, D, L, *, grid: Mapping | str | None = None, delta: float = HUBER_DELTA,
                   n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED,
                   min_tpp_spread: float = MIN_TPP_SPREAD, polish: bool = True, family: str = "all",
                   strata=None) -> Fit:
    """Approach 3 (see module doc). `grid`: start grid (default: the 4500 published starts).
    Refuses (FitError) fewer than 6 runs or runs whose D/N barely varies."""
    N = as_float_array(N, "params (N)")
    D = as_float_array(D, "tokens (D)")
    L = as_float_array(L, "loss (L)")
    if not N.size == D.size == L.size:
        raise FitError(f"params, tokens and loss have different lengths ({N.size}, {D.size}, {L.size})")
    if N.size < 6:
        raise FitError(f"family {family!r}: Approach 3 has 5 parameters and needs at least 6 runs, got {N.size}")
    check_separable(N, D, min_tpp_spread, family)
    law = ChinchillaLaw()
    starts = grid_points(grid)
    obj = HuberObjective(N, D, L, delta)
    theta, fbest, res, best, pol = search(obj, starts, polish)

    if n_boot > 0:
        counts = bootstrap_counts(n_boot, strata, N.size, seed)
        bobj = HuberObjective(N, D, L, delta, weights=counts)
        bres = minimize_batch(bobj, np.tile(theta, (n_boot, 1)), **TIGHT)
        ok = np.all(np.isfinite(bres.x), axis=1) & np.isfinite(bres.fun)
        boot = bres.x[ok]
        boot_unconv = int((~bres.converged[ok]).sum())
    else:
        ok, boot, boot_unconv = np.zeros(0, bool), np.zeros((0, 5)), 0

    g = parse_grid(grid)
    outside = []
    for j, name in enumerate(PARAM_ORDER):
        lo, hi = min(g[name]), max(g[name])
        if theta[j] <= lo or theta[j] >= hi:
            outside.append(f"{name}={theta[j]:.3g} outside the start grid [{lo:g}, {hi:g}]")
    converged = bool(res.converged[best]) or bool(pol is not None and pol.success)
    fun = np.where(np.isfinite(res.fun), res.fun, np.inf)
    health = {"converged": converged, "stop": str(res.reason[best]),
              "polish": None if pol is None else str(pol.message),
              "on_boundary": outside, "boot_failed": int(n_boot - ok.sum()),
              "boot_not_converged": boot_unconv, "tpp_spread": tpp_spread(N, D),
              **start_health(fun, law.natural(res.x), best)}
    logl = np.log(L)
    resid = law.log_predict(theta[None], {"N": N, "D": D})[0] - logl
    return Fit(form="chinchilla", law=law, theta=theta, boot=boot, n_boot=n_boot, level=level,
               n_points=int(N.size), residuals=resid, r2=r_squared(resid, logl),
               sigma=residual_sigma(resid, 5), health=health, families=(family,),
               meta={"seed": seed, "delta": delta, "n_starts": int(starts.shape[0]), "objective": fbest,
                     "residual_dof": int(N.size) - 5})
