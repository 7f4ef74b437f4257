"""Everything `griffin-figures` computes from a set of runs: every fit under the chosen FLOP
convention, refusals with their reasons, frontiers, family comparisons, the exponents under
every convention, seed noise; and the fit table as CSV and Markdown.

Which runs each fit uses:
- laws in compute (powerlaw, saturating): the runs that are not on a FLOP-budget IsoFLOP
  grid; if every run is on one, the best run of each (family, budget): the loss-compute
  envelope. The saturating fit shares E across families when all runs saw the same corpus.
- chinchilla (Approach 3): all runs of a family (it needs D/N to vary; a ladder at a fixed
  tokens-per-parameter ratio is refused, and the refusal is reported, not hidden).
- isoflop (Approach 2): runs with trainer.budget.rule=flops, grouped by budget label.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis.compare import compare_families
from analysis.core import DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, DEFAULT_SEED, Fit
from analysis.fitting import Columns, TableError, fit_form, prepare_table
from analysis.frontier import exponents, frontier
from analysis.load import Runs, conventions_in, corpus_entropies, fit_frame

EXPONENT_NAMES = {"powerlaw": ("b",), "saturating": ("alpha",), "chinchilla": ("alpha", "beta"),
                  "isoflop": ("a", "b")}


@dataclasses.dataclass
class Report:
    convention: str
    frame: pd.DataFrame
    """The runs as a fit table (fit_frame) under `convention`."""
    fits: dict[str, dict[str, Fit]]
    """form -> family -> Fit."""
    refused: dict[str, str]
    """form -> why it was not fitted."""
    frontiers: pd.DataFrame
    comparisons: pd.DataFrame
    conventions: pd.DataFrame
    seed_noise: pd.DataFrame
    entropies: dict | None
    notes: list[str]
    level: float

    def table(self) -> pd.DataFrame:
        """Every fitted constant with its interval (one row per form, family, parameter)."""
        frames = []
        for form, by_family in self.fits.items():
            for fit in _unique(by_family.values()):
                t = fit.table(self.level)
                t["convention"] = self.convention
                frames.append(t)
            if form in ("chinchilla", "isoflop"):
                for fam, fit in by_family.items():
                    for name, (est, lo, hi) in exponents(fit).items():
                        frames.append(pd.DataFrame([{
                            "form": form, "family": fam, "parameter": f"frontier_{name}", "estimate": est,
                            "ci_lo": lo, "ci_hi": hi, "level": self.level, "n_points": fit.n_points,
                            "n_boot": len(fit.boot), "r2": fit.r2, "sigma_log": fit.sigma,
                            "convention": self.convention}]))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def checks(self) -> pd.DataFrame:
        rows = [fit.checks() for by_family in self.fits.values() for fit in _unique(by_family.values())]
        rows += [{"form": form, "family": "", "refused": msg} for form, msg in self.refused.items()]
        return pd.DataFrame(rows)


def _unique(fits) -> list[Fit]:
    out, seen = [], set()
    for f in fits:
        if id(f) not in seen:
            seen.add(id(f))
            out.append(f)
    return out


def compute_law_rows(frame: pd.DataFrame, notes: list[str] | None = None) -> pd.DataFrame:
    """The runs a law in compute is fitted to (see the module doc)."""
    rule = frame.get("budget_rule")
    if rule is None or not (rule == "flops").any():
        return frame
    if (rule != "flops").any():
        if notes is not None:
            notes.append("laws in compute use the runs outside the IsoFLOP grid")
        return frame[rule != "flops"].reset_index(drop=True)
    if notes is not None:
        notes.append("laws in compute use the best run of each (family, FLOP budget)")
    idx = frame.groupby(["family", "budget"], sort=False)["L"].idxmin()
    return frame.loc[idx].reset_index(drop=True)


def _fit_frame_form(frame: pd.DataFrame, form: str, convention: str, kw: Mapping[str, Any],
                    shared_E: bool) -> dict[str, Fit]:
    cols = Columns(family="family", seed="seed", budget="budget" if form == "isoflop" else None)
    std = prepare_table(frame, form, cols, source=f"runs ({convention})")
    fits = fit_form(std, form, cols, source=f"runs ({convention})", shared_E=shared_E, prepared=True, **kw)
    for fit in fits.values():
        fit.meta["convention"] = convention
    return fits


def analyse(runs: Runs | pd.DataFrame, convention: str = "exact", *, forms=("powerlaw", "saturating", "chinchilla", "isoflop"),
            n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED,
            grid: Any = None, shared_E: bool | None = None, convention_table: bool = True,
            extrapolate: bool = True) -> Report:
    """Fit every form to the runs (see the module doc) and collect the report."""
    table = runs.runs if isinstance(runs, Runs) else runs
    frame = fit_frame(table, convention)
    notes: list[str] = []
    if shared_E is None:
        prints = set(table["corpus_fingerprint"].astype(str)) if "corpus_fingerprint" in table else set()
        shared_E = len(prints) <= 1
        if not shared_E:
            notes.append("runs saw different corpora: E is fitted per family")
    kw = dict(n_boot=n_boot, level=level, seed=seed, extrapolate=extrapolate)
    fits: dict[str, dict[str, Fit]] = {}
    refused: dict[str, str] = {}
    law_rows = compute_law_rows(frame, notes)
    iso_rows = frame[frame["budget_rule"] == "flops"] if "budget_rule" in frame else frame.iloc[:0]
    for form in forms:
        try:
            if form in ("powerlaw", "saturating"):
                fits[form] = _fit_frame_form(law_rows, form, convention, kw, shared_E)
            elif form == "chinchilla":
                fits[form] = _fit_frame_form(frame, form, convention, {**kw, "grid": grid}, shared_E)
            elif form == "isoflop":
                if not len(iso_rows):
                    raise TableError("no runs with a FLOP budget (trainer.budget.rule=flops): no IsoFLOP profiles")
                fits[form] = _fit_frame_form(iso_rows.reset_index(drop=True), form, convention, kw, shared_E)
        except TableError as e:
            refused[form] = str(e)
    fronts = []
    if len(frame):
        C = np.geomspace(frame["C"].min(), frame["C"].max() * 100, 25)
        for form in ("chinchilla", "isoflop"):
            for fam, fit in fits.get(form, {}).items():
                fronts.append(frontier(fit, C, level=level))
    frontiers = pd.concat(fronts, ignore_index=True) if fronts else pd.DataFrame()
    comps = []
    for form in ("powerlaw", "saturating"):
        by_family = fits.get(form, {})
        if len(by_family) > 1:
            lo = max(law_rows[law_rows["family"] == f]["C"].min() for f in by_family)
            hi = min(law_rows[law_rows["family"] == f]["C"].max() for f in by_family)
            grid_c = np.geomspace(min(lo, hi), max(lo, hi), 3)
            comps.append(compare_families(by_family, grid_c, level))
    comparisons = pd.concat(comps, ignore_index=True) if comps else pd.DataFrame()
    conv = convention_sweep(table, n_boot=n_boot, level=level, seed=seed, shared_E=shared_E) if convention_table \
        else pd.DataFrame()
    noise = pd.concat([f.seed_noise for by in fits.values() for f in _unique(by.values())
                       if f.seed_noise is not None and len(f.seed_noise)], ignore_index=True).drop_duplicates() \
        if any(f.seed_noise is not None and len(f.seed_noise) for by in fits.values() for f in by.values()) \
        else pd.DataFrame()
    return Report(convention=convention, frame=frame, fits=fits, refused=refused, frontiers=frontiers,
                  comparisons=comparisons, conventions=conv, seed_noise=noise,
                  entropies=corpus_entropies(table), notes=notes, level=level)


def convention_sweep(runs: pd.DataFrame, forms=("powerlaw", "saturating", "isoflop"), conventions=None, *,
                     n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED,
                     shared_E: bool = True) -> pd.DataFrame:
    """How the fitted exponents move across FLOP conventions: one row per (convention, form,
    family, exponent) with its interval. Approach 3 is left out: it does not use C (only
    N, which differs between total and non-embedding counts)."""
    rows = []
    for conv in conventions or conventions_in(runs):
        frame = fit_frame(runs, conv)
        law_rows = compute_law_rows(frame)
        iso = frame[frame["budget_rule"] == "flops"].reset_index(drop=True) if "budget_rule" in frame else frame.iloc[:0]
        for form in forms:
            data = iso if form == "isoflop" else law_rows
            if not len(data):
                continue
            try:
                fits = _fit_frame_form(data, form, conv, dict(n_boot=n_boot, level=level, seed=seed,
                                                              extrapolate=False), shared_E)
            except TableError as e:
                rows.append({"convention": conv, "form": form, "family": "", "parameter": "",
                             "refused": str(e)})
                continue
            for fam, fit in fits.items():
                p, ci = fit.params(), fit.ci(level)
                for name in fit.names:
                    base = name.split("[")[0]
                    if base not in EXPONENT_NAMES[form]:
                        continue
                    if "[" in name and not name.endswith(f"[{fam}]"):
                        continue
                    rows.append({"convention": conv, "form": form, "family": fam, "parameter": base,
                                 "estimate": p[name], "ci_lo": ci[name][0], "ci_hi": ci[name][1],
                                 "level": level})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# Tables on disk


def to_markdown(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub Markdown table (no third-party formatter needed)."""
    if df is None or not len(df):
        return "_(empty)_\n"

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return str(v)
            a = abs(v)
            return f"{v:.{digits}g}" if a == 0 or 1e-3 <= a < 1e6 else f"{v:.{digits - 1}e}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def write_tables(report: Report, out_dir: str) -> list[str]:
    """fit_table.csv/.md (constants with intervals), fit_checks.csv, conventions.csv,
    comparisons.csv, frontier.csv, seed_noise.csv; the Markdown file holds them all."""
    import os

    os.makedirs(out_dir, exist_ok=True)
    tables = {"fit_table": report.table(), "fit_checks": report.checks(), "conventions": report.conventions,
              "comparisons": report.comparisons, "frontier": report.frontiers, "seed_noise": report.seed_noise}
    written = []
    for name, df in tables.items():
        if df is None or not len(df):
            continue
        path = os.path.join(out_dir, f"{name}.csv")
        df.to_csv(path, index=False)
        written.append(path)
    md = [f"# Fit table ({report.convention} FLOPs, {report.level:.0%} bootstrap intervals)\n"]
    t = tables["fit_table"]
    if len(t):
        md.append(to_markdown(t[[c for c in ("form", "family", "parameter", "estimate", "ci_lo", "ci_hi", "n_points",
                                             "r2", "sigma_log") if c in t]]))
    if report.refused:
        md.append("\n## Not fitted\n")
        md += [f"- **{form}**: {msg}" for form, msg in report.refused.items()]
        md.append("")
    for title, key in (("Checks (health, extrapolation, seed noise)", "fit_checks"),
                       ("Exponents across FLOP conventions", "conventions"),
                       ("Families at matched compute", "comparisons"), ("Seed noise", "seed_noise")):
        df = tables[key]
        if df is not None and len(df):
            md += [f"\n## {title}\n", to_markdown(df)]
    if report.notes:
        md.append("\n## Notes\n")
        md += [f"- {n}" for n in report.notes]
    path = os.path.join(out_dir, "fit_table.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")
    written.append(path)
    return written
