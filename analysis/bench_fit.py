"""Benchmark of the Approach-3 fit (a figure, not a test): `python -m analysis.bench_fit`.

On a 240-run synthetic table shaped like Chinchilla's (N 70M-16B, D 5B-500B, 1% noise on the
loss, true E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28) it times, in one process:

1. naive: scipy.optimize.minimize(method="L-BFGS-B") from each of the 4500 starts, with the
   objective written plainly (np.logaddexp, scipy.special.huber) and numeric gradients
   (scipy.special.logsumexp instead makes it ~1.6x slower still);
2. ours: `analysis.chinchilla.search`: the 4500 starts as one batched L-BFGS with the
   analytic gradient, every start run to convergence, the best polished by scipy;
3. the bootstrap: 1000 resamples of whole runs, each warm-started from the optimum (batched).

It prints both optima (they must agree), the times and their ratio, and the machine.
`run()` returns the same figures as a dict (for a `griffin-bench` entry).

BLAS threads: the command runs with OPENBLAS_NUM_THREADS=1 (it re-executes itself with it
set; `--blas-threads default` keeps the library's choice). On a shared 2-core machine
OpenBLAS's worker threads spin while waiting for a core, and the naive fit's thousands of
tiny BLAS calls then took 9x longer (measured: 50 starts in 23.9 s vs 2.7 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from analysis.chinchilla import HUBER_DELTA, TIGHT, ChinchillaLaw, HuberObjective, grid_points, search
from analysis.core import bootstrap_counts
from analysis.lbfgs import minimize_batch
from analysis.synthetic import CHINCHILLA, chinchilla_table


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or "unknown"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": usable, "load_avg_1min": load,
            "python": platform.python_version(), "numpy": np.__version__,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}


def naive_fit(N: np.ndarray, D: np.ndarray, L: np.ndarray, starts: np.ndarray, delta: float = HUBER_DELTA):
    """The straightforward version: one scipy L-BFGS-B per start, numeric gradients."""
    from scipy.optimize import minimize
    from scipy.special import huber

    x, y, logl = np.log(N), np.log(D), np.log(L)

    def objective(p):
        a, b, e, alpha, beta = p
        pred = np.logaddexp(np.logaddexp(a - alpha * x, b - beta * y), e)
        return np.sum(huber(delta, pred - logl))

    best = None
    for s in starts:
        r = minimize(objective, s, method="L-BFGS-B")
        if best is None or r.fun < best.fun:
            best = r
    return best.x, float(best.fun)


def _natural(theta: np.ndarray) -> dict[str, float]:
    return {k: float(v[0]) for k, v in ChinchillaLaw().natural(theta[None]).items()}


def run(n_runs: int = 240, seed: int = 0, noise: float = 0.01, naive: bool = True, naive_starts: int | None = None,
        n_boot: int = 1000, repeats: int = 3) -> dict[str, Any]:
    """Time the naive and the batched 4500-start fits and the bootstrap (see module doc).

    The machine may be shared, so the two are interleaved: `repeats` rounds, each timing our
    fit once and then a 1/repeats share of the naive fit's starts; wall and CPU (process)
    times are both kept. `naive_starts` limits the naive fit to a subset (its time is then
    scaled to 4500 and flagged as an estimate)."""
    t = chinchilla_table(n_runs, seed=seed, noise=noise)
    N, D, L = (t[c].to_numpy() for c in ("N", "D", "L"))
    starts = grid_points("full")
    obj = HuberObjective(N, D, L)
    out: dict[str, Any] = {"n_runs": n_runs, "n_starts": int(len(starts)), "noise": noise, "truth": dict(CHINCHILLA),
                           "machine": machine()}
    rounds = max(1, repeats)
    sub = starts if not naive_starts else starts[np.linspace(0, len(starts) - 1, naive_starts).astype(int)]
    chunks = np.array_split(np.arange(len(sub)), rounds)
    wall, cpu, n_wall, n_cpu, n_best = [], [], 0.0, 0.0, []
    for r in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        theta, fbest, res, best, pol = search(HuberObjective(N, D, L), starts)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        if naive:
            w0, c0 = time.perf_counter(), time.process_time()
            n_best.append(naive_fit(N, D, L, sub[chunks[r]]))
            n_wall += time.perf_counter() - w0
            n_cpu += time.process_time() - c0
    out["ours"] = {"seconds_best": min(wall), "seconds_median": float(np.median(wall)),
                   "cpu_seconds_median": float(np.median(cpu)), "objective": fbest,
                   "params": _natural(theta), "evaluations_per_start": res.nfev / len(starts),
                   "iterations_max": int(res.nit.max()), "iterations_median": float(np.median(res.nit)),
                   "starts_converged": int(res.converged.sum())}

    counts = bootstrap_counts(n_boot, None, n_runs, seed)
    w0, c0 = time.perf_counter(), time.process_time()
    bres = minimize_batch(HuberObjective(N, D, L, weights=counts), np.tile(theta, (n_boot, 1)), **TIGHT)
    out["bootstrap"] = {"resamples": n_boot, "seconds": time.perf_counter() - w0,
                        "cpu_seconds": time.process_time() - c0, "converged": int(bres.converged.sum())}

    if naive:
        ntheta, nfun = min(n_best, key=lambda r: r[1])
        scale = len(starts) / len(sub)
        nat_o, nat_n = out["ours"]["params"], _natural(ntheta)
        out["naive"] = {"seconds": n_wall * scale, "cpu_seconds": n_cpu * scale, "measured_seconds": n_wall,
                        "starts_run": int(len(sub)), "estimated": len(sub) != len(starts), "objective": nfun,
                        "params": nat_n, "objective_analytic": float(obj.single(ntheta)[0])}
        out["speedup_median"] = out["naive"]["seconds"] / out["ours"]["seconds_median"]
        out["speedup_cpu"] = out["naive"]["cpu_seconds"] / out["ours"]["cpu_seconds_median"]
        out["max_rel_param_diff"] = max(abs(nat_o[k] - nat_n[k]) / abs(nat_n[k]) for k in nat_o)
        out["objective_diff"] = out["ours"]["objective"] - out["naive"]["objective_analytic"]
    out["machine"]["load_avg_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return out


def report(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [f"Approach-3 fit: {out['n_runs']} runs, {out['n_starts']} starts, {out['noise']:.0%} noise",
             f"machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), 1-min load "
             f"{m['load_avg_1min']:.2f} at start, {m.get('load_avg_1min_end', float('nan')):.2f} at end, "
             f"BLAS threads {m['blas_threads']}"]
    o = out["ours"]
    lines.append(f"ours (batched L-BFGS, analytic gradient, scipy polish): wall best {o['seconds_best']:.2f} s, "
                 f"median {o['seconds_median']:.2f} s, CPU {o['cpu_seconds_median']:.2f} s; "
                 f"{o['evaluations_per_start']:.1f} evaluations per start, "
                 f"{o['starts_converged']} of {out['n_starts']} starts converged")
    if "naive" in out:
        n = out["naive"]
        lines.append(f"naive (scipy L-BFGS-B per start, numeric gradients): wall {n['seconds']:.1f} s, "
                     f"CPU {n['cpu_seconds']:.1f} s"
                     + (f" (estimated from {n['starts_run']} starts: {n['measured_seconds']:.1f} s)"
                        if n["estimated"] else ""))
        lines.append(f"speed-up: {out['speedup_median']:.1f}x wall (median), {out['speedup_cpu']:.1f}x CPU")
    b = out["bootstrap"]
    lines.append(f"bootstrap: {b['resamples']} resamples in {b['seconds']:.2f} s wall, {b['cpu_seconds']:.2f} s CPU "
                 f"({b['converged']} converged)")
    names = list(o["params"])
    lines.append("optimum    " + " ".join(f"{k:>10}" for k in names) + "   objective")
    lines.append("truth      " + " ".join(f"{out['truth'][k]:>10.4g}" for k in names))
    lines.append("ours       " + " ".join(f"{o['params'][k]:>10.5g}" for k in names) + f"   {o['objective']:.10g}")
    if "naive" in out:
        n = out["naive"]
        lines.append("naive      " + " ".join(f"{n['params'][k]:>10.5g}" for k in names)
                     + f"   {n['objective_analytic']:.10g}")
        lines.append(f"max relative parameter difference {out['max_rel_param_diff']:.2e}; objective difference "
                     f"(ours - naive) {out['objective_diff']:.2e}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.bench_fit", description=__doc__.split("\n")[0])
    p.add_argument("--no-naive", action="store_true", help="skip the naive scipy fit (~1-2 minutes)")
    p.add_argument("--naive-starts", type=int, default=None, help="run the naive fit on this many starts only")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (ours once + a share of naive)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    p.add_argument("--blas-threads", default="1", help="OpenBLAS threads (default 1; 'default': the library's)")
    a = p.parse_args(argv)
    if a.blas_threads != "default" and os.environ.get("OPENBLAS_NUM_THREADS") != a.blas_threads:
        # BLAS reads its thread count when it loads: start again with it set.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": a.blas_threads, "OMP_NUM_THREADS": a.blas_threads}
        args = list(sys.argv[1:]) if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, "-m", "analysis.bench_fit", *args], env)
    out = run(seed=a.seed, naive=not a.no_naive, naive_starts=a.naive_starts, n_boot=a.bootstrap, repeats=a.repeats)
    print(report(out))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
