"""The speed measurements of the paper's Figs 3, 1b and 4 (`griffin-measure`): the presets compose
and validate, eq. 5's batch search and cache bytes, a miniature of each measurement end to end
(JSON written atomically, figures whose plotted data equal the JSON), one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import paper_speed_figures as P
from analysis.figures import FIGURES, SkipFigure
from experiments import measure
from experiments.configuration import compose, to_dict
from experiments.paper import inference, train_speed
from experiments.spec import validate
from griffin_core import counting
from griffin_core.sizes import model_config

COMMON = ["experiment.measure.sizes=[cpu-30k]", "experiment.measure.malloc=default", "experiment.measure.repeats=2"]
TRAIN_MINI = ["experiment=train_speed", *COMMON, "experiment.measure.families=[mqa]",
              "experiment.measure.lengths=[8,16]", "experiment.measure.tokens_per_batch=16",
              "experiment.measure.local_window=8", "experiment.measure.min_call_seconds=0"]
INFER_MINI = ["experiment=inference", *COMMON, "experiment.measure.families=[mqa,hawk]",
              "experiment.measure.prefill_lengths=[0]", "experiment.measure.decode_lengths=[2,4]",
              "experiment.measure.sample_lengths=[2,4]", "experiment.measure.batch=2",
              "experiment.measure.max_batch=2", "experiment.measure.local_window=8",
              "experiment.measure.cache_lengths=[4,8,16]"]


class Inputs:
    """What the figure builders read: only `root` (FigureInputs gains it)."""

    def __init__(self, root):
        self.root = root


def artists(fig, gid):
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


def one(fig, gid):
    found = artists(fig, gid)
    assert len(found) == 1, (gid, len(found))
    return found[0]


def xy(line):
    return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("preset,cls", [("train_speed", train_speed.TrainSpeedSettings),
                                        ("inference", inference.InferenceSettings)])
def test_presets_compose_validate_and_leave_a_valid_training_config(preset, cls):
    cfg = to_dict(compose([f"experiment={preset}"]))
    assert cfg["experiment"]["name"] == preset and cfg["experiment"]["measure"]["kind"] == preset
    assert cfg["experiment"]["sweep"] == {}
    settings = cls.from_config(cfg)
    validate(cfg)  # the training fields stay valid: griffin-sweep experiment=<preset> --dry-run plans
    plan = (train_speed if preset == "train_speed" else inference).plan(settings)
    if preset == "train_speed":
        assert settings.lengths == (256, 512, 1024) and len(settings.sizes) == 2
        assert {r["batch"] * r["length"] for r in plan["rows"]} == {settings.tokens_per_batch}
        assert not plan["skipped"]
        griffin = [r for r in plan["rows"] if r["family"] == "griffin"]
        assert all(r["local_window"] == r["length"] // 2 for r in griffin if r["length"] == 256)
    else:
        assert settings.batch == 16 and settings.prefill_lengths == (0, 4096)
        assert settings.sample_lengths == (512, 1024, 2048, 4096)
        mqa = [r for r in plan["throughput"] if r["family"] == "mqa"]
        assert mqa[-1]["batch"] < mqa[0]["batch"]  # the KV cache shrinks MQA's batch at long lengths
        assert all(r["eq5_bytes"] <= r["budget_bytes"] for r in plan["throughput"])


def test_sweep_dry_run_of_a_measurement_preset(tmp_path, capsys):
    from launch.cli import sweep_main

    assert sweep_main(["experiment=train_speed", "--dry-run", f"store.root={tmp_path}"]) == 0


@pytest.mark.parametrize("override,match", [
    (["experiment=smoke_cpu"], "not a measurement preset"),
    (["experiment=train_speed", "experiment.measure.lengths=[100]"], "tokens_per_batch"),
    (["experiment=train_speed", "experiment.measure.families=[mqa,gpt]"], "families"),
    (["experiment=inference", "experiment.measure.sizes=[cpu-huge]"], "size"),
    (["experiment=inference", "experiment.measure.memory_budget_gb=0"], "memory_budget_gb"),
    (["experiment=train_speed", "experiment.measure.memory_limit_gb=-1"], "memory_limit_gb"),
    (["experiment=inference", "experiment.measure.decode_lengths=[0]"], "decode_lengths"),
    (["experiment=inference", "experiment.measure.batch=abc"], "batch"),
])
def test_bad_settings_are_one_line_errors(override, match, capsys):
    assert measure.main([*override, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("griffin-measure: error:") and match in err and "\n" not in err


@pytest.mark.parametrize("preset", ["train_speed", "inference", "long_context"])
@pytest.mark.parametrize("families", [["mamba2"], ["hawk", "mamba2"]])
def test_family_on_the_command_line_selects_the_families_measured(preset, families, capsys, tmp_path):
    """Issue 14: `family=mamba2` or `family=hawk,mamba2` chooses the families of the speed presets as
    it does the sweep presets' (long_context is one), replacing the preset's list, and the plan says so."""
    from launch.cli import sweep_main

    command = sweep_main if preset == "long_context" else measure.main
    args = [f"experiment={preset}", f"family={','.join(families)}", f"store.root={tmp_path}", "--dry-run"]
    assert command(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "cpu-190k" in line]  # one line per run or measured point
    if preset == "long_context":
        named = {line.split()[1].split("-cpu-")[0] for line in rows}
    elif preset == "train_speed":
        named = {line.split("|")[2].strip() for line in rows}
    else:
        named = {line.split()[1].rstrip(":") for line in rows}
    assert rows and named == set(families), out
    presets = {"long_context": "mqa,mqa_nope,hawk,griffin"}.get(preset, "mqa,hawk,griffin")
    assert f"axis family: the command line's {','.join(families)} replaces the preset's {presets}" in out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("preset", ["train_speed", "inference", "long_context"])
def test_an_unknown_family_is_one_line(preset, capsys, tmp_path):
    from launch.cli import sweep_main

    command = sweep_main if preset == "long_context" else measure.main
    assert command([f"experiment={preset}", "family=hawk,nope", f"store.root={tmp_path}", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nope" in err and ("family=nope" in err or "family/nope" in err), err
    assert not any(tmp_path.iterdir())


def test_dry_run_prints_the_plan(capsys, tmp_path):
    assert measure.main(["experiment=inference", f"store.root={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "throughput: 12 points" in out and "budget allows" in out
    assert not (tmp_path / "measurements").exists()


# --------------------------------------------------------------------------- eq. 5


def test_budget_batch_is_the_largest_that_fits_eq5():
    budget = 64e6
    for family in ("mqa", "hawk", "griffin"):
        cfg = model_config(family, "cpu-190k", 256, local_window=1024)
        for length in (513, 4097):
            b = inference.budget_batch(cfg, length, budget)
            assert inference.eq5_bytes(cfg, b, length) <= budget < inference.eq5_bytes(cfg, b + 1, length)
    mqa = model_config("mqa", "cpu-190k", 256)
    assert inference.budget_batch(mqa, 8193, budget) < inference.budget_batch(mqa, 1025, budget)
    assert inference.budget_batch(mqa, 10, counting.param_bytes(mqa)) == 0  # parameters alone fill it
    assert inference.throughput_batch(mqa, 512, budget, cap=7) == (7, inference.budget_batch(mqa, 513, budget))


def test_cache_bytes_formula_matches_the_allocated_caches():
    for family in ("mqa", "hawk", "griffin"):
        cfg = model_config(family, "cpu-30k", 256, local_window=8)
        sizes = [inference.allocated_cache_bytes(cfg, n) for n in (4, 64)]
        assert sizes == [counting.decode_cache_bytes(cfg, n) for n in (4, 64)]
        assert (sizes[1] > sizes[0]) == (family == "mqa")  # recurrent and local caches are constant


# --------------------------------------------------------------------------- miniatures


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Both miniatures, run through griffin-measure's main into one store."""
    root = tmp_path_factory.mktemp("store")
    for argv in (TRAIN_MINI, INFER_MINI):
        assert measure.main([*argv, f"store.root={root}", "--quiet"]) == 0
    return root


