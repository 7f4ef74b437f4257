"""griffin-bench train (experiments/benchmarks/train_bench.py): the training-step benchmark end
to end through the CLI at a tiny shape, and its argument checks. No test looks at a time; MFU
(on CPU the fraction of the measured matmul peak) is only checked to be a plausible fraction.
The malloc comparison is tested in test_bench_malloc_children.py."""

from __future__ import annotations

import json
import math

import pytest

from bench_train_helpers import TINY, positive, small_peak  # noqa: F401 (small_peak: a fixture)
from experiments import bench
from experiments.benchmarks.train_measure import fixed_config
from griffin_core import counting


def test_train_cli_reports_every_family_ratios_and_ladder(small_peak, tmp_path, capsys):
    out = tmp_path / "train.json"
    result = bench.run(["train", *TINY, "--ladder-sizes", "cpu-30k", "--ladder-length", "16", "--ladder-batch", "2",
                        "--ladder-call-seconds", "0.01", "--malloc-children", "0", "--json", str(out)])

    assert result["command"] == "train" and result["benchmark"] == "train"
    assert [row["family"] for row in result["families"]] == ["mqa", "hawk", "griffin"]
    for row in result["families"]:
        assert positive(row["tokens_per_s"]) and positive(row["step_ms"])
        assert 0 < row["mfu"] <= 1, row
        assert 0 < row["mfu_range"][0] <= row["mfu"] <= row["mfu_range"][1]
        assert positive(row["x_matmul"])
        assert len(row["step_ms_rounds"]) == 2
        assert row["tokens_per_step"] == 2 * 16
        cfg = fixed_config(row["family"], result["shape"])
        assert row["flops_per_step_exact"] == pytest.approx(
            counting.training_flops_per_token(cfg, 16, "exact") * 2 * 16)
        assert math.isfinite(row["loss_first"]) and math.isfinite(row["loss_last"])
    assert result["shape"]["width"] == 32 and result["shape"]["length"] == 16

    assert set(result["ratios"]) == {"griffin/mqa", "hawk/mqa"}
    for ratio in result["ratios"].values():
        assert positive(ratio["median"]) and len(ratio["per_round"]) == 2
        assert ratio["min"] <= ratio["median"] <= ratio["max"]

    ladder = result["ladder"]
    assert (ladder["length"], ladder["batch"]) == (16, 2)
    assert {(r["size"], r["family"]) for r in ladder["rows"]} == {("cpu-30k", f) for f in ("mqa", "hawk", "griffin")}
    for row in ladder["rows"]:
        assert 0 < row["mfu"] <= 1 and positive(row["tokens_per_s"]) and row["steps_per_call"] >= 1

    assert result["matmul_peak"]["flops_per_s"] > 0 and result["matmul_in_run"]["gflops_per_s"] > 0
    assert set(result["targets"]["mfu_met"]) == {"mqa", "hawk", "griffin"}
    assert "griffin/mqa_met" in result["targets"]
    assert "malloc_comparison" not in result and result["max_rss_mib"] > 0

    basis = result["mfu_basis"]  # on CPU the fraction of the measured peak, on a known chip its nominal peak
    assert basis["kind"] in ("fraction_of_measured_matmul_peak", "exact_over_nominal_bf16_peak")
    if basis["kind"] == "fraction_of_measured_matmul_peak":
        assert basis["flops_per_s"] == result["matmul_peak"]["flops_per_s"] and basis["chips"] == 1

    printed = capsys.readouterr().out
    assert basis["label"] in printed and "griffin/mqa" in printed and "cpu-30k" in printed
    assert json.loads(out.read_text())["families"] == json.loads(json.dumps(result["families"]))


def test_bad_arguments_exit_cleanly():
    with pytest.raises(SystemExit):
        bench.run(["train", "--families", "transformer"])
    with pytest.raises(SystemExit):
        bench.run(["train", "--ladder-sizes", "cpu-1t"])
    with pytest.raises(SystemExit) as exit_:
        bench.run(["train", "--malloc", "default", "--malloc-children", "-1"])
    assert exit_.value.code == 2
