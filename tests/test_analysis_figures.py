"""The scaling-law figures (analysis.scaling_figures): the data on the axes equal the
DataFrames and the fits (not just a file on disk); the registry (analysis.figure_registry)
renders PNG and PDF and skips figures whose data are absent. Training curves and loss by
position: test_analysis_curve_figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import figures as F
from analysis.fitting import Columns, fit_form
from analysis.frontier import frontier
from analysis.isoflop import fit_isoflop
from analysis.synthetic import isoflop_table, powerlaw_table, saturating_table


def artists(fig: Figure, gid: str) -> list:
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


def one(fig: Figure, gid: str):
    found = artists(fig, gid)
    assert len(found) == 1, (gid, len(found))
    return found[0]


@pytest.fixture(scope="module")
def law_data():
    t = powerlaw_table({"mqa": (30.0, -0.05), "griffin": (28.0, -0.05)}, n=8, noise=0.01, seed=1)
    fits = fit_form(t, "powerlaw", Columns(family="family"), n_boot=200, extrapolate=False)
    return t, fits


def test_loss_vs_flops_plots_the_runs_the_fits_and_the_entropies(law_data):
    t, fits = law_data
    ent = {"unigram_nats": 3.35, "bigram_nats": 2.58}
    fig = F.plot_loss_vs_flops(t, fits, entropies=ent, convention="exact")
    for fam in ("mqa", "griffin"):
        g = t[t["family"] == fam]
        pts = one(fig, f"points:{fam}").get_offsets()
        np.testing.assert_allclose(pts[:, 0], g["C"])
        np.testing.assert_allclose(pts[:, 1], g["L"])
        line = one(fig, f"fit:{fam}")
        xs, ys = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        assert xs.min() < g["C"].min() and xs.max() > g["C"].max()
        np.testing.assert_allclose(ys, fits[fam].predict({"C": xs}), rtol=1e-12)
        band = fits[fam].bands({"C": xs})
        verts = one(fig, f"band:{fam}").get_paths()[0].vertices
        assert verts[:, 1].min() == pytest.approx(band["ci_lo"].min(), rel=1e-9)
        assert verts[:, 1].max() == pytest.approx(band["ci_hi"].max(), rel=1e-9)
    for key, v in (("unigram", 3.35), ("bigram", 2.58)):
        np.testing.assert_allclose(one(fig, f"entropy:{key}").get_ydata(), [v, v])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "exact" in ax.get_xlabel()
    # No entropies given: no reference lines.
    assert not artists(F.plot_loss_vs_flops(t, fits), "entropy:unigram")


def test_loss_vs_flops_with_a_joint_saturating_fit():
    t = saturating_table(1.7, {"hawk": (55.0, 0.11), "griffin": (50.0, 0.12)}, n=6, noise=0.004, seed=2)
    fits = fit_form(t, "saturating", Columns(family="family"), n_boot=100, extrapolate=False)
    fig = F.plot_loss_vs_flops(t, fits)
    line = one(fig, "fit:hawk")
    xs = np.asarray(line.get_xdata())
    expected = fits["hawk"].predict({"C": xs, "family": np.full(xs.size, "hawk")})
    np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-12)


def test_isoflop_figure_shows_parabolas_and_minima():
    t = isoflop_table(budgets=(1e18, 1e19, 1e20), noise=0.003, seed=3, family="hawk")
    fit = fit_isoflop(t.N, t.C, t.L, D=t.D, budget=t.budget, n_boot=0, family="hawk")
    fig = F.plot_isoflop(t, {"hawk": fit})
    for row in fit.budgets.itertuples():
        pts = one(fig, f"points:hawk:{row.budget}").get_offsets()
        g = t[t["budget"] == row.budget]
        np.testing.assert_allclose(pts[:, 0], g["N"])
        np.testing.assert_allclose(pts[:, 1], g["L"])
        star = one(fig, f"minimum:hawk:{row.budget}")
        assert star.get_xdata()[0] == pytest.approx(row.N_opt) and star.get_ydata()[0] == pytest.approx(row.L_opt)
        par = one(fig, f"parabola:hawk:{row.budget}")
        np.testing.assert_allclose(par.get_ydata(), fit.parabola(fit.budgets.loc[row.Index], par.get_xdata()))
        # The minimum is the lowest point of its parabola.
        assert row.L_opt <= np.min(par.get_ydata()) + 1e-12


def test_frontier_figure_plots_the_frontier_table():
    t = isoflop_table(noise=0.003, seed=4, family="griffin")
    fit = fit_isoflop(t.N, t.C, t.L, D=t.D, budget=t.budget, n_boot=100, family="griffin")
    fr = frontier(fit, np.geomspace(1e18, 1e23, 9))
    fig = F.plot_frontier(fr, pd.DataFrame({"family": "griffin", "C": fit.budgets["C"], "N_opt": fit.budgets["N_opt"],
                                            "D_opt": fit.budgets["D_opt"]}))
    for q in ("N_opt", "D_opt", "tokens_per_param"):
        line = one(fig, f"frontier:{q}:approach2:griffin")
        np.testing.assert_allclose(line.get_xdata(), fr["C"])
        np.testing.assert_allclose(line.get_ydata(), fr[q])
    np.testing.assert_allclose(one(fig, "minima:N_opt:griffin").get_offsets()[:, 1], fit.budgets["N_opt"])


def test_render_writes_png_and_pdf_and_skips_absent_data(tmp_path, law_data):
    t, fits = law_data

    class Rep:
        pass

    rep = Rep()
    rep.fits, rep.refused, rep.frontiers = {"powerlaw": fits}, {"isoflop": "no runs with a FLOP budget"}, pd.DataFrame()
    empty = pd.DataFrame()
    inputs = F.FigureInputs(frame=t, curves=empty, positions=empty, lengths=empty, report=rep)

    @F.register_figure("test_extra", "a figure added by later code")
    def _extra(inp):
        fig = Figure()
        fig.add_subplot().plot(inp.frame["C"], inp.frame["L"], gid="extra")
        return fig

    @F.register_figure("test_broken", "a figure whose builder has a bug")
    def _broken(inp):
        raise KeyError("no such column")

    # The built-in figures and the two above (other modules may have registered more).
    names = ["loss_vs_flops", "loss_vs_flops_saturating", "isoflop", "frontier", "training_curves",
             "loss_by_position", "test_extra", "test_broken"]
    try:
        written, skipped = F.render(inputs, str(tmp_path), names)
        with pytest.raises(KeyError):
            F.render(inputs, str(tmp_path), ["test_broken"], strict=True)
    finally:
        del F.FIGURES["test_extra"], F.FIGURES["test_broken"]
    names = {p.name for p in tmp_path.iterdir()}
    assert {"loss_vs_flops.png", "loss_vs_flops.pdf", "test_extra.png", "test_extra.pdf"} <= names
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)
    assert (tmp_path / "loss_vs_flops.pdf").read_bytes().startswith(b"%PDF")
    notes = "\n".join(skipped)
    assert "isoflop: skipped (no IsoFLOP fit: no runs with a FLOP budget)" in notes
    assert "training_curves: skipped" in notes and "loss_by_position: skipped" in notes
    assert "test_broken: FAILED (KeyError: 'no such column')" in notes
    assert set(F.FIGURES) >= {"loss_vs_flops", "isoflop", "frontier", "training_curves", "loss_by_position"}
