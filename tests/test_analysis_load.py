"""Loading runs: a synthetic run store written through RunStore leases (diverged and failed
runs excluded with a warning, corrupt results named), sweep manifests, a fake W&B API, the
fit frame under each FLOP convention, and no JAX import."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from analysis.load import (ExcludedRunsWarning, corpus_entropies, fit_frame, flatten_result, load_runs, load_store,
                           load_wandb)
from analysis.report import analyse, convention_sweep
from analysis.synthetic import result_record, write_store
from run_store import RunStore, StoreError

REPO = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::analysis.load.ExcludedRunsWarning")


def ladder(families=("mqa", "griffin"), sizes=(1e5, 2e5, 5e5, 1e6, 2e6, 5e6), tpp=20.0, E=1.8, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for fam, A in zip(families, (40.0, 36.0, 38.0)):
        for i, N in enumerate(sizes):
            D = tpp * N
            L = (E + A * (6 * N * D) ** -0.12) * np.exp(0.003 * rng.standard_normal())
            rows.append({"family": fam, "size": f"s{i}", "N": N, "D": D, "L": L})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module (tests only read it; one adds a sweep manifest)."""
    tmp_path = tmp_path_factory.mktemp("store")
    runs = ladder()
    bad = pd.DataFrame([{"family": "mqa", "size": "s9", "N": 1e7, "D": 2e8, "L": 2.0, "status": "DIVERGED"},
                        {"family": "griffin", "size": "s9", "N": 1e7, "D": 2e8, "L": 2.0, "status": "FAILED"}])
    ids = write_store(tmp_path, pd.concat([runs, bad], ignore_index=True), sweep="ladder", positions=4)
    return tmp_path, ids


def test_store_loads_one_row_per_run_and_excludes_failures_visibly(store, capsys):
    root, ids = store
    with pytest.warns(ExcludedRunsWarning, match="excluded 2 of 14 runs"):
        runs = load_store(root)
    err = capsys.readouterr().err
    assert "excluding run mqa-s9" in err and "DIVERGED: at step 50: loss is NaN" in err
    assert "excluding run griffin-s9" in err and "FAILED" in err
    assert len(runs.runs) == 12 and set(runs.excluded["state"]) == {"DIVERGED", "FAILED"}
    r = runs.runs
    for col in ("flops_6N", "flops_6N_nonembed", "flops_exact", "flops_as_executed", "versions_python",
                "heldout_loss_nats", "budget", "params_non_embedding", "schema_version"):
        assert col in r.columns, col
    assert isinstance(r["heldout_loss_by_position"].iloc[0], list)
    # Curves: long, one row per metrics line, with the run's family and size.
    assert set(runs.curves["run_id"]) == set(r["run_id"])
    assert {"step", "tokens", "flops", "loss", "family", "params_total"} <= set(runs.curves.columns)
    assert len(runs.curves) == 12 * 6
    assert len(runs.positions) == 12 * 4 and list(runs.positions["position"][:4]) == [0, 1, 2, 3]


def test_sweep_manifest_selects_its_runs(store):
    root, ids = store
    sweep_file = os.path.join(root, "sweeps", "ladder.json")
    RunStore(root).write_sweep("small", {"runs": ids[:3]})
    runs = load_runs(os.path.join(root, "sweeps", "small.json"), echo=False)
    assert runs.sweep == "small" and list(runs.runs["run_id"]) == ids[:3]
    with pytest.warns(ExcludedRunsWarning):
        full = load_store(root, sweep="ladder", echo=False)
    assert len(full.runs) == 12 and full.manifest["runs"] == ids
    assert os.path.exists(sweep_file)
    with pytest.raises(StoreError, match="no such sweep"):
        load_store(root, sweep="nope")


def test_corrupt_or_newer_run_files_are_named_and_skipped(tmp_path, capsys):
    """One damaged run must not hide the others: it is excluded as CORRUPT, with the file named
    on stderr, and the rest load."""
    ids = write_store(tmp_path, ladder(families=("mqa",), sizes=(1e5, 1e6, 1e7)))
    path = tmp_path / "runs" / ids[0] / "result.json"
    rec = result_record(ids[0], "mqa", "s0", N=1e5, D=2e6, L=3.0)
    cases = [("{not json", "corrupt result file"),
             (json.dumps({**rec, "schema_version": 99}), "newer than"),
             (json.dumps({**{k: v for k, v in rec.items() if k != "tokens"}, "schema_version": 1}), "tokens missing")]
    for text, message in cases:
        path.write_text(text)
        with pytest.warns(ExcludedRunsWarning, match="excluded 1 of 3"):
            runs = load_store(tmp_path)
        assert sorted(runs.runs["run_id"]) == sorted(ids[1:])
        (row,) = runs.excluded.itertuples()
        assert row.run_id == ids[0] and row.state == "CORRUPT" and str(path) in row.reason and message in row.reason
        err = capsys.readouterr().err
        assert f"excluding run {ids[0]}: CORRUPT: {path}" in err and message in err
    path.write_text(json.dumps({**rec, "schema_version": 2}))
    status = tmp_path / "runs" / ids[1] / "status.json"
    status.write_text('{"state": "SUCC')
    with pytest.warns(ExcludedRunsWarning, match="excluded 1 of 3"):
        runs = load_store(tmp_path)
    assert list(runs.excluded["run_id"]) == [ids[1]] and str(status) in runs.excluded["reason"][0]


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="not a run store"):
        load_store(tmp_path)