def test_train_speed_miniature_writes_its_table_and_fig3_plots_it(store):
    path = store / "measurements" / "train_speed.json"
    data = json.loads(path.read_text())
    assert sorted(p.name for p in path.parent.iterdir()) == ["inference.json", "train_speed.json"]  # no temp left
    assert data["kind"] == "train_speed" and data["machine"]["usable_cores"] >= 1
    assert data["settings"]["lengths"] == [8, 16] and data["settings"]["tokens_per_batch"] == 16
    rows = data["results"]["rows"]
    assert [(r["length"], r["batch"]) for r in rows] == [(8, 2), (16, 1)]
    ref = rows[0]
    assert ref["ratio"] == 1.0 and ref["reference"] == "cpu-30k/mqa/8"
    for r in rows:
        assert r["step_ms"] > 0 and len(r["step_ms_rounds"]) == 2 and np.isfinite(r["loss_last"])
        assert r["tokens_per_s"] == pytest.approx(16 / (r["step_ms"] / 1e3))
    fig = FIGURES["fig3_train_speed"].build(Inputs(str(store)))
    x, y = xy(one(fig, "ratio:cpu-30k:mqa"))
    np.testing.assert_array_equal(x, [8, 16])
    np.testing.assert_allclose(y, [r["ratio"] for r in rows])
    np.testing.assert_allclose(xy(one(fig, "flops:cpu-30k:mqa"))[1], [r["flop_ratio_as_executed"] for r in rows])


