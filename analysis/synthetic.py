"""Synthetic data from known laws: for tests, the benchmark and demonstrations.

Every generator is seeded and returns a table with the columns the fitters read
(N, D, C, L and family where relevant). Noise is multiplicative: L x exp(noise * z).
`write_store` writes a synthetic run store (result.json, metrics.jsonl, status.json through
the store's own leases) so `griffin-figures` can be exercised without training.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
"""Hoffmann et al. (2022), rounded as published."""


def chinchilla_loss(N, D, E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28):
    return E + A / np.asarray(N, float) ** alpha + B / np.asarray(D, float) ** beta


def chinchilla_table(n: int = 240, *, seed: int = 0, noise: float = 0.01, N_range=(7e7, 1.6e10),
                     D_range=(5e9, 5e11), law: Mapping[str, float] = CHINCHILLA) -> pd.DataFrame:
    """`n` runs shaped like Chinchilla's table: N and D log-uniform over the ranges (70M-16B
    parameters, 5B-500B tokens), L from the parametric law with `noise` (1%) on the loss."""
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(*np.log(N_range), n))
    D = np.exp(rng.uniform(*np.log(D_range), n))
    L = chinchilla_loss(N, D, **law) * np.exp(noise * rng.standard_normal(n))
    return pd.DataFrame({"N": N, "D": D, "C": 6 * N * D, "L": L})


def powerlaw_table(laws: Mapping[str, tuple[float, float]], *, n: int = 8, C_range=(1e15, 1e20),
                   noise: float = 0.01, seed: int = 0, break_at: float | None = None,
                   break_exponent: float | None = None) -> pd.DataFrame:
    """Per family (a, b): n runs at log-spaced compute, L = a C^b with noise. With `break_at`,
    above that compute the exponent changes to `break_exponent` (continuous at the break)."""
    rng = np.random.default_rng(seed)
    rows = []
    for fam, (a, b) in laws.items():
        C = np.geomspace(*C_range, n)
        L = a * C ** b
        if break_at is not None:
            hi = C > break_at
            L[hi] = a * break_at ** b * (C[hi] / break_at) ** break_exponent
        L = L * np.exp(noise * rng.standard_normal(n))
        rows.append(pd.DataFrame({"family": fam, "C": C, "L": L}))
    return pd.concat(rows, ignore_index=True)


def saturating_table(E: float, laws: Mapping[str, tuple[float, float]], *, n: int = 8, C_range=(1e15, 1e20),
                     noise: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """Per family (A, alpha): n runs at log-spaced compute, L = E + A C^-alpha with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for fam, (A, alpha) in laws.items():
        C = np.geomspace(*C_range, n)
        L = (E + A * C ** -alpha) * np.exp(noise * rng.standard_normal(n))
        rows.append(pd.DataFrame({"family": fam, "C": C, "L": L}))
    return pd.concat(rows, ignore_index=True)


def isoflop_table(budgets: Sequence[float] = (1e18, 1e19, 1e20, 1e21), *, sizes_per_budget: int = 9,
                  span: float = 1.0, noise: float = 0.005, seed: int = 0,
                  law: Mapping[str, float] = CHINCHILLA, family: str = "all") -> pd.DataFrame:
    """An IsoFLOP grid: at each budget C, sizes log-spaced over +-`span` decades around the
    law's true N_opt, D = C / (6 N), L from the Chinchilla law with noise."""
    rng = np.random.default_rng(seed)
    al, be = law["alpha"], law["beta"]
    G = (al * law["A"] / (be * law["B"])) ** (1 / (al + be))
    rows = []
    for C in budgets:
        n0 = G * (C / 6) ** (be / (al + be))
        N = np.geomspace(n0 / 10 ** span, n0 * 10 ** span, sizes_per_budget)
        D = C / (6 * N)
        L = chinchilla_loss(N, D, **law) * np.exp(noise * rng.standard_normal(N.size))
        rows.append(pd.DataFrame({"family": family, "budget": f"{C:.0e}F", "N": N, "D": D, "C": C, "L": L}))
    return pd.concat(rows, ignore_index=True)


