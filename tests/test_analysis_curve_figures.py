"""Training curves and loss by position (analysis.curve_figures): the smoothing, the smoothed
lines and held-out markers on the axes, the stated window, one colour per model size."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from analysis import figures as F
from analysis.curve_figures import EARLY_FRACTION, smooth, smoothing_window
from analysis.figure_style import size_palette
from analysis.synthetic import training_curve, write_store


def one(fig: Figure, gid: str):
    found = [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, (gid, len(found))
    return found[0]


def texts(fig: Figure) -> str:
    """Every text of the figure: titles, labels, legends."""
    out = [fig.get_suptitle()]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    for leg in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        out += [t.get_text() for t in leg.get_texts()] + [leg.get_title().get_text()]
    return "\n".join(out)


SIZES = {"s-small": (3e4, 4, 500, 2.4), "s-mid": (8e4, 8, 700, 1.9), "s-large": (2e5, 16, 800, 1.5)}


def study_curves(noise=0.1, eval_every=100) -> pd.DataFrame:
    """Per-step metrics of two families x three sizes, shaped as load.Runs.curves."""
    frames = []
    for f, fam in enumerate(("mqa", "griffin")):
        for size, (n, batch, steps, loss) in SIZES.items():
            params = n * (1 + 0.1 * f)  # one size has a different count in each family
            rows = training_curve(params, batch * steps * 256, loss, steps=steps, batch_size=batch, noise=noise,
                                  eval_every=eval_every, seed=len(frames))
            frames.append(pd.DataFrame(rows).assign(run_id=f"{fam}-{size}", family=fam, size=size, seed=0,
                                                    params_total=params))
    return pd.concat(frames, ignore_index=True)


def test_smoothing_window_is_odd_and_follows_the_number_of_steps():
    assert smoothing_window([500, 700, 800]) == 29  # median 700 / 25 = 28 -> odd
    assert smoothing_window([100]) == 5 and smoothing_window([10]) == 1 and smoothing_window([]) == 1
    assert all(smoothing_window([n]) % 2 == 1 for n in range(1, 3000, 37))


def test_smooth_is_a_centred_mean_narrower_early_and_cut_at_the_end():
    rng = np.random.default_rng(0)
    steps = np.arange(1, 401)
    v = 2 + rng.standard_normal(steps.size)
    w = 21
    got = smooth(steps, v, w)
    # Past the early steps, away from the end: pandas' centred rolling mean of w rows.
    full = pd.Series(v).rolling(w, center=True).mean().to_numpy()
    ok = (steps >= (w // 2) / EARLY_FRACTION) & (steps <= steps[-1] - w // 2)
    np.testing.assert_allclose(got[ok], full[ok], rtol=1e-12)
    # Early: the window spans s +- floor(0.2 s) steps; the first steps are not averaged.
    np.testing.assert_allclose(got[:4], v[:4])
    s = 20
    h = int(EARLY_FRACTION * s)
    assert got[s - 1] == pytest.approx(v[s - 1 - h:s + h].mean())
    # The end: the window is cut at the last step (the last value averages the last 11).
    assert got[-1] == pytest.approx(v[-(w // 2 + 1):].mean())
    # A constant stays constant, a line stays a line in the centred part.
    np.testing.assert_allclose(smooth(steps, np.full(steps.size, 3.0), w), 3.0)
    np.testing.assert_allclose(smooth(steps, 0.5 * steps, w)[ok], 0.5 * steps[ok])
    # The window counts steps, not rows: sparse rows 10 steps apart, window 21 -> 3 rows.
    sparse = np.arange(100, 401, 10)
    vals = rng.standard_normal(sparse.size)
    assert smooth(sparse, vals, 21)[5] == pytest.approx(vals[4:7].mean())


def test_training_curves_draw_smoothed_losses_heldout_markers_and_the_window():
    curves = study_curves()
    window = smoothing_window(curves.groupby("run_id")["step"].max())
    fig = F.plot_training_curves(curves)
    assert [ax.get_title() for ax in fig.axes] == ["mqa", "griffin"]  # the paper's family order
    for rid, g in curves.groupby("run_id"):
        g = g.sort_values("step")
        line = one(fig, f"curve:{rid}")
        np.testing.assert_allclose(line.get_xdata(), g["tokens"])
        np.testing.assert_allclose(line.get_ydata(), smooth(g["step"], g["loss"], window), rtol=1e-12)
        # Smoothing takes out most of the batch noise: compare with the noise-free curve.
        n, batch, steps, loss = SIZES[g["size"].iloc[0]]
        clean = pd.DataFrame(training_curve(n, batch * steps * 256, loss, steps=steps))["loss"].to_numpy()
        late = g["step"].to_numpy() > 100
        raw_err = np.std(np.log(g["loss"].to_numpy() / clean)[late])
        smooth_err = np.std(np.log(np.asarray(line.get_ydata()) / clean)[late])
        assert smooth_err < 0.3 * raw_err, (rid, smooth_err, raw_err)
        # The held-out evaluations sit on the same axes as dots of the run's colour.
        ev = g[g["heldout_loss"].notna()]
        assert list(ev["step"]) == [s for s in range(100, steps + 1, 100)] + ([steps] if steps % 100 else [])
        dots = one(fig, f"heldout:{rid}")
        assert dots.get_linestyle() == "None" and dots.get_marker() == "o"
        np.testing.assert_allclose(dots.get_xdata(), ev["tokens"])
        np.testing.assert_allclose(dots.get_ydata(), ev["heldout_loss"])
        assert to_rgba(dots.get_markerfacecolor()) == to_rgba(line.get_color())
        assert line.axes is dots.axes and line.axes.get_title() == g["family"].iloc[0]
    # The window is stated, in the title and in the legend.
    text = texts(fig)
    assert window == 29 and text.count("centred mean over 29 steps") >= 2, text
    assert "held-out" in text


def test_training_curves_tell_sizes_apart():
    curves = study_curves()
    fig = F.plot_training_curves(curves)
    color = {rid: to_rgba(one(fig, f"curve:{rid}").get_color()) for rid in curves["run_id"].unique()}
    for size in SIZES:  # one colour per size, in every panel
        assert color[f"mqa-{size}"] == color[f"griffin-{size}"]
    assert len({color[f"mqa-{s}"] for s in SIZES}) == len(SIZES)
    # Sequential: darker (lower luminance) for smaller models.
    lum = [np.dot(color[f"mqa-{s}"][:3], [0.2126, 0.7152, 0.0722]) for s in SIZES]
    assert lum == sorted(lum)
    # A legend of sizes, smallest first, with the parameter counts (which differ by family).
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert legend.get_title().get_text() == "model size"
    assert labels == ["s-small (30k-33k params)", "s-mid (80k-88k params)", "s-large (200k-220k params)"]
    assert [to_rgba(h.get_color()) for h in legend.legend_handles] == [color[f"mqa-{s}"] for s in SIZES]


def test_training_curves_window_argument_and_rows_split_over_a_step():
    curves = study_curves(noise=0.0)
    fig = F.plot_training_curves(curves, window=1)
    g = curves[curves["run_id"] == "mqa-s-mid"]
    np.testing.assert_allclose(one(fig, "curve:mqa-s-mid").get_ydata(), g["loss"])
    assert "not smoothed" in texts(fig)
    # A step whose held-out loss came in a row of its own (as a W&B history can): one point.
    ev = g[g["heldout_loss"].notna()]
    split = pd.concat([g.assign(heldout_loss=np.nan), ev.drop(columns=["loss"])], ignore_index=True)
    fig = F.plot_training_curves(split, window=1)
    np.testing.assert_allclose(one(fig, "curve:mqa-s-mid").get_ydata(), g["loss"])
    np.testing.assert_allclose(one(fig, "heldout:mqa-s-mid").get_ydata(), ev["heldout_loss"])


def test_size_palette_without_size_labels_uses_parameter_counts():
    frame = pd.DataFrame({"run_id": ["a", "b", "c"], "params_total": [2e6, 1e5, 2e6]})
    p = size_palette(frame, size_col="size")
    assert p.column == "params_total" and p.order == (1e5, 2e6)
    assert [h.get_label() for h in p.handles()] == ["100k params", "2M params"]
    assert p.color(frame.iloc[[0]]) == p.color(frame.iloc[[2]]) != p.color(frame.iloc[[1]])
    with pytest.raises(ValueError, match="no 'size' or 'params_total' column"):
        size_palette(frame.drop(columns=["params_total"]))


def test_loss_by_position_lines_and_size_legend():
    pos = pd.concat([pd.DataFrame({"run_id": f"{fam}-{s}", "family": fam, "size": s, "params_total": n,
                                   "position": np.arange(8), "loss": 2.0 + 1.0 / (np.arange(8) + 1) + k / 10})
                     for fam in ("hawk", "mqa") for k, (s, n) in enumerate((("a", 1e5), ("b", 1e6)))],
                    ignore_index=True)
    fig = F.plot_loss_by_position(pos)
    assert [ax.get_title() for ax in fig.axes] == ["mqa", "hawk"]
    for rid, g in pos.groupby("run_id"):
        line = one(fig, f"position:{rid}")
        np.testing.assert_allclose(line.get_xdata(), g["position"] + 1)
        np.testing.assert_allclose(line.get_ydata(), g["loss"])
    assert one(fig, "position:mqa-a").get_color() != one(fig, "position:mqa-b").get_color()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a (100k params)", "b (1M params)"]


def test_training_curves_from_a_run_store(tmp_path):
    """The registered figure on a store whose runs log every step (batch 4 to 16)."""
    runs = pd.DataFrame([dict(family=fam, size=size, N=n, D=b * steps * 256.0, L=loss, steps=steps, batch_size=b)
                         for fam in ("hawk", "griffin") for size, (n, b, steps, loss) in SIZES.items()])
    write_store(tmp_path, runs, sweep="curves", curve_noise=0.1, eval_every=100)
    from analysis.load import fit_frame, load_runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_runs(tmp_path / "sweeps" / "curves.json", echo=False)
    inputs = F.FigureInputs(frame=fit_frame(loaded.runs), curves=loaded.curves, positions=loaded.positions,
                            lengths=loaded.lengths)
    fig = F.FIGURES["training_curves"].build(inputs)
    assert [ax.get_title() for ax in fig.axes] == ["hawk", "griffin"]
    for rid, g in loaded.curves.groupby("run_id"):
        assert len(one(fig, f"curve:{rid}").get_xdata()) == len(g)
        assert len(one(fig, f"heldout:{rid}").get_xdata()) == g["heldout_loss"].notna().sum() > 1
    assert "centred mean over 29 steps" in texts(fig)
    written, skipped = F.render(inputs, str(tmp_path / "figs"), ["training_curves"], formats=("png",))
    assert not skipped and (tmp_path / "figs" / "training_curves.png").stat().st_size > 10_000