def test_inference_miniature_writes_its_tables_and_figs_1b_and_4_plot_them(store):
    data = json.loads((store / "measurements" / "inference.json").read_text())
    assert data["kind"] == "inference"
    res = data["results"]
    lat = pd.DataFrame(res["latency"])
    assert len(lat) == 4 and set(lat["prefill"]) == {0} and set(lat["prompt_tokens"]) == {1}
    assert (lat["total_ms"] > 0).all() and (lat["prefill_ms"] > 0).all()
    np.testing.assert_allclose(lat["decode_ms"], lat["total_ms"] - lat["prefill_ms_pooled"])
    fig = FIGURES["fig1b_decode_latency"].build(Inputs(str(store)))
    for fam in ("mqa", "hawk"):
        g = lat[lat["family"] == fam].sort_values("decoded")
        x, y = xy(one(fig, f"latency:cpu-30k:0:{fam}"))
        np.testing.assert_array_equal(x, g["decoded"])
        np.testing.assert_allclose(y, g["total_ms"] / 1e3)
    thr = pd.DataFrame(res["throughput"])
    assert set(thr["batch"]) == {2} and (thr["batch_by_budget"] > 2).all() and thr["capped"].all()
    np.testing.assert_allclose(thr["tokens_per_s"], thr["batch"] * thr["sample_length"] / (thr["total_ms"] / 1e3))
    cache = pd.DataFrame(res["cache"])
    assert (cache["cache_bytes"] == cache["allocated_bytes"]).all()
    fig = FIGURES["fig4_throughput"].build(Inputs(str(store)))
    for fam in ("mqa", "hawk"):
        g = thr[thr["family"] == fam].sort_values("sample_length")
        x, y = xy(one(fig, f"throughput:cpu-30k:{fam}"))
        np.testing.assert_array_equal(x, g["sample_length"])
        np.testing.assert_allclose(y, g["tokens_per_s"])
        c = cache[cache["family"] == fam].sort_values("length")
        x, y = xy(one(fig, f"cache:cpu-30k:{fam}"))
        np.testing.assert_array_equal(x, c["length"])
        np.testing.assert_allclose(y, c["cache_bytes"])


# --------------------------------------------------------------------------- figures alone


