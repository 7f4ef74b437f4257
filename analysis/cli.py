"""Command lines: `griffin-fit` (fit any table) and `griffin-figures` (runs -> fits, figures,
tables). Bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

from analysis.chinchilla import MIN_TPP_SPREAD, parse_grid
from analysis.core import DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, DEFAULT_SEED, FitError, fmt
from analysis.fitting import FORMS, NEEDS, Columns, TableError, fit_form
from run_store import one_line
from run_store.cli import (ArgumentParser, fraction, non_negative_int, output_file, output_folder, output_problem,
                           positive_float)

EXIT_USAGE = 2
COLUMN_NAMES = {
    "params": ("N", "params", "parameters", "params_total", "n_params", "num_params"),
    "tokens": ("D", "tokens", "n_tokens", "training_tokens", "num_tokens"),
    "flops": ("C", "flops", "compute", "flops_exact", "training_flops"),
    "loss": ("L", "loss", "final_loss", "heldout_loss_nats", "heldout_loss"),
    "family": ("family", "model"),
    "seed": ("seed",),
}
"""The spellings griffin-fit recognises for each role (any case; '-' or ' ' for '_')."""
ROLE_WHAT = {"params": "parameters", "tokens": "tokens", "flops": "FLOPs", "loss": "loss", "family": "family",
             "seed": "seed"}


def _error(prog: str, msg: str) -> int:
    print(f"{prog}: error: {one_line(msg)}", file=sys.stderr)
    return EXIT_USAGE


def read_table(path: str) -> pd.DataFrame:
    """A CSV, TSV or Parquet table. TableError (one line) if it cannot be read."""
    if not os.path.exists(path):
        raise TableError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if ext in (".tsv", ".tab"):
            return pd.read_csv(path, sep="\t")
        if ext in (".csv", ".txt", ""):
            return pd.read_csv(path)
    except Exception as e:
        raise TableError(f"{path}: cannot read the table ({type(e).__name__}: {e})") from None
    raise TableError(f"{path}: unknown table format {ext!r} (use .csv, .tsv or .parquet)")


def start_grid(text: str) -> str:
    """An argparse type for --starts: a preset name or an axis spec, checked at parse time
    (whether or not an Approach-3 fit then runs)."""
    try:
        parse_grid(text)
    except FitError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _fit_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="griffin-fit",
        description="Fit a scaling law to any table of runs (params, tokens, FLOPs, final loss, family) and "
                    "print the fitted constants with bootstrap intervals and the fit's checks.")
    p.add_argument("table", help="CSV, TSV or Parquet file, one row per run")
    p.add_argument("--form", required=True, choices=FORMS,
                   help="powerlaw: L = a C^b; saturating: L = E + A C^-alpha (E shared across families); "
                        "chinchilla: Approach 3, L = E + A/N^alpha + B/D^beta; isoflop: Approach 2")
    roles = {"family": "family column (one law per family)", "params": "parameters column",
             "tokens": "tokens column", "flops": "FLOPs column (none: C = 6 N D)", "loss": "final loss column",
             "seed": "seed column (repeated configs give the seed noise)"}
    for role, what in roles.items():
        p.add_argument(f"--{role}-col", default=None,
                       help=f"{what}; default: the table's column named {', '.join(COLUMN_NAMES[role])} (any case)")
    p.add_argument("--budget-col", default=None, help="IsoFLOP budget labels (default: group FLOPs within 5%%)")
    p.add_argument("--starts", type=start_grid, default="full",
                   help="Approach-3 start grid: 'full' (the published 4500 starts), 'coarse' (243) or "
                        "'alpha=0:2:0.5,beta=0:2:0.5,e=-1:1:0.5,a=0:25:5,b=0:25:5'")
    p.add_argument("--bootstrap", type=non_negative_int, default=DEFAULT_BOOTSTRAP, metavar="N",
                   help=f"bootstrap resamples of whole runs (default {DEFAULT_BOOTSTRAP}; 0: no intervals)")
    p.add_argument("--level", type=fraction, default=DEFAULT_LEVEL, help="interval level (default 0.95)")
    p.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED, help="bootstrap seed (default 0)")
    p.add_argument("--per-family-E", action="store_true", help="saturating: fit E per family, not shared")
    p.add_argument("--holdout", choices=("compute", "size"), default="compute",
                   help="extrapolation check: hold out the top fraction by compute, or the largest size")
    p.add_argument("--holdout-frac", type=fraction, default=0.2, help="fraction held out by compute (default 0.2)")
    p.add_argument("--no-extrapolation", action="store_true", help="skip the extrapolation check")
    p.add_argument("--min-tpp-spread", type=positive_float, default=MIN_TPP_SPREAD,
                   help=f"Approach 3 refuses data whose std of log(D/N) is below this (default {MIN_TPP_SPREAD})")
    p.add_argument("--out", type=output_file, default=None, help="also write the fit table (CSV) here")
    return p


def fit_main(argv: Sequence[str] | None = None) -> int:
    """griffin-fit TABLE --form FORM [...]: prints the named constants with intervals."""
    args = _fit_parser().parse_args(argv)
    try:
        df = read_table(args.table)
        explicit = {"params": args.params_col, "tokens": args.tokens_col, "flops": args.flops_col,
                    "loss": args.loss_col, "family": args.family_col, "seed": args.seed_col}
        cols, used = resolve_columns(df, args.form, explicit, source=args.table)
        notes = [used]
        fits = fit_form(df, args.form, cols, source=args.table, shared_E=not args.per_family_E,
                        n_boot=args.bootstrap, level=args.level, seed=args.seed, grid=args.starts,
                        min_tpp_spread=args.min_tpp_spread, extrapolate=not args.no_extrapolation,
                        holdout=args.holdout, holdout_frac=args.holdout_frac, notes=notes)
    except (TableError, FitError) as e:
        return _error("griffin-fit", str(e))
    for n in notes:
        print(f"note: {n}")
    print(render_fits(fits, args.level, df=None))
    if args.out:
        from analysis.report import _unique

        table = pd.concat([f.table(args.level) for f in _unique(fits.values())], ignore_index=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def _spelling(name) -> str:
    return str(name).strip().casefold().replace("-", "_").replace(" ", "_")


def resolve_columns(df: pd.DataFrame, form: str, explicit: dict[str, str | None] | None = None,
                    source: str = "table") -> tuple[Columns, str]:
    """The table's column for each role (params, tokens, flops, loss, family, seed): the one
    named in `explicit`, else the one column whose name is a spelling in COLUMN_NAMES (any
    case). Returns (Columns, a line naming the columns used). TableError (one line) when two
    columns match a role, or when a role `form` needs has no column (FLOPs may instead come
    from parameters and tokens, C = 6 N D): the message lists the table's columns."""
    explicit = explicit or {}
    found: dict[str, str] = {}
    for role, names in COLUMN_NAMES.items():
        if explicit.get(role):
            found[role] = explicit[role]
            continue
        hits = [c for c in df.columns if _spelling(c) in {_spelling(n) for n in names}]
        if len(hits) > 1:
            raise TableError(f"{source}: ambiguous {ROLE_WHAT[role]} column: {' and '.join(map(repr, hits))} "
                             f"both match; choose one with --{role}-col")
        if hits:
            found[role] = str(hits[0])
    needed = [r for r in ("params", "tokens", "flops", "loss") if r in NEEDS[form] and r not in found]
    if "flops" in needed and "params" in found and "tokens" in found:
        needed.remove("flops")  # C = 6 N D
    if needed:
        wants = "; ".join(f"{ROLE_WHAT[r]} ({', '.join(COLUMN_NAMES[r])} or --{r}-col)" for r in needed)
        derive = " (or parameters and tokens, for C = 6 N D)" if "flops" in needed else ""
        raise TableError(f"{source}: form {form!r} needs a column for {wants}{derive}; "
                         f"the table has {list(map(str, df.columns))}")
    cols = Columns(**{r: found.get(r, COLUMN_NAMES[r][0]) for r in ("params", "tokens", "flops", "loss")},
                   family=found.get("family"), seed=found.get("seed"))
    used = ", ".join(f"{ROLE_WHAT[r]} {found[r]!r}" for r in COLUMN_NAMES if r in found)
    return cols, f"columns used: {used}"


