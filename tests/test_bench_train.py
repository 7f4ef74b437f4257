"""griffin-bench train: the training-step benchmark end to end through the CLI at a tiny shape,
and its malloc comparison in child processes. No test looks at a time; MFU is only checked to
be a plausible fraction."""

from __future__ import annotations

import json
import math

import pytest

from experiments import bench
from experiments.benchmarks import limits, train_bench
from griffin_core import counting

TINY = ["--width", "32", "--depth", "3", "--heads", "2", "--lru-width", "32", "--gate-blocks", "4",
        "--window", "8", "--length", "16", "--batch", "2", "--vocab", "32", "--repeats", "2",
        "--matmul-n", "64", "--malloc", "default"]


@pytest.fixture
def small_peak(monkeypatch, tmp_path):
    """A private limits cache whose matmul peak is measured quickly, at n = 256."""
    monkeypatch.setenv(limits.CACHE_ENV, str(tmp_path / "cache"))
    real = limits.measure_matmul_peak
    monkeypatch.setattr(limits, "measure_matmul_peak", lambda n, repeats, dtype: real(256, 3, dtype))


def _positive(x: float) -> bool:
    return x > 0 and math.isfinite(x)


def test_train_cli_reports_every_family_ratios_and_ladder(small_peak, tmp_path, capsys):
    out = tmp_path / "train.json"
    result = bench.run(["train", *TINY, "--ladder-sizes", "cpu-30k", "--ladder-length", "16", "--ladder-batch", "2",
                        "--ladder-call-seconds", "0.01", "--malloc-children", "0", "--json", str(out)])

    assert result["command"] == "train" and result["benchmark"] == "train"
    assert [row["family"] for row in result["families"]] == ["mqa", "hawk", "griffin"]
    for row in result["families"]:
        assert _positive(row["tokens_per_s"]) and _positive(row["step_ms"])
        assert 0 < row["mfu"] <= 1, row
        assert 0 < row["mfu_range"][0] <= row["mfu"] <= row["mfu_range"][1]
        assert _positive(row["x_matmul"])
        assert len(row["step_ms_rounds"]) == 2
        assert row["tokens_per_step"] == 2 * 16
        cfg = train_bench.fixed_config(row["family"], result["shape"])
        assert row["flops_per_step_exact"] == pytest.approx(
            counting.training_flops_per_token(cfg, 16, "exact") * 2 * 16)
        assert math.isfinite(row["loss_first"]) and math.isfinite(row["loss_last"])
    assert result["shape"]["width"] == 32 and result["shape"]["length"] == 16

    assert set(result["ratios"]) == {"griffin/mqa", "hawk/mqa"}
    for ratio in result["ratios"].values():
        assert _positive(ratio["median"]) and len(ratio["per_round"]) == 2
        assert ratio["min"] <= ratio["median"] <= ratio["max"]

    ladder = result["ladder"]
    assert (ladder["length"], ladder["batch"]) == (16, 2)
    assert {(r["size"], r["family"]) for r in ladder["rows"]} == {("cpu-30k", f) for f in ("mqa", "hawk", "griffin")}
    for row in ladder["rows"]:
        assert 0 < row["mfu"] <= 1 and _positive(row["tokens_per_s"]) and row["steps_per_call"] >= 1

    assert result["matmul_peak"]["flops_per_s"] > 0 and result["matmul_in_run"]["gflops_per_s"] > 0
    assert set(result["targets"]["mfu_met"]) == {"mqa", "hawk", "griffin"}
    assert "griffin/mqa_met" in result["targets"]
    assert "malloc_comparison" not in result and result["max_rss_mib"] > 0

    printed = capsys.readouterr().out
    assert "MFU" in printed and "griffin/mqa" in printed and "cpu-30k" in printed
    assert json.loads(out.read_text())["families"] == json.loads(json.dumps(result["families"]))


def test_malloc_comparison_runs_children_in_every_setting(small_peak):
    result = bench.run(["train", *TINY, "--families", "hawk", "--no-ladder", "--malloc-children", "1",
                        "--malloc-repeats", "1", "--quiet"])
    mc = result["malloc_comparison"]
    assert mc["settings"] == list(train_bench.MALLOC_SETTINGS)
    assert mc["order"] == [["hawk", setting] for setting in mc["settings"]]
    for run in mc["runs"]:
        mode, env = train_bench.MALLOC_SETTINGS[run["setting"]]
        assert run["family"] == "hawk" and run["malloc"]["mode"] == mode and run["env"] == env
        assert "trim" not in run["malloc"]  # children keep the setting they were given
        assert run["max_rss_mib"] > 0
    summary = mc["families"]["hawk"]
    for setting in mc["settings"]:
        assert _positive(summary[setting]["tokens_per_s"])
        assert len(summary[setting]["tokens_per_s_runs"]) == 1
        assert _positive(summary[setting]["over_default"]) and summary[setting]["max_rss_mib"] > 0
    assert summary["default"]["over_default"] == 1.0
    assert result["ratios"] == {}  # no MQA, no ratio


def test_bad_arguments_exit_cleanly():
    with pytest.raises(SystemExit):
        bench.run(["train", "--families", "transformer"])
    with pytest.raises(SystemExit):
        bench.run(["train", "--ladder-sizes", "cpu-1t"])
