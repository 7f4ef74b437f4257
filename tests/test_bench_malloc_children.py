"""The malloc comparison of griffin-bench train (experiments/benchmarks/malloc_children.py):
children run in every setting through the CLI, the settings' rotating order, the summary's
medians and ratios, and what a child's environment holds."""

from __future__ import annotations

import os

import pytest

from bench_train_helpers import TINY, positive, small_peak  # noqa: F401 (small_peak: a fixture)
from experiments import bench
from experiments.benchmarks import malloc_children
from experiments.benchmarks.malloc_children import MALLOC_SETTINGS


def test_malloc_comparison_runs_children_in_every_setting(small_peak):
    result = bench.run(["train", *TINY, "--families", "hawk", "--no-ladder", "--malloc-children", "1",
                        "--malloc-repeats", "1", "--quiet"])
    mc = result["malloc_comparison"]
    assert mc["settings"] == list(MALLOC_SETTINGS)
    assert mc["order"] == [["hawk", setting] for setting in mc["settings"]]
    for run in mc["runs"]:
        mode, env = MALLOC_SETTINGS[run["setting"]]
        assert run["family"] == "hawk" and run["malloc"]["mode"] == mode and run["env"] == env
        assert "trim" not in run["malloc"]  # children keep the setting they were given
        assert run["max_rss_mib"] > 0
    summary = mc["families"]["hawk"]
    for setting in mc["settings"]:
        assert positive(summary[setting]["tokens_per_s"])
        assert len(summary[setting]["tokens_per_s_runs"]) == 1
        assert positive(summary[setting]["over_default"]) and summary[setting]["max_rss_mib"] > 0
    assert summary["default"]["over_default"] == 1.0
    assert result["ratios"] == {}  # no MQA, no ratio


def test_order_rotates_the_settings_between_families_and_passes():
    order = malloc_children._order(2, ["mqa", "hawk"], ["a", "b", "c"])
    assert order == [("mqa", "a"), ("mqa", "b"), ("mqa", "c"), ("hawk", "b"), ("hawk", "c"), ("hawk", "a"),
                     ("mqa", "b"), ("mqa", "c"), ("mqa", "a"), ("hawk", "c"), ("hawk", "a"), ("hawk", "b")]


def test_summary_takes_medians_and_ratios_to_default():
    def run(setting, tokens, x_matmul, rss):
        return {"family": "hawk", "setting": setting, "tokens_per_s": tokens, "step_ms": 1e3 / tokens,
                "mfu": tokens / 1e4, "x_matmul": x_matmul, "page_faults_per_step": 10.0, "max_rss_mib": rss}

    runs = [run("default", 100.0, 0.5, 900), run("default", 300.0, 0.7, 1000), run("default", 200.0, 0.6, 950),
            run("reuse", 400.0, 0.9, 800)]
    summary = malloc_children._summary(runs, ["hawk"], ["default", "reuse"])["hawk"]
    assert summary["default"]["tokens_per_s"] == 200.0 and summary["default"]["max_rss_mib"] == 1000
    assert summary["default"]["tokens_per_s_runs"] == [100.0, 300.0, 200.0]
    assert summary["reuse"]["over_default"] == 2.0
    assert summary["reuse"]["x_matmul_over_default"] == pytest.approx(1.5)
    without_default = malloc_children._summary(runs, ["hawk"], ["reuse"])["hawk"]
    assert "over_default" not in without_default["reuse"]


def test_child_env_holds_only_its_settings_malloc_variables(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = malloc_children._child_env({"MALLOC_TRIM_THRESHOLD_": "1"})
    assert "MALLOC_ARENA_MAX" not in env and env["MALLOC_TRIM_THRESHOLD_"] == "1"
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths[0] == malloc_children._package_root() and "/elsewhere" in paths
    assert os.path.isdir(os.path.join(paths[0], "experiments"))