def test_fit_frame_follows_the_convention(store):
    root, _ = store
    runs = load_store(root, echo=False).runs
    exact = fit_frame(runs, "exact")
    nonembed = fit_frame(runs, "6N_nonembed")
    np.testing.assert_allclose(exact["C"], runs["flops_exact"])
    np.testing.assert_allclose(nonembed["N"], runs["params_non_embedding"])
    np.testing.assert_allclose(exact["L"], runs["heldout_loss_nats"])
    with pytest.raises(ValueError, match="not in these results"):
        fit_frame(runs, "bogus")


def test_corpus_entropies_only_for_the_embedded_corpus():
    from griffin_core.data import make_source

    fp = make_source("corpus").fingerprint()
    ent = corpus_entropies(pd.DataFrame({"corpus_fingerprint": [fp, fp]}))
    assert ent is not None and 0 < ent["bigram_nats"] < ent["unigram_nats"]
    assert corpus_entropies(pd.DataFrame({"corpus_fingerprint": ["other"]})) is None


def test_analyse_and_convention_table(store):
    root, _ = store
    runs = load_store(root, echo=False)
    rep = analyse(runs, n_boot=50, grid="coarse", forms=("powerlaw", "saturating", "chinchilla", "isoflop"))
    assert set(rep.fits) == {"powerlaw", "saturating"}
    assert "tokens-per-parameter" in rep.refused["chinchilla"] and "FLOP budget" in rep.refused["isoflop"]
    table = rep.table()
    assert {"a", "b", "E"} <= set(table["parameter"]) and (table["convention"] == "exact").all()
    conv = convention_sweep(runs.runs, forms=("powerlaw",), n_boot=50)
    assert set(conv["convention"]) == {"6N", "6N_nonembed", "exact", "as_executed"}
    b = conv.set_index(["convention", "family"])["estimate"]
    # exact = 1.08 x 6N here: a constant factor leaves the exponent; non-embedding counting moves C's spread
    assert b["exact", "mqa"] == pytest.approx(b["6N", "mqa"], rel=1e-9)
    assert len(rep.comparisons) == 2 * 2 * 3  # two forms, two ordered pairs, three compute values


class FakeRun:
    def __init__(self, run_id, summary, history=(), state="finished"):
        self.id, self.state, self.summary_metrics, self._history = run_id, state, summary, list(history)

    def scan_history(self):
        return iter(self._history)


class FakeApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return self._runs


def test_wandb_loader_gives_the_store_schema(store):
    root, ids = store
    stored = load_store(root, echo=False)
    by_id = stored.runs.set_index("run_id")
    good = [by_id.loc[ids[i]] for i in range(2)]
    runs = []
    for i in range(2):
        rid = ids[i]
        summary = RunStore(root).read_result(rid).to_json()
        summary.update({"_step": 100, "_runtime": 3.0, "loss": 9.9})  # W&B's own keys are ignored
        hist = [{"_step": s, "_runtime": 0.1, "loss": 3.0 - s / 100, "tokens": 10.0 * s} for s in (1, 50, 100)]
        runs.append(FakeRun(rid, summary, hist))
    diverged = RunStore(root).read_result(next(i for i in ids if i.startswith("mqa-s9"))).to_json()
    runs.append(FakeRun("d", diverged, state="failed"))
    runs.append(FakeRun("c", {"loss": 3.0}, state="crashed"))
    api = FakeApi(runs)
    with pytest.warns(ExcludedRunsWarning, match="excluded 2 of 4"):
        w = load_wandb("ent/proj", group="ladder", api=api, echo=False)
    assert api.calls == [("ent/proj", {"group": "ladder"})]
    assert list(w.runs["run_id"]) == ids[:2] and w.sweep == "ladder"
    assert set(w.runs.columns) == set(stored.runs.columns)
    for col in ("flops_exact", "heldout_loss_nats", "params_total"):
        np.testing.assert_allclose(w.runs[col], [g[col] for g in good])
    assert list(w.curves["step"][:3]) == [1, 50, 100] and "_runtime" not in w.curves.columns
    assert set(w.excluded["state"]) == {"DIVERGED", "CRASHED"}
    bad = FakeRun("x", {**diverged, "status": "SUCCESS", "schema_version": 1, "tokens": "many"})
    with pytest.warns(ExcludedRunsWarning, match="excluded 1 of 1"):
        w = load_wandb("ent/proj", api=FakeApi([bad]), echo=False)
    assert list(w.excluded["state"]) == ["CORRUPT"] and "wandb run ent/proj/x" in w.excluded["reason"][0]


def test_flatten_result():
    row = flatten_result({"flops": {"exact": 1.0, "6N": 2.0}, "heldout_loss_by_position": [1, 2],
                          "accuracy_by_length": {"128": 0.5}, "family": "hawk"})
    assert row == {"flops_exact": 1.0, "flops_6N": 2.0, "heldout_loss_by_position": [1, 2],
                   "accuracy_by_length": {"128": 0.5}, "family": "hawk"}


def test_analysis_never_imports_jax(store):
    root, _ = store
    code = textwrap.dedent(f"""
        import sys, warnings
        warnings.simplefilter("ignore")
        import analysis, analysis.figures, analysis.cli, analysis.load, analysis.report, analysis.bench_fit
        assert analysis.figures.discover() == []  # the *_figures modules griffin-figures loads
        runs = analysis.load_store({str(root)!r}, echo=False)
        analysis.corpus_entropies(runs.runs)
        assert len(runs.runs) == 12
        assert 'jax' not in sys.modules, sorted(m for m in sys.modules if m.startswith('jax'))
        print('ok')
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
