"""griffin-fit on good and bad tables (one-line errors, exit 2) and griffin-figures end to end
on a synthetic run store (figures, tables, exclusions, W&B logging through a fake module)."""

from __future__ import annotations

import pathlib
import sys
import tomllib
import types

import numpy as np
import pandas as pd
import pytest

from analysis.cli import COLUMN_NAMES, ROLE_WHAT, figures_main, fit_main, log_to_wandb, resolve_columns
from analysis.fitting import Columns
from analysis.synthetic import chinchilla_loss, chinchilla_table, isoflop_table, powerlaw_table, write_store

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_fit(capsys, *argv):
    code = fit_main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_console_scripts_are_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["griffin-fit"] == "analysis.cli:fit_main"
    assert scripts["griffin-figures"] == "analysis.figures_cli:figures_main"


def test_fit_powerlaw_table_prints_named_constants_with_intervals(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    t = powerlaw_table({"mqa": (30.0, -0.05), "hawk": (29.0, -0.05)}, n=8, seed=0)
    t.rename(columns={"C": "flops", "L": "loss"}).to_csv(path, index=False)
    code, out, err = run_fit(capsys, path, "--form", "powerlaw", "--flops-col", "flops", "--loss-col", "loss",
                             "--bootstrap", "200", "--out", tmp_path / "fit.csv")
    assert code == 0, err
    assert "powerlaw fit [mqa]" in out and "powerlaw fit [hawk]" in out
    assert "b = -0.05" in out and "95% CI [" in out and "extrapolation" in out
    assert "loss ratio" in out and "x the compute" in out
    table = pd.read_csv(tmp_path / "fit.csv")
    assert set(table["parameter"]) == {"a", "b"} and set(table["family"]) == {"mqa", "hawk"}


def test_fit_chinchilla_parquet_with_derived_flops(tmp_path, capsys):
    path = tmp_path / "chinchilla.parquet"
    chinchilla_table(120, seed=1)[["N", "D", "L"]].to_parquet(path)
    code, out, err = run_fit(capsys, path, "--form", "chinchilla", "--starts", "coarse", "--bootstrap", "100")
    assert code == 0, err
    for name in ("E =", "A =", "B =", "alpha =", "beta =", "frontier: N_opt"):
        assert name in out
    assert "using C = 6 N D" in out and "243 starts" in out


def test_fit_isoflop_table(tmp_path, capsys):
    path = tmp_path / "iso.csv"
    isoflop_table(noise=0.003).drop(columns=["budget"]).to_csv(path, index=False)
    code, out, err = run_fit(capsys, path, "--form", "isoflop", "--bootstrap", "200")
    assert code == 0, err
    assert "a = 0.4" in out and "budget C~" in out and "N_opt =" in out


def _bad_tables():
    good = pd.DataFrame({"family": ["a"] * 4 + ["b"] * 4, "N": np.geomspace(1e6, 1e9, 8),
                         "D": np.geomspace(1e8, 1e11, 8)[::-1], "L": np.linspace(3, 2, 8)})
    good["C"] = 6 * good["N"] * good["D"]
    nonpos = good.copy()
    nonpos.loc[2, "L"] = 0.0
    nan = good.copy()
    nan.loc[3, "C"] = np.nan
    text = good.astype({"L": object})
    text.loc[1, "L"] = "oops"
    single = pd.concat([good, pd.DataFrame([{"family": "c", "N": 1e7, "D": 1e9, "C": 6e16, "L": 2.5}])])
    N = np.geomspace(1e7, 1e9, 10)
    const = pd.DataFrame({"N": N, "D": 20 * N, "L": chinchilla_loss(N, 20 * N)})
    return [
        ("missing", good.drop(columns=["L"]), ["--form", "powerlaw"],
         "form 'powerlaw' needs a column for loss (L, loss, final_loss, heldout_loss_nats, heldout_loss or "
         "--loss-col); the table has ['family', 'N', 'D', 'C']"),
        ("missing_flops", good.drop(columns=["C", "D"]), ["--form", "saturating"],
         "needs a column for FLOPs (C, flops, compute, flops_exact, training_flops or --flops-col) (or parameters "
         "and tokens, for C = 6 N D); the table has ['family', 'N', 'L']"),
        ("missing_named", good, ["--form", "powerlaw", "--family-col", "fam"], "missing column(s) ['fam']"),
        ("ambiguous", good.assign(Loss=good["L"]), ["--form", "powerlaw"],
         "ambiguous loss column: 'L' and 'Loss' both match; choose one with --loss-col"),
        ("ambiguous_family", good.assign(model="x"), ["--form", "powerlaw"],
         "ambiguous family column: 'family' and 'model' both match; choose one with --family-col"),
        ("nonpos", nonpos, ["--form", "powerlaw"], "non-positive values"),
        ("nan", nan, ["--form", "saturating"], "NaN or infinite"),
        ("text", text, ["--form", "powerlaw"], "non-numeric values"),
        ("single", single, ["--form", "powerlaw"], "family 'c' has only one run"),
        ("constant_tpp", const, ["--form", "chinchilla", "--starts", "coarse"], "tokens-per-parameter ratio varies"),
        ("few", good.iloc[:2].assign(family="a"), ["--form", "powerlaw"], "needs at least 3 runs"),
    ]


@pytest.mark.parametrize("name,table,args,message", _bad_tables(), ids=[b[0] for b in _bad_tables()])
def test_bad_tables_give_one_line_errors(tmp_path, capsys, name, table, args, message):
    path = tmp_path / f"{name}.csv"
    table.to_csv(path, index=False)
    code, out, err = run_fit(capsys, path, *args, "--bootstrap", "10")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("griffin-fit: error: ") and str(path) in lines[0], err
    assert message in lines[0]


def test_fit_recognises_column_spellings_in_any_case(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    t = powerlaw_table({"mqa": (30.0, -0.05), "hawk": (29.0, -0.05)}, n=8, seed=0)
    t.rename(columns={"family": "Model", "C": "FLOPS", "L": "final_loss"}).assign(Seed=0).to_csv(path, index=False)
    code, out, err = run_fit(capsys, path, "--form", "powerlaw", "--bootstrap", "20", "--no-extrapolation")
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert notes == ["note: columns used: FLOPs 'FLOPS', loss 'final_loss', family 'Model', seed 'Seed'"]
    assert "powerlaw fit [mqa]" in out and "powerlaw fit [hawk]" in out


@pytest.mark.parametrize("role,names", list(COLUMN_NAMES.items()))
def test_resolve_columns_knows_every_listed_spelling(role, names):
    standard = {"params": "N", "tokens": "D", "flops": "C", "loss": "L", "family": "family", "seed": "seed"}
    for name in names:
        for spelling in (name, name.upper(), name.lower(), name.replace("_", " ").title(), name.replace("_", "-")):
            columns = [spelling if r == role else c for r, c in standard.items()] + [f"{spelling}_se", "size"]
            cols, used = resolve_columns(pd.DataFrame(columns=columns), "chinchilla")
            assert getattr(cols, role) == spelling and f"{ROLE_WHAT[role]} {spelling!r}" in used, (spelling, cols)


def test_resolve_columns_run_store_and_fit_frame_tables():
    runs = pd.DataFrame(columns=["run_id", "family", "size", "seed", "params_total", "params_non_embedding", "tokens",
                                 "flops_6N", "flops_exact", "flops_as_executed", "final_train_loss",
                                 "heldout_loss_nats", "heldout_loss_se"])
    cols, used = resolve_columns(runs, "chinchilla")
    assert cols == Columns(params="params_total", tokens="tokens", flops="flops_exact", loss="heldout_loss_nats",
                           family="family", seed="seed")
    assert used == ("columns used: parameters 'params_total', tokens 'tokens', FLOPs 'flops_exact', "
                    "loss 'heldout_loss_nats', family 'family', seed 'seed'")
    frame = pd.DataFrame(columns=["run_id", "family", "size", "budget", "seed", "N", "D", "C", "L"])
    assert resolve_columns(frame, "isoflop")[0] == Columns(family="family", seed="seed")
    # Parameters and tokens stand in for FLOPs (C = 6 N D, said by fit_form's own note).
    cols, used = resolve_columns(pd.DataFrame(columns=["n_params", "Training_Tokens", "loss"]), "powerlaw")
    assert (cols.params, cols.tokens, cols.loss, cols.family) == ("n_params", "Training_Tokens", "loss", None)
    assert "FLOPs" not in used


def test_explicit_column_flags_win(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    t = powerlaw_table({"mqa": (30.0, -0.05)}, n=8, seed=0)
    # Two loss columns (ambiguous by name) and two family-like columns: the flags decide.
    t.assign(loss=t["L"] * 1.5, model="one", final_loss=t["L"], compute=t["C"] * 10).to_csv(path, index=False)
    code, out, err = run_fit(capsys, path, "--form", "powerlaw", "--loss-col", "loss", "--flops-col", "compute",
                             "--family-col", "model", "--bootstrap", "0", "--no-extrapolation")
    assert code == 0, err
    assert "note: columns used: FLOPs 'compute', loss 'loss', family 'model'" in out.splitlines()
    assert "powerlaw fit [one]" in out
    code, _, err = run_fit(capsys, path, "--form", "powerlaw", "--bootstrap", "0")
    assert code == 2 and "ambiguous FLOPs column: 'C' and 'compute' both match; choose one with --flops-col" in err


def test_unreadable_inputs(tmp_path, capsys):
    code, _, err = run_fit(capsys, tmp_path / "nope.csv", "--form", "powerlaw")
    assert code == 2 and "no such file" in err
    (tmp_path / "t.xlsx").write_text("x")
    code, _, err = run_fit(capsys, tmp_path / "t.xlsx", "--form", "powerlaw")
    assert code == 2 and "unknown table format" in err
    (tmp_path / "empty.csv").write_text("")
    code, _, err = run_fit(capsys, tmp_path / "empty.csv", "--form", "powerlaw")
    assert code == 2 and "cannot read" in err
    with pytest.raises(SystemExit) as e:
        fit_main([str(tmp_path / "t.csv"), "--form", "cubic"])
    assert e.value.code == 2


def study(seed=0) -> pd.DataFrame:
    """Two families: a 20-tokens-per-parameter ladder (two sizes with a second seed), an IsoFLOP
    grid of three budgets, and a diverged run."""
    rng = np.random.default_rng(seed)
    law = dict(E=1.8, A=60.0, B=90.0, alpha=0.3, beta=0.3)
    rows = []
    for fam, scale in (("mqa", 1.0), ("griffin", 0.97)):
        for i, N in enumerate(np.geomspace(3e4, 1.5e6, 5)):
            L = scale * chinchilla_loss(N, 20 * N, **law) * np.exp(0.003 * rng.standard_normal())
            for seed_ in ((0, 1) if i in (1, 3) else (0,)):
                rows.append(dict(family=fam, size=f"s{i}", N=N, D=20 * N, seed=seed_, budget="20tpp",
                                 budget_rule="tokens_per_param", budget_value=20.0,
                                 L=L * np.exp(0.004 * rng.standard_normal() * seed_)))
        for C in (1e12, 1e13, 1e14):
            n0 = 0.1 * (C / 6) ** 0.5
            for j, N in enumerate(np.geomspace(n0 / 8, n0 * 8, 5)):
                D = C / (6 * N)
                rows.append(dict(family=fam, size=f"iso{j}", N=N, D=D, budget=f"{C:.0e}F", budget_rule="flops",
                                 budget_value=C,
                                 L=scale * chinchilla_loss(N, D, **law) * np.exp(0.003 * rng.standard_normal())))
    rows.append(dict(family="mqa", size="s9", N=3e6, D=6e7, L=2.0, status="DIVERGED"))
    return pd.DataFrame(rows)


def test_griffin_figures_end_to_end(tmp_path, capsys):
    write_store(tmp_path, study(), sweep="demo", positions=8)
    small_grid = "a=0:20:10,b=0:20:10,e=-1:1:1,alpha=0:1:1,beta=0:1:1"  # 108 starts: quick
    # Every registered figure is drawn or skipped with a note (figures other modules register
    # read their own files, absent here); PDF output is tested in test_analysis_figures.
    code = figures_main([str(tmp_path / "sweeps" / "demo.json"), "--bootstrap", "30", "--starts", small_grid,
                         "--formats", "png"])
    out = capsys.readouterr()
    assert code == 0, out.err
    figs = tmp_path / "figures" / "demo"
    for name in ("loss_vs_flops", "loss_vs_flops_saturating", "isoflop", "frontier", "training_curves",
                 "loss_by_position"):
        assert (figs / f"{name}.png").stat().st_size > 1000, name
    table = pd.read_csv(figs / "fit_table.csv")
    assert set(table["form"]) == {"powerlaw", "saturating", "chinchilla", "isoflop"}
    assert {"frontier_a", "frontier_b", "E", "alpha", "beta"} <= set(table["parameter"])
    md = (figs / "fit_table.md").read_text()
    assert "| form | family | parameter |" in md and "Exponents across FLOP conventions" in md
    conv = pd.read_csv(figs / "conventions.csv")
    assert set(conv["convention"]) == {"6N", "6N_nonembed", "exact", "as_executed"}
    assert (figs / "comparisons.csv").exists() and (figs / "seed_noise.csv").exists()
    assert "excluding run mqa-s9" in out.err and "excluded 1" in out.out
    checks = pd.read_csv(figs / "fit_checks.csv")
    assert checks["health_converged"].all() and "extrap_mean_abs_rel_error" in checks


def test_griffin_figures_errors_and_listing(tmp_path, capsys):
    assert figures_main([str(tmp_path)]) == 2
    assert "not a run store" in capsys.readouterr().err
    assert figures_main(["--list", "x"]) == 0
    assert "loss_vs_flops:" in capsys.readouterr().out
    write_store(tmp_path, study().iloc[:3], sweep="tiny")
    assert figures_main([str(tmp_path), "--only", "nonesuch", "--bootstrap", "10"]) == 2
    assert "unknown figure" in capsys.readouterr().err


def test_wandb_logging_uses_the_sweep_group(tmp_path, monkeypatch, capsys):
    logged, inits = [], []

    class FakeRun:
        url = "https://wandb.example/run"

        def log(self, d):
            logged.append(d)

        def finish(self):
            logged.append("finished")

    fake = types.SimpleNamespace(init=lambda **kw: inits.append(kw) or FakeRun(),
                                 Image=lambda path: ("image", path), Table=lambda dataframe: ("table", len(dataframe)))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    t = powerlaw_table({"mqa": (30.0, -0.05), "griffin": (28.0, -0.05)}, n=6)
    N = np.sqrt(t["C"] / 120)  # D = 20 N: 6 N D = C
    write_store(tmp_path, t.assign(size=[f"s{i}" for i in range(len(t))], N=N, D=20 * N), sweep="grp")
    code = figures_main([str(tmp_path), "--sweep", "grp", "--bootstrap", "20", "--only", "loss_vs_flops",
                         "--formats", "png", "--no-conventions", "--wandb", "--wandb-project", "proj"])
    assert code == 0, capsys.readouterr().err
    assert inits == [{"project": "proj", "entity": None, "group": "grp", "job_type": "analysis", "name": "figures-grp",
                      "mode": "disabled"}]  # the tests run with WANDB_MODE=disabled
    assert logged[0] == {"loss_vs_flops": ("image", str(tmp_path / "figures" / "grp" / "loss_vs_flops.png"))}
    assert any(isinstance(d, dict) and "fit_table" in d for d in logged) and logged[-1] == "finished"
    assert log_to_wandb([], {}, project="p", group=None, wandb_module=fake) == FakeRun.url