def result_record(run_id: str, family: str, size: str, *, N: float, D: float, L: float, seed: int = 0,
                  budget: str = "20tpp", budget_rule: str = "tokens_per_param", budget_value: float = 20.0,
                  status: str = "SUCCESS", corpus_fingerprint: str = "synthetic", seq_len: int = 128,
                  positions: int = 0, data_source: str = "embedded") -> dict:
    """A complete result.json's fields (run_store.RunResult, as the runner writes it)."""
    N, D = int(N), int(D)
    six = 6.0 * N * D
    emb = int(0.2 * N)
    return {
        "run_id": run_id, "status": status, "family": family, "size": size, "seed": seed, "budget": budget,
        "budget_rule": budget_rule, "budget_value": budget_value, "params_total": N,
        "params_non_embedding": N - emb, "tokens": D, "steps": max(1, D // (8 * seq_len)), "batch_size": 8,
        "seq_len": seq_len, "lr": 1e-3,
        "flops": {"6N": six, "6N_nonembed": 6.0 * (N - emb) * D, "exact": six * 1.08, "as_executed": six * 1.15},
        "flop_convention_default": "exact", "epochs": 0.5, "final_train_loss": L * 0.98,
        "heldout_loss_nats": L if status == "SUCCESS" else None, "heldout_loss_se": 0.002,
        "heldout_bits_per_byte": None if L is None else L / np.log(2),
        "heldout_loss_by_position": [float(L * (1 + 1.0 / (p + 1))) for p in range(positions)],
        "heldout_accuracy": None, "accuracy_by_length": None, "wall_time_s": 1.0, "tokens_per_s": 1000.0,
        "mfu": None, "mfu_kind": None, "mfu_chip": None, "mfu_chips": None, "versions": {"python": "3"},
        "git_sha": None, "corpus_fingerprint": corpus_fingerprint, "data_source": data_source,
    }


def training_curve(N: float, D: float, L: float, *, steps: int | None = None, curve_points: int = 6,
                   batch_size: int | None = None, noise: float = 0.0, eval_every: int | None = None,
                   seed: int = 0) -> list[dict]:
    """metrics.jsonl rows of a run ending at held-out loss L. Without `steps`: `curve_points`
    rows over 100 steps, L (1 + 2 / sqrt(step)), held-out loss at the last. With `steps`: a
    row per step, L (1 + 2 / sqrt(step) - 2 / sqrt(steps)) capped at ln 256 (byte tokens),
    times exp(noise z) (noise scaled by sqrt(4 / batch_size): a batch of 4 sequences gets
    `noise`), held-out loss (the noise-free curve) every `eval_every` steps and at the last."""
    if steps is None:
        grid, end, shape = np.linspace(1, 100, curve_points).astype(int), 100, lambda s: 1 + 2.0 / s ** 0.5
    else:
        end = int(steps)
        grid, shape = np.arange(1, end + 1), lambda s: 1 + 2.0 / s ** 0.5 - 2.0 / end ** 0.5
    rng = np.random.default_rng(seed)
    scale = noise * (np.sqrt(4.0 / batch_size) if batch_size else 1.0)
    rows = []
    for s in grid:
        clean = min(L * shape(s), np.log(256.0)) if steps is not None else L * shape(s)
        row = {"step": int(s), "tokens": float(D) * s / end, "flops": 6.0 * N * D * s / end,
               "loss": clean * float(np.exp(scale * rng.standard_normal())) if scale else clean, "lr": 1e-3}
        if s == grid[-1] or (eval_every and s % eval_every == 0):
            row["heldout_loss"] = clean
        rows.append(row)
    return rows


def write_store(root: str | os.PathLike, runs: pd.DataFrame, *, sweep: str | None = None, curve_points: int = 6,
                positions: int = 0, corpus_fingerprint: str = "synthetic", curve_noise: float = 0.0,
                eval_every: int | None = None) -> list[str]:
    """Write a run store with one run per row of `runs` (columns family, size, N, D, L and
    optionally seed, budget, budget_rule, budget_value, status: SUCCESS | DIVERGED | FAILED,
    and steps, batch_size for a metrics row per step: see `training_curve`, which
    `curve_noise` and `eval_every` go to). Returns the run ids (and writes
    sweeps/<sweep>.json when `sweep` is given)."""
    from run_store import RunStore, compute_run_id

    store = RunStore(root)
    ids = []
    for i, rec in enumerate(runs.to_dict("records")):
        r = {k: v for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))}  # concat leaves NaN
        budget = str(r.get("budget", "20tpp"))
        run_id = compute_run_id(r["family"], r["size"], budget.replace("+", ""),
                                {"i": i, "seed": int(r.get("seed", 0))}, corpus_fingerprint)
        store.init_run(run_id, {"family": r["family"], "size": r["size"]})
        status = r.get("status", "SUCCESS")
        with store.acquire(run_id) as lease:
            lease.write_status("RUNNING")
            L = float(r["L"])
            lease.append_metrics(training_curve(r["N"], r["D"], L, steps=r.get("steps"), curve_points=curve_points,
                                                batch_size=r.get("batch_size"), noise=curve_noise,
                                                eval_every=eval_every, seed=i))
            rec = result_record(run_id, r["family"], r["size"], N=r["N"], D=r["D"], L=L, seed=int(r.get("seed", 0)),
                                budget=budget, budget_rule=r.get("budget_rule", "tokens_per_param"),
                                budget_value=float(r.get("budget_value", 20.0)), status=status,
                                corpus_fingerprint=corpus_fingerprint, positions=positions)
            lease.write_result(rec)
            if status == "DIVERGED":
                lease.write_status("DIVERGED", step=50, reason="loss is NaN")
            elif status == "FAILED":
                lease.write_status("FAILED", reason="synthetic failure")
            else:
                lease.write_status("SUCCESS")
        ids.append(run_id)
    if sweep:
        store.write_sweep(sweep, {"config": {}, "grid": {}, "runs": ids})
    return ids