def test_griffin_figures_draws_from_a_store_of_measurements_alone(store, tmp_path, capsys):
    from analysis.cli import figures_main

    assert not (store / "runs").exists()
    out = tmp_path / "figs"
    assert figures_main([str(store), "--out", str(out), "--formats", "png"]) == 0
    assert {"fig3_train_speed.png", "fig1b_decode_latency.png", "fig4_throughput.png"} <= {p.name for p in out.iterdir()}
    # A folder with neither runs nor measurements is still an error naming it.
    assert figures_main([str(tmp_path / "figs")]) == 2
    assert "not a run store" in capsys.readouterr().err


def test_figures_skip_without_a_measurement(tmp_path):
    for name in ("fig3_train_speed", "fig1b_decode_latency", "fig4_throughput"):
        with pytest.raises(SkipFigure, match="griffin-measure"):
            FIGURES[name].build(Inputs(str(tmp_path)))
        with pytest.raises(SkipFigure):
            FIGURES[name].build(Inputs(None))


def test_plots_draw_a_panel_per_size_and_per_prefill():
    rows = [{"size": s, "family": f, "length": t, "batch": 64 // t, "tokens_per_step": 64, "ratio": r,
             "ratio_range": [r * 0.9, r * 1.1], "flop_ratio_as_executed": r}
            for s in ("a", "b") for f, k in (("mqa", 1.0), ("griffin", 0.0)) for t, r in ((8, 1.0), (16, 1 + k))]
    fig = P.plot_train_speed(P.train_speed_frame({"results": {"rows": rows}}))
    assert len(fig.axes) == 2
    np.testing.assert_allclose(xy(one(fig, "ratio:b:mqa"))[1], [1.0, 2.0])
    verts = one(fig, "ratio_range:b:mqa").get_paths()[0].vertices
    assert verts[:, 1].max() == pytest.approx(2.2)
    lat = pd.DataFrame([{"size": "a", "family": f, "prefill": p, "decoded": n, "batch": 16, "total_ms": p + n}
                        for f in ("mqa", "hawk") for p in (0, 64) for n in (8, 16)])
    fig = P.plot_decode_latency(lat)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(xy(one(fig, "latency:a:64:hawk"))[1], [0.072, 0.080])


def test_programs_over_the_memory_limit_are_skipped_not_run(store):
    """XLA's memory analysis of each compiled program against memory_limit_gb (the hawk program
    is the inference miniature's, so it comes from the compilation cache)."""
    cfg = to_dict(compose([*INFER_MINI, "experiment.measure.families=[hawk]", "experiment.measure.decode_lengths=[2]",
                           "experiment.measure.sample_lengths=[2]", "experiment.measure.memory_limit_gb=1e-9"]))
    result = inference.run_inference(inference.InferenceSettings.from_config(cfg))
    assert result["latency"] == [] and result["throughput"] == []
    assert len(result["skipped"]) == 2 and all("XLA memory analysis" in r["reason"] for r in result["skipped"])


def test_latency_table_subtracts_the_prefill_pooled_over_decoded_lengths():
    base = {"size": "s", "family": "mqa", "prefill": 64, "batch": 2}
    rows = inference.latency_table([
        {**base, "decoded": 4, "total_ms_rounds": [40.0, 44.0], "prefill_ms_rounds": [10.0, 12.0]},
        {**base, "decoded": 8, "total_ms_rounds": [20.0, 21.0, 22.0], "prefill_ms_rounds": [30.0, 11.0]},
    ])
    assert [r["prefill_ms_pooled"] for r in rows] == [11.5, 11.5]
    assert [r["prefill_ms"] for r in rows] == [11.0, 20.5]
    assert rows[0]["decode_ms"] == 42.0 - 11.5 and rows[0]["decode_ms_per_token"] == (42.0 - 11.5) / 4
    assert rows[0]["decode_tokens_per_s"] == pytest.approx(2 * 4 / ((42.0 - 11.5) / 1e3))
    assert rows[1]["decode_ms"] == 21.0 - 11.5
