"""The Fig 5 and Fig 6 presets (long_context, selective_copy, induction_heads): every grid point
composes and validates with the paper's settings, and a miniature of each experiment runs end to
end in process (tiny model, a few steps) and draws its figure with the data it produced."""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest

import analysis.paper_task_figures  # noqa: F401  (registers the figures)
from experiments.configuration import compose, to_dict
from experiments.spec import validate

PRESETS = ("long_context", "selective_copy", "induction_heads")
TINY = ["size=cpu-30k", "trainer.budget.rule=steps", "trainer.batch_size=4", "trainer.checkpoint_every=0",
        "logger=none", "optim.lr=3e-3"]


def _grid(overrides):
    from launch.grid import expand

    grid = expand(overrides)
    axes, grid = grid.axes, grid.points
    return axes, [validate(to_dict(compose(point))) for point in grid]


def _layers(model):
    return [model.block_pattern[i % len(model.block_pattern)] for i in range(model.depth)]


# --------------------------------------------------------------------------------------
# The presets


def test_mqa_nope_family_and_task_size_are_registered():
    spec = validate(to_dict(compose(["family=mqa_nope", "size=task-5x64"])))
    assert spec.model.block_pattern == ("attention",) and spec.model.use_rope is False
    assert (spec.model.width, spec.model.depth) == (64, 5)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_grid_point_composes_and_validates(preset):
    axes, specs = _grid([f"experiment={preset}"])
    assert all(s.config["experiment"]["name"] == preset for s in specs)
    families = [s.family for s in specs]
    by_family = {s.family: s for s in specs}
    if preset == "long_context":
        assert families == ["mqa", "mqa_nope", "hawk", "griffin"]
        assert {s.size for s in specs} == {"cpu-190k"}
        for s in specs:
            assert s.data["source"] == "embedded" and s.schedule.seq_len == 256 and s.model.local_window == 128
            assert s.data["position_eval_factor"] >= 4
        assert by_family["mqa"].model.use_rope and not by_family["mqa_nope"].model.use_rope
        # The same runs as scaling_cpu's at this size (content-addressed ids): only NoPE is new.
        from experiments.runner import resolve

        scaling = validate(to_dict(compose(["experiment=scaling_cpu", "family=hawk", "size=cpu-190k"])))
        assert by_family["hawk"].semantic() == scaling.semantic()
        assert resolve(by_family["hawk"].config).run_id == resolve(scaling.config).run_id
        return
    assert set(families) >= {"mqa", "hawk", "griffin"}
    for s in specs:
        assert s.size == "task-5x64" and s.model.vocab_size == 16
        assert (s.model.width, s.model.depth) == (64, 5)
        assert 200_000 < s.params().total < 300_000  # the paper: about 250K parameters
        assert s.budget.rule == "steps" and 0 < s.trainer["eval_every"] < s.schedule.steps
        assert s.data["source"] == preset
    assert _layers(by_family["griffin"].model) == ["recurrent", "recurrent", "local_attention", "recurrent",
                                                   "recurrent"]
    if preset == "selective_copy":
        for s in specs:
            assert (s.schedule.seq_len, s.data["task_num_data_tokens"], s.model.local_window) == (1024, 16, 512)
    else:
        assert "mqa_nope" in families
        for s in specs:
            assert (s.schedule.seq_len, s.model.local_window) == (256, 128)
            assert max(s.data["task_eval_lengths"]) >= 4 * s.schedule.seq_len


def test_presets_pass_their_dry_run(tmp_path, capsys):
    from launch.cli import sweep_main

    for preset in PRESETS:
        assert sweep_main([f"experiment={preset}", f"store.root={tmp_path}", "--dry-run"]) == 0, preset
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------
# Miniatures: the presets' grids with tiny settings, executed serially in process