def render_fits(fits: dict, level: float, df: pd.DataFrame | None = None) -> str:
    """The printed report of a family -> Fit mapping: constants, checks, frontier, comparison."""
    from analysis.compare import compare_families
    from analysis.frontier import exponents
    from analysis.report import _unique

    out = []
    for fit in _unique(fits.values()):
        out.append(fit.summary(level))
        if fit.form in ("chinchilla", "isoflop"):
            ex = exponents(fit)
            out.append("  frontier: N_opt ∝ C^a, a = {} [{}, {}];  D_opt ∝ C^b, b = {} [{}, {}]".format(
                *(fmt(v) for v in ex["a"]), *(fmt(v) for v in ex["b"])))
        if fit.form == "isoflop" and getattr(fit, "budgets", None) is not None:
            for r in fit.budgets.itertuples():
                status = f"N_opt = {r.N_opt:.4g}, D_opt = {r.D_opt:.4g}" if r.used else "not used"
                out.append(f"    budget {r.budget} (C = {r.C:.4g}, {r.n_runs} runs): {status}"
                           f"{'; ' + r.note if r.note else ''}")
    lawful = {f: v for f, v in fits.items() if v.form in ("powerlaw", "saturating")}
    if len(lawful) > 1:
        fits_list = _unique(lawful.values())
        cs = [np.exp(f.law.c0) for f in fits_list]
        comp = compare_families(lawful, [float(np.exp(np.mean(np.log(cs))))], level)
        out.append("families at matched compute (C = {:.3g}):".format(comp["C"].iloc[0]))
        for r in comp.itertuples():
            out.append(f"  {r.family_a} vs {r.family_b}: loss ratio {r.loss_ratio:.4f} [{r.loss_ratio_lo:.4f}, "
                       f"{r.loss_ratio_hi:.4f}]; {r.family_b} needs {fmt(r.multiplier)}x the compute "
                       f"[{fmt(r.multiplier_lo)}, {fmt(r.multiplier_hi)}] to match {r.family_a}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# griffin-figures


def _figures_parser() -> argparse.ArgumentParser:
    from analysis.load import CONVENTIONS

    p = ArgumentParser(
        prog="griffin-figures",
        description="Load runs (a run store, a sweep manifest or W&B), fit the scaling laws, and write every "
                    "registered figure (PNG and PDF) with the fit table (CSV and Markdown).")
    p.add_argument("runs", metavar="RUNS_DIR",
                   help="run store root, <root>/sweeps/<name>.json, or wandb:ENTITY/PROJECT")
    p.add_argument("--sweep", default=None, help="sweep name within the store (or the W&B group)")
    p.add_argument("--out", type=output_folder, default=None,
                   help="output folder (default <root>/figures[/<sweep>]; ./figures[/<sweep>] for W&B and buckets)")
    p.add_argument("--convention", default="exact", choices=CONVENTIONS, help="FLOP convention (default exact)")
    p.add_argument("--bootstrap", type=non_negative_int, default=DEFAULT_BOOTSTRAP, metavar="N", help="bootstrap resamples")
    p.add_argument("--starts", type=start_grid, default="full", help="Approach-3 start grid (see griffin-fit --help)")
    p.add_argument("--level", type=fraction, default=DEFAULT_LEVEL)
    p.add_argument("--seed", type=non_negative_int, default=DEFAULT_SEED)
    p.add_argument("--only", default=None, help="comma-separated figure names (default: all registered)")
    p.add_argument("--formats", default="png,pdf", help="comma-separated file formats (default png,pdf)")
    p.add_argument("--list", action="store_true", help="list the registered figures and exit")
    p.add_argument("--no-conventions", action="store_true", help="skip the exponents-across-conventions table")
    p.add_argument("--wandb", action="store_true", help="also log the figures and tables to the sweep's W&B group")
    p.add_argument("--wandb-project", default=None, help="W&B project (default: the sweep's, else griffin-scaling)")
    p.add_argument("--wandb-entity", default=None)
    p.add_argument("--wandb-mode", default="auto", choices=("auto", "online", "offline", "disabled"),
                   help="auto: online with an API key and a reachable host, else offline (then `wandb sync`)")
    return p


def figures_main(argv: Sequence[str] | None = None) -> int:
    """griffin-figures RUNS_DIR [--out DIR] [--convention exact] [--wandb]."""
    args = _figures_parser().parse_args(argv)
    from analysis import figures as F

    for note in F.discover():
        print(f"note: {note}", file=sys.stderr)
    if args.list:
        for spec in F.FIGURES.values():
            print(f"{spec.name}: {spec.description}")
        return 0
    from analysis.load import ConventionError, load_runs
    from analysis.report import analyse, write_tables
    from run_store import StoreError

    try:
        only = [n.strip() for n in args.only.split(",")] if args.only else None
        unknown = [n for n in only or [] if n not in F.FIGURES]
        if unknown:
            raise TableError(f"unknown figure(s) {unknown}; registered: {list(F.FIGURES)}")
        if args.wandb and args.wandb_mode == "online":
            from run_store.wandb_mode import has_api_key

            if not has_api_key():  # before the work, not a login prompt after it
                raise TableError("--wandb-mode online: no W&B API key (set WANDB_API_KEY or run `wandb login`; "
                                 "auto logs offline without one)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # exclusions are printed one per line
            runs = load_runs(args.runs, args.sweep)
        measured = runs.source.startswith("store:") and os.path.isdir(
            os.path.join(runs.source[len("store:"):], "measurements"))
        if not len(runs.runs) and not measured:  # griffin-measure's results alone still make figures
            raise TableError(f"{args.runs}: no usable runs ({len(runs.excluded)} excluded)")
        out = args.out or _default_out(args.runs, runs.sweep)
        why = output_problem(out, folder=True)  # the default folder, before the fits (--out: at parsing)
        if why:
            raise TableError(f"output folder {out}: {why} (choose another with --out)")
        print(f"loaded {len(runs.runs)} runs from {runs.source}"
              f"{' (sweep ' + runs.sweep + ')' if runs.sweep else ''}; excluded {len(runs.excluded)}")
        report = analyse(runs, args.convention, n_boot=args.bootstrap, level=args.level, seed=args.seed,
                         grid=args.starts, convention_table=not args.no_conventions)
    except (TableError, FitError, StoreError, ConventionError) as e:
        return _error("griffin-figures", str(e))
    root = None if str(args.runs).startswith("wandb:") else runs.source[len("store:"):]
    inputs = F.FigureInputs(frame=report.frame, curves=runs.curves, positions=runs.positions, lengths=runs.lengths,
                            report=report, convention=args.convention, entropies=report.entropies, runs=runs.runs,
                            root=root, sweep=runs.sweep)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    written, skipped = F.render(inputs, out, only, formats)
    written += write_tables(report, out)
    for form, by_family in report.fits.items():
        print(render_fits(by_family, args.level))
    for form, msg in report.refused.items():
        print(f"{form}: not fitted: {msg}")
    for s in skipped:
        print(f"figure {s}")
    print(f"wrote {len(written)} files to {out}")
    failed = [s for s in skipped if ": FAILED (" in s]
    if args.wandb:
        project = args.wandb_project or _manifest_project(runs.manifest) or "griffin-scaling"
        url = log_to_wandb(written, {"fit_table": report.table(), "fit_checks": report.checks()},
                           project=project, entity=args.wandb_entity, group=runs.sweep, mode=args.wandb_mode)
        print(f"logged the figures and tables to W&B ({project}, group {runs.sweep}){': ' + url if url else ''}")
    if failed:
        print(f"griffin-figures: {len(failed)} figure(s) failed: {', '.join(f.split(':')[0] for f in failed)}",
              file=sys.stderr)
        return 1
    return 0


def _default_out(source: str, sweep: str | None) -> str:
    """<root>/figures[/<sweep>] of a local store; ./figures[/<sweep>] for W&B and a bucket
    (figures are written to local files)."""
    from run_store import is_url

    if str(source).startswith("wandb:"):
        return "figures"
    if is_url(source):
        return os.path.join("figures", sweep) if sweep else "figures"
    s = os.fspath(source)
    root = os.path.dirname(os.path.dirname(s)) if s.endswith(".json") else s
    return os.path.join(root, "figures", sweep) if sweep else os.path.join(root, "figures")


def _manifest_project(manifest: dict | None) -> str | None:
    try:
        return manifest["config"]["logger"]["wandb"]["project"]
    except (TypeError, KeyError):
        return None


def wandb_mode(mode: str = "auto") -> str:
    """'online', 'offline' or 'disabled': the trainer's rule (online only with an API key and a
    host that answers; WANDB_MODE honoured), so a machine without a key never gets a login prompt."""
    from run_store.wandb_mode import resolve_mode

    return resolve_mode(mode)


def log_to_wandb(files: Sequence[str], tables: dict[str, pd.DataFrame], *, project: str, group: str | None,
                 entity: str | None = None, mode: str = "auto", wandb_module: Any = None) -> str | None:
    """Log the PNG figures and the tables to an 'analysis' run in the sweep's W&B group.
    `wandb_module` replaces the wandb package (tests pass a fake). Returns the run's URL."""
    if wandb_module is None:
        import wandb as wandb_module  # only with --wandb
    run = wandb_module.init(project=project, entity=entity, group=group, job_type="analysis",
                            name=f"figures-{group or 'runs'}", mode=wandb_mode(mode))
    try:
        images = {os.path.splitext(os.path.basename(f))[0]: wandb_module.Image(f) for f in files if f.endswith(".png")}
        if images:
            run.log(images)
        for name, df in tables.items():
            if df is not None and len(df):
                run.log({name: wandb_module.Table(dataframe=df.astype(object).where(df.notna(), None))})
    finally:
        run.finish()
    return getattr(run, "url", None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(fit_main())