def _run_grid(overrides, root):
    from experiments.runner import execute, resolve, store_for

    _, specs = _grid(overrides + [f"store.root={root}"])
    reports = [execute(resolve(s.config), store_for(s.config), progress=False) for s in specs]
    assert [r.status for r in reports] == ["SUCCESS"] * len(specs)
    return reports


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store holding the three miniature experiments (so each figure must pick its own runs)."""
    from experiments.evaluate import main as eval_main

    root = tmp_path_factory.mktemp("paper_tasks")
    long_ctx = _run_grid(["experiment=long_context", "family=griffin", *TINY, "trainer.budget.value=4",
                          "trainer.eval_every=2", "data.seq_len=32", "model.local_window=16",
                          "data.eval_sequences=8", "data.position_eval_factor=2", "data.position_eval_docs=4"], root)
    run_dirs = [str(root / "runs" / r.run_id) for r in long_ctx]
    assert eval_main([*run_dirs, "--length", "128", "--docs", "2"]) == 0
    copy = _run_grid(["experiment=selective_copy", "experiment.sweep.family=hawk", *TINY, "trainer.budget.value=6",
                      "trainer.eval_every=2", "data.seq_len=24", "data.task_num_data_tokens=4",
                      "model.local_window=8", "data.eval_sequences=8"], root)
    induction = _run_grid(["experiment=induction_heads", "family=mqa,griffin", *TINY, "trainer.budget.value=4",
                           "trainer.eval_every=2", "data.seq_len=16", "model.local_window=8",
                           "data.eval_sequences=8", "data.task_eval_lengths=[16,32]"], root)
    return {"root": root, "long_context": long_ctx, "selective_copy": copy, "induction_heads": induction}


def _inputs(root, with_root=True):
    from analysis.figures import FigureInputs
    from analysis.load import fit_frame, load_store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = load_store(root, echo=False)
    inputs = FigureInputs(frame=fit_frame(runs.runs), curves=runs.curves, positions=runs.positions,
                          lengths=runs.lengths, runs=runs.runs)
    inputs.root = str(root) if with_root else None  # a field once the lead adds it; an attribute until then
    return inputs, runs


def _artist(fig, gid):
    found = [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]
    assert len(found) == 1, (gid, len(found))
    return found[0]


def test_fig5_long_context_draws_the_griffin_eval_files(store):
    from analysis import paper_task_figures as P
    from analysis.figures import FIGURES

    assert {"fig5_long_context", "fig6_selective_copy", "fig6_induction_heads"} <= set(FIGURES)
    inputs, _ = _inputs(store["root"])
    fig = FIGURES["fig5_long_context"].build(inputs)
    for report in store["long_context"]:
        path = store["root"] / "runs" / report.run_id / "eval" / "loss_by_position_128.json"
        losses = json.loads(path.read_text())["loss_by_position"]
        assert len(losses) == 128 and len(report.result.heldout_loss_by_position) == 64
        expected = P.bin_losses(losses)
        line = _artist(fig, f"position:{report.run_id}")
        np.testing.assert_allclose(line.get_xdata(), expected["position"])
        np.testing.assert_allclose(line.get_ydata(), expected["loss"])
        # the bins cover every position once, and their means are the losses' means
        assert expected["count"].sum() == 128
        np.testing.assert_allclose((expected["loss"] * expected["count"]).sum(), np.sum(losses), rtol=1e-9)
    assert list(_artist(fig, "train_length").get_xdata()) == [32, 32]
    task_ids = {r.run_id for k in ("selective_copy", "induction_heads") for r in store[k]}
    assert not [a for ax in fig.axes for a in ax.get_children() if str(a.get_gid()).split(":")[-1] in task_ids]


def test_fig5_falls_back_to_result_json_without_eval_files(store):
    from analysis import paper_task_figures as P

    inputs, runs = _inputs(store["root"], with_root=False)
    table = P.long_context_table(inputs)
    # without the store, the task runs are still recognised (by their fingerprints) and left out
    assert set(table["run_id"]) == {r.run_id for r in store["long_context"]}
    assert set(table["origin"]) == {"result"} and set(table["length"]) == {64}
    fig = P.fig5_long_context(inputs)
    for report in store["long_context"]:
        expected = P.bin_losses(report.result.heldout_loss_by_position)
        np.testing.assert_allclose(_artist(fig, f"position:{report.run_id}").get_ydata(), expected["loss"])


def test_fig6_selective_copy_plots_heldout_accuracy_against_steps(store):
    from analysis.figures import FIGURES

    inputs, runs = _inputs(store["root"])
    fig = FIGURES["fig6_selective_copy"].build(inputs)
    (report,) = store["selective_copy"]
    rows = runs.curves[(runs.curves["run_id"] == report.run_id) & runs.curves["heldout_accuracy"].notna()]
    assert list(rows["step"]) == [2, 4, 6]
    line = _artist(fig, f"copy:{report.run_id}")
    assert list(line.get_xdata()) == [2, 4, 6]
    np.testing.assert_allclose(line.get_ydata(), rows["heldout_accuracy"])
    assert line.get_ydata()[-1] == pytest.approx(report.result.heldout_accuracy)
    plotted = {a.get_gid() for ax in fig.axes for a in ax.get_lines() if str(a.get_gid()).startswith("copy:")}
    assert plotted == {f"copy:{report.run_id}"}  # the induction runs also have accuracy rows


def test_fig6_induction_heads_plots_accuracy_by_length(store):
    from analysis import paper_task_figures as P
    from analysis.figures import FIGURES

    for with_root in (True, False):
        inputs, _ = _inputs(store["root"], with_root)
        fig = FIGURES["fig6_induction_heads"].build(inputs)
        for report in store["induction_heads"]:
            acc = report.result.accuracy_by_length
            assert sorted(int(k) for k in acc) == [16, 32]
            line = _artist(fig, f"length:{report.run_id}")
            assert list(line.get_xdata()) == [16, 32]
            np.testing.assert_allclose(line.get_ydata(), [acc["16"], acc["32"]])
        assert list(_artist(fig, "train_length").get_xdata()) == [16, 16]
        assert _artist(fig, "chance").get_ydata()[0] == pytest.approx(1 / 15)
        assert set(P.induction_table(inputs)["family"]) == {"mqa", "griffin"}


def test_figures_skip_without_their_runs(store):
    from analysis import paper_task_figures as P
    from analysis.figures import FigureInputs, SkipFigure

    empty = FigureInputs(frame=pd.DataFrame(), curves=pd.DataFrame(), positions=pd.DataFrame(),
                         lengths=pd.DataFrame(), runs=pd.DataFrame())
    for build in (P.fig5_long_context, P.fig6_selective_copy, P.fig6_induction_heads):
        with pytest.raises(SkipFigure):
            build(empty)
    inputs, runs = _inputs(store["root"])
    keep = {r.run_id for r in store["long_context"]}
    only_text = FigureInputs(frame=inputs.frame, curves=runs.curves[runs.curves["run_id"].isin(keep)],
                             positions=runs.positions, lengths=runs.lengths.iloc[:0],
                             runs=runs.runs[runs.runs["run_id"].isin(keep)])
    only_text.root = str(store["root"])
    for build in (P.fig6_selective_copy, P.fig6_induction_heads):
        with pytest.raises(SkipFigure):
            build(only_text)


def test_position_bins_are_log_spaced_and_cover_every_position():
    from analysis.paper_task_figures import bin_losses, position_bins

    edges = position_bins(2048)
    assert edges[0] == 1 and edges[-1] == 2049 and np.all(np.diff(edges) > 0)
    widths = np.diff(edges)
    assert widths[-1] > 50 * widths[0]
    b = bin_losses(np.arange(1, 2049, dtype=float))
    assert b["count"].sum() == 2048 and list(b["lo"][1:]) == list(b["hi"][:-1] + 1)
    np.testing.assert_allclose(b["loss"], (b["lo"] + b["hi"]) / 2)  # mean of lo..hi


def test_paper_task_figures_render_to_files(store, tmp_path):
    from analysis.figures import render

    inputs, _ = _inputs(store["root"])
    written, skipped = render(inputs, str(tmp_path), ["fig5_long_context", "fig6_selective_copy",
                                                      "fig6_induction_heads"], formats=("png",))
    assert not skipped and sorted(pathlib.Path(p).name for p in written) == [
        "fig5_long_context.png", "fig6_induction_heads.png", "fig6_selective_copy.png"]
